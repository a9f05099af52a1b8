"""infra/remediation.py as synthesized (cdk-nag on): the alarm rule feeds only this stage's alarms
going into ALARM to the remediate function; each function's role holds what its job needs and no
more. Builds its own small stage; the functions are the stack's own (rows of infra/jobs.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from infra_helpers import logical_id, resources

from infra.assembly import stage_template
from infra.config import read_cdk_json_context
from infra.nag import enable_nag
from infra.remediation import ENV_BACKUP_FUNCTION
from infra.stack import WardenStack
from local.aws import render_definition
from warden.config.stage import StageConfig
from warden.config.target import Target
from warden.events import FleetInput, MaintenanceRequest
from warden.fleet import plan_run

pytestmark = pytest.mark.infra
STAGE = StageConfig(name="rem", targets=[
    Target(name="graph", engine="neo4j", secret_name="warden/rem/graph"),
    Target(name="pg", engine="postgres", secret_name="warden/rem/pg"),
])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, dependency_layer_dir: Path) -> dict[str, Any]:
    app = App(context=read_cdk_json_context(), outdir=str(tmp_path_factory.mktemp("cdk.out.remediation")))
    enable_nag(app)
    stack = WardenStack(app, "Warden-rem", stage=STAGE, dependency_layer_dir=dependency_layer_dir)
    wired = "remediate" in stack.functions
    assembly = app.synth()  # raises on an unacknowledged finding
    template = stage_template(assembly.directory, stack.artifact_id)
    ids = {job: logical_id(stack, stack.functions[job].function) for job in ("remediate", "maintenance", "backup")}
    roles = {job: logical_id(stack, stack.functions[job].role) for job in ("remediate", "maintenance")}
    return {"template": template, "functions": ids, "roles": roles, "wired": wired}


def statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    found = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                found.append({**statement, "Action": [actions] if isinstance(actions, str) else actions})
    return found


def actions(template: dict[str, Any], role_id: str) -> set[str]:
    return {a for s in statements(template, role_id) for a in s["Action"]}


def test_rule_sends_only_this_stages_alarms_going_into_alarm_to_remediate(built: dict[str, Any]) -> None:
    [rule] = resources(built["template"], "AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.cloudwatch"]
    assert pattern["detail-type"] == ["CloudWatch Alarm State Change"]
    assert pattern["detail"] == {"alarmName": [{"prefix": "warden-rem-"}], "state": {"value": ["ALARM"]}}
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [built["functions"]["remediate"], "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    permissions = [p["Properties"] for p in resources(built["template"], "AWS::Lambda::Permission").values()
                   if p["Properties"]["Principal"] == "events.amazonaws.com"]
    assert [p["FunctionName"] for p in permissions] == [{"Fn::GetAtt": [built["functions"]["remediate"], "Arn"]}]


def test_remediate_may_start_only_the_backup_function_and_announces_on_the_topic(built: dict[str, Any]) -> None:
    template, role = built["template"], built["roles"]["remediate"]
    invoke = [s for s in statements(template, role) if "lambda:InvokeFunction" in s["Action"]]
    assert [s["Resource"] for s in invoke] == [{"Fn::GetAtt": [built["functions"]["backup"], "Arn"]}]
    assert "sns:Publish" in actions(template, role)
    env = template["Resources"][built["functions"]["remediate"]]["Properties"]["Environment"]["Variables"]
    assert env[ENV_BACKUP_FUNCTION] == {"Ref": built["functions"]["backup"]}
    assert {"WARDEN_STATE_TABLE", "WARDEN_AUDIT_TABLE", "WARDEN_TOPIC_ARN", "WARDEN_CATALOG_TABLE"} <= set(env)
    assert "dynamodb:UpdateItem" in actions(template, role)  # rate-limit counters and leases
    assert "s3:PutObject" not in actions(template, role)  # never writes backups itself


def test_maintenance_touches_the_databases_state_and_audit_only(built: dict[str, Any]) -> None:
    granted = actions(built["template"], built["roles"]["maintenance"])
    assert "secretsmanager:GetSecretValue" in granted
    assert not {a for a in granted if a.startswith(("s3:", "sns:", "lambda:"))}
    assert "dynamodb:PutItem" in granted
    props = built["template"]["Resources"][built["functions"]["maintenance"]]["Properties"]
    assert props["Timeout"] == 900


def test_maintenance_runs_for_every_target_in_its_fleet_run_every_six_hours(built: dict[str, Any]) -> None:
    # Was: one maintenance schedule per target. Fleet scheduling (infra/fleet.py): one schedule starts
    # the maintenance fleet run, whose Map invokes the maintenance function with each target's request.
    if not built["wired"]:
        pytest.skip("WardenStack does not call add_remediation_and_maintenance yet")
    template = built["template"]
    (machine_id,) = [lid for lid, r in resources(template, "AWS::StepFunctions::StateMachine").items()
                     if r["Properties"]["StateMachineName"] == "warden-rem-fleet-maintenance"]
    schedules = [s["Properties"] for s in resources(template, "AWS::Scheduler::Schedule").values()
                 if s["Properties"]["Target"]["Arn"] == {"Ref": machine_id}]
    assert [s["ScheduleExpression"] for s in schedules] == ["cron(0 */6 * * ? *)"]
    definition = json.loads(render_definition(template, machine_id, lambda i, a: f"arn:{i}:{a}"))
    run = definition["States"]["FanOut"]["ItemProcessor"]["States"]["Run"]
    assert run["Resource"] == f"arn:{built['functions']['maintenance']}:Arn" and run["InputPath"] == "$.event"
    plan = plan_run(STAGE.targets, "maintenance", STAGE.fleet.maintenance,
                    FleetInput(trigger="schedule", scheduled_time="2026-12-03T06:00:00Z"), datetime.now(UTC))
    assert [i["target"] for i in plan["items"]] == sorted(t.name for t in STAGE.targets)
    for item in plan["items"]:  # what each target's item sends is a valid maintenance request
        MaintenanceRequest.model_validate(item["event"])
