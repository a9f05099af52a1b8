"""The report function and its weekly schedule (infra/report.py), in a small stack of their own
with cdk-nag on: exactly the access the report needs, and a schedule that invokes only it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from infra_helpers import logical_id, resources

from infra.assembly import stage_template
from infra.report import REPORT_SCHEDULE
from infra.stack import build_app
from warden.config.stage import StageConfig
from warden.config.target import Target

STAGE = StageConfig(name="rpt", targets=[Target(name="pg", engine="postgres", secret_name="warden/rpt/pg")])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, dependency_layer_dir: Path) -> dict[str, Any]:
    """The stage built as the app builds it (cdk.json context, cdk-nag on); synthesis raises on an
    unacknowledged finding."""
    outdir = tmp_path_factory.mktemp("cdk.out.report")
    app, stacks = build_app({"stages": {STAGE.name: STAGE.model_dump(mode="json", exclude={"name"})},
                             "stage": STAGE.name}, outdir=str(outdir), dependency_layer_dir=dependency_layer_dir)
    stack = stacks[STAGE.name]
    app.synth()
    template = stage_template(outdir, stack.artifact_id)
    fn = stack.functions["report"]
    return {"template": template, "function": logical_id(stack, fn.function), "role": logical_id(stack, fn.role),
            "storage": {name: logical_id(stack, table) for name, table in stack.storage.tables.items()},
            "bucket": logical_id(stack, stack.storage.bucket), "topic": logical_id(stack, stack.storage.topic)}


def statements_of(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [s for p in resources(template, "AWS::IAM::Policy").values()
            if {"Ref": role} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]


def actions(statement: dict[str, Any]) -> set[str]:
    value = statement["Action"]
    return {value} if isinstance(value, str) else set(value)


def granted_on(statements: list[dict[str, Any]], resource: Any) -> set[str]:
    found: set[str] = set()
    for s in statements:
        targets = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        if resource in targets:
            found |= actions(s)
    return found


def test_report_reads_the_audit_trail_with_query_and_never_writes_it(built: dict[str, Any]) -> None:
    statements = statements_of(built["template"], built["role"])
    audit_arn = {"Fn::GetAtt": [built["storage"]["audit"], "Arn"]}
    assert granted_on(statements, audit_arn) == {"dynamodb:Query"}
    catalog = granted_on(statements, {"Fn::GetAtt": [built["storage"]["catalog"], "Arn"]})
    assert "dynamodb:Query" in catalog and not {"dynamodb:PutItem", "dynamodb:DeleteItem"} & catalog
    state = granted_on(statements, {"Fn::GetAtt": [built["storage"]["state"], "Arn"]})
    assert state == {"dynamodb:GetItem", "dynamodb:Query"}


def test_report_writes_only_under_reports_and_publishes_to_the_topic(built: dict[str, Any]) -> None:
    statements = statements_of(built["template"], built["role"])
    s3 = [s for s in statements if any(a.startswith("s3:") for a in actions(s))]
    assert [actions(s) for s in s3] == [{"s3:PutObject"}]
    assert s3[0]["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [built["bucket"], "Arn"]}, "/reports/*"]]}
    assert granted_on(statements, {"Ref": built["topic"]}) == {"sns:Publish"}


def test_only_cloudwatch_reads_that_allow_no_resource_use_a_wildcard(built: dict[str, Any]) -> None:
    statements = statements_of(built["template"], built["role"])
    assert all("*" not in a for s in statements for a in actions(s))
    wildcard = set().union(*(actions(s) for s in statements if s["Resource"] == "*"))
    assert wildcard == {"cloudwatch:DescribeAlarmHistory", "cloudwatch:GetMetricStatistics",
                        "cloudwatch:GetMetricWidgetImage", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_report_function_knows_its_tables_bucket_and_topic(built: dict[str, Any]) -> None:
    fn = built["template"]["Resources"][built["function"]]["Properties"]
    variables = fn["Environment"]["Variables"]
    assert variables["WARDEN_FUNCTION"] == "report" and variables["WARDEN_STAGE"] == "rpt"
    for name in ("WARDEN_CATALOG_TABLE", "WARDEN_AUDIT_TABLE", "WARDEN_STATE_TABLE", "WARDEN_BUCKET",
                 "WARDEN_TOPIC_ARN", "WARDEN_KMS_KEY_ID"):
        assert name in variables, name


def test_one_weekly_schedule_on_monday_morning_utc_invokes_exactly_the_report(built: dict[str, Any]) -> None:
    template = built["template"]
    schedules = [s["Properties"] for s in resources(template, "AWS::Scheduler::Schedule").values()
                 if s["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": [built["function"], "Arn"]}]
    assert len(schedules) == 1
    schedule = schedules[0]
    assert schedule["ScheduleExpression"] == REPORT_SCHEDULE == "cron(0 7 ? * MON *)"
    assert schedule["ScheduleExpressionTimezone"] == "Etc/UTC" and schedule["State"] == "ENABLED"
    assert json.loads(schedule["Target"]["Input"]) == {"trigger": "schedule",
                                                        "scheduled_time": "<aws.scheduler.scheduled-time>"}
    role = schedule["Target"]["RoleArn"]["Fn::GetAtt"][0]
    statements = statements_of(template, role)
    assert statements == [{"Action": "lambda:InvokeFunction", "Effect": "Allow",
                           "Resource": {"Fn::GetAtt": [built["function"], "Arn"]}}]
