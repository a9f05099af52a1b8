"""Smoke: moto stands in for AWS; the synthesized stack deploys into it, and Lambda invocations run
the real handlers against the real databases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local.aws import LocalAws
from local.deploy import Deployment
from local.runtime import register_targets
from tests.conftest import STAGE, invoke, load_event

pytestmark = pytest.mark.integration


def test_s3_and_dynamodb_round_trip(aws: LocalAws) -> None:
    s3, ddb = aws.client("s3"), aws.client("dynamodb")
    s3.create_bucket(Bucket="smoke", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket="smoke", Key="a/b.txt", Body=b"warden")
    ddb.create_table(TableName="smoke", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    ddb.put_item(TableName="smoke", Item={"pk": {"S": "t#1"}, "n": {"N": "42"}})
    assert s3.get_object(Bucket="smoke", Key="a/b.txt")["Body"].read() == b"warden"
    assert ddb.get_item(TableName="smoke", Key={"pk": {"S": "t#1"}})["Item"]["n"] == {"N": "42"}


def test_deployed_stack_has_its_tables_bucket_and_target_config(aws: LocalAws, deployed: Deployment) -> None:
    tables = set(aws.client("dynamodb").list_tables()["TableNames"])
    assert set(deployed.physical("AWS::DynamoDB::Table").values()) <= tables
    assert len(deployed.physical("AWS::DynamoDB::Table")) == 3
    params = aws.client("ssm").get_parameters_by_path(Path=f"/warden/{STAGE}/targets/")["Parameters"]
    assert {p["Name"].rsplit("/", 1)[-1] for p in params} == {"graph-local", "pg-local"}


def test_health_function_runs_the_real_handler_against_both_databases(aws: LocalAws, deployed: Deployment) -> None:
    # When the deployed health function is invoked for every target
    report, error = invoke(aws, deployed.function_named("health"), load_event("health_all_targets"))
    # Then the real databases answered
    assert error is None, report
    by_target = {t["target"]: t for t in report["targets"]}
    assert set(by_target) == {"graph-local", "pg-local"}
    assert by_target["pg-local"]["checks"][0]["details"]["version"].startswith("18.")
    assert by_target["graph-local"]["checks"][0]["details"]["edition"] == "community"
    # A target that has never been backed up is unhealthy, and the report says why
    for target in by_target.values():
        failing = {c["name"] for c in target["checks"] if c["status"] == "fail"}
        assert failing == {"backup_freshness", "verified_backup"}, target
    assert report["status"] == "unhealthy"


def test_health_function_fails_like_lambda_on_an_unknown_target(aws: LocalAws, deployed: Deployment) -> None:
    payload, error = invoke(aws, deployed.function_named("health"), load_event("health_scheduled", target="nope"))
    assert error == "Unhandled"
    assert payload["errorType"] == "TargetNotFound"
    assert "graph-local" in payload["errorMessage"]


def test_health_function_rejects_malformed_input(aws: LocalAws, deployed: Deployment) -> None:
    payload, error = invoke(aws, deployed.function_named("health"), load_event("health_bad_input"))
    assert error == "Unhandled"
    assert payload["errorType"] == "BadRequest"


def test_health_reports_a_target_whose_password_is_wrong_as_unhealthy(aws: LocalAws, deployed: Deployment,
                                                                      postgres: Any) -> None:
    from local.config import LocalConfig
    from local.runtime import postgres_secret

    config = LocalConfig.model_validate({"stage": STAGE, "targets": [
        {"name": "pg-wrong", "engine": "postgres", "local": "postgres18"}]})
    register_targets(aws, config, {"postgres18": {**postgres_secret(postgres), "password": "wrong"}})
    report, error = invoke(aws, deployed.function_named("health"), {"target": "pg-wrong"})
    assert error is None
    check = report["targets"][0]["checks"][0]
    assert report["status"] == "unhealthy"
    assert check["status"] == "fail" and "password authentication failed" in check["message"]
    assert "wrong" not in json.dumps(report).replace("pg-wrong", "")


def test_every_schedule_input_is_accepted_by_its_function(aws: LocalAws, deployed: Deployment) -> None:
    """What EventBridge Scheduler sends (taken from the template) passes each function's validation:
    a job's one schedule starts its Fleet state machine, whose Plan step (the fleet function, given
    the schedule's input) yields each target's event for the job's function."""
    sfn = aws.client("stepfunctions")
    machines = {arn_id: arn for arn_id, arn in deployed.refs.items()
                if deployed.template["Resources"][arn_id]["Type"] == "AWS::StepFunctions::StateMachine"}
    checked = set()
    for schedule in deployed.template["Resources"].values():
        if schedule["Type"] != "AWS::Scheduler::Schedule":
            continue
        target = schedule["Properties"]["Target"]
        machine = machines.get(target["Arn"].get("Ref", "")) if isinstance(target["Arn"], dict) else None
        if machine is None:
            continue  # a target's own schedule: the same events as its fleet run's items
        states = json.loads(sfn.describe_state_machine(stateMachineArn=machine)["definition"])["States"]
        if "Plan" not in states:
            continue  # not a fleet run
        scheduled = json.loads(target["Input"].replace("<aws.scheduler.scheduled-time>", "2026-11-23T02:00:00Z"))
        payload = {k: v for k, v in states["Plan"]["Parameters"].items() if not k.endswith(".$")}
        plan, error = invoke(aws, deployed.function_named("fleet"), {**payload, "input": scheduled})
        assert error is None, plan
        job = payload["job"]
        assert plan["items"], job  # every local target is due for every job
        if job in ("backup", "drill"):
            continue  # a real backup / recovery: covered in test_backup_flow and test_recovery with these events
        for item in plan["items"]:
            result, error = invoke(aws, deployed.function_named(job), item["event"])
            assert not (error and result.get("errorType") == "BadRequest"), (job, result)
        checked.add(job)
    assert len(checked) >= 4
