"""Credential rotation in the template (infra/rotation.py): one rotate function, a rotation schedule on
each rotating target's own secret, exactly the secret access rotation needs, and Secrets Manager (of
this account) allowed to invoke it. Synthesized as the app builds it, cdk-nag on: synthesis raises on
an unacknowledged finding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from infra_helpers import logical_id, resources

from infra.assembly import stage_template
from infra.rotation import ROTATED_SECRET_ACTIONS
from infra.stack import build_app
from warden.config.stage import StageConfig
from warden.config.target import Target

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:warden/rot/graph-AbCdEf"
STAGE = StageConfig(name="rot", targets=[
    Target.model_validate({"name": "graph", "engine": "neo4j", "secret_name": ARN,
                           "rotation": {"enabled": True, "schedule": "rate(30 days)"}}),
    Target.model_validate({"name": "pg", "engine": "postgres", "secret_name": "warden/rot/pg",
                           "rotation": {"enabled": True, "strategy": "alternating", "window": "3h",
                                        "master_secret_name": "warden/rot/pg-master",
                                        "schedule": "cron(0 4 ? * SUN *)"}}),
    Target.model_validate({"name": "still", "engine": "postgres", "secret_name": "warden/rot/still"}),
])


def _build(outdir: Path, stage: StageConfig, layer_dir: Path) -> tuple[Any, dict[str, Any]]:
    app, stacks = build_app({"stages": {stage.name: stage.model_dump(mode="json", exclude={"name"})},
                             "stage": stage.name}, outdir=str(outdir), dependency_layer_dir=layer_dir)
    app.synth()
    stack = stacks[stage.name]
    return stack, stage_template(outdir, stack.artifact_id)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, dependency_layer_dir: Path) -> dict[str, Any]:
    stack, template = _build(tmp_path_factory.mktemp("cdk.out.rotation"), STAGE, dependency_layer_dir)
    fn = stack.functions["rotate"]
    return {"template": template, "function": logical_id(stack, fn.function), "role": logical_id(stack, fn.role),
            "audit": logical_id(stack, stack.storage.audit)}


def statements_of(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [s for p in resources(template, "AWS::IAM::Policy").values()
            if {"Ref": role} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]


def actions(statement: dict[str, Any]) -> set[str]:
    value = statement["Action"]
    return {value} if isinstance(value, str) else set(value)


def secret_pattern(name: str) -> dict[str, Any]:
    account = {"Ref": "AWS::AccountId"}
    return {"Fn::Join": ["", ["arn:aws:secretsmanager:eu-west-1:", account, f":secret:{name}-??????"]]}


def test_each_rotating_target_gets_a_schedule_on_its_own_secret_invoking_the_rotate_function(
        built: dict[str, Any]) -> None:
    schedules = {r["Properties"]["SecretId"]: r["Properties"]
                 for r in resources(built["template"], "AWS::SecretsManager::RotationSchedule").values()}
    # the target without rotation gets none; a secret given by ARN or by name is used as given
    assert set(schedules) == {ARN, "warden/rot/pg"}
    for props in schedules.values():
        assert props["RotationLambdaARN"] == {"Fn::GetAtt": [built["function"], "Arn"]}
        assert props["RotateImmediatelyOnUpdate"] is False
    assert schedules[ARN]["RotationRules"] == {"ScheduleExpression": "rate(30 days)"}
    assert schedules["warden/rot/pg"]["RotationRules"] == {"ScheduleExpression": "cron(0 4 ? * SUN *)",
                                                           "Duration": "3h"}
    # the stack owns no secret: rotation is attached to the operator's
    assert not resources(built["template"], "AWS::SecretsManager::Secret")


def test_rotate_function_may_change_only_the_rotated_secrets_and_read_the_master(built: dict[str, Any]) -> None:
    statements = statements_of(built["template"], built["role"])
    secret_statements = [s for s in statements if any(a.startswith("secretsmanager:") for a in actions(s))]
    by_actions = {frozenset(actions(s)): s["Resource"] for s in secret_statements}
    assert by_actions == {
        frozenset(ROTATED_SECRET_ACTIONS): [ARN, secret_pattern("warden/rot/pg")],
        frozenset({"secretsmanager:GetSecretValue"}): secret_pattern("warden/rot/pg-master"),
        frozenset({"secretsmanager:GetRandomPassword"}): "*",
    }
    # no other target's secret (warden/rot/still) and no wildcard action anywhere
    assert "warden/rot/still" not in json.dumps(statements)
    assert all("*" not in a for s in statements for a in actions(s))
    # the audit trail is append-only for it too
    audit = [actions(s) for s in statements if s["Resource"] == {"Fn::GetAtt": [built["audit"], "Arn"]}]
    assert audit == [{"dynamodb:PutItem"}]


def test_only_secrets_manager_of_this_account_may_invoke_the_rotate_function(built: dict[str, Any]) -> None:
    permissions = {lid: r["Properties"] for lid, r in resources(built["template"], "AWS::Lambda::Permission").items()
                   if r["Properties"]["FunctionName"] == {"Fn::GetAtt": [built["function"], "Arn"]}}
    assert list(permissions.values()) == [{
        "Action": "lambda:InvokeFunction", "FunctionName": {"Fn::GetAtt": [built["function"], "Arn"]},
        "Principal": "secretsmanager.amazonaws.com", "SourceAccount": {"Ref": "AWS::AccountId"}}]
    # and each schedule waits for that permission (Secrets Manager invokes the function at once)
    (permission,) = permissions
    for lid, schedule in resources(built["template"], "AWS::SecretsManager::RotationSchedule").items():
        assert permission in schedule.get("DependsOn", []), lid


def test_rotate_function_is_the_stage_standard_function(built: dict[str, Any]) -> None:
    props = built["template"]["Resources"][built["function"]]["Properties"]
    assert props["Environment"]["Variables"]["WARDEN_FUNCTION"] == "rotate"
    assert props["Architectures"] == ["arm64"] and props["TracingConfig"] == {"Mode": "Active"}
    assert props["Timeout"] == 60


def test_no_rotating_target_means_no_rotate_function(tmp_path: Path, dependency_layer_dir: Path) -> None:
    stage = StageConfig(name="norot", targets=[Target(name="pg", engine="postgres", secret_name="warden/norot/pg")])
    stack, template = _build(tmp_path, stage, dependency_layer_dir)
    assert "rotate" not in stack.functions and stack.rotation is None
    assert not resources(template, "AWS::SecretsManager::RotationSchedule")


def test_rotate_function_runs_in_the_stage_vpc_beside_the_other_database_functions(
        tmp_path: Path, dependency_layer_dir: Path) -> None:
    # Given a stage with a network (the VPC checked in to cdk.context.json) and a rotating target
    subnets = ["subnet-0a11b22c33d44e55f", "subnet-0b66c77d88e99f001"]
    stage = StageConfig.model_validate({
        "name": "rotnet", "account": "123456789012",
        "network": {"vpc_id": "vpc-0f3a9c2e7b1d45a86", "subnet_ids": subnets, "endpoints": "create"},
        "targets": [{"name": "pg", "engine": "postgres", "secret_name": "warden/rotnet/pg",
                     "rotation": {"enabled": True}}]})
    stack, template = _build(tmp_path, stage, dependency_layer_dir)
    # Then the rotate function has the same VPC placement as health (same subnets, same group)
    functions = template["Resources"]
    rotate = functions[logical_id(stack, stack.functions["rotate"].function)]["Properties"]
    health = functions[logical_id(stack, stack.functions["health"].function)]["Properties"]
    assert sorted(rotate["VpcConfig"]["SubnetIds"]) == sorted(subnets)
    assert rotate["VpcConfig"] == health["VpcConfig"]
    # and Secrets Manager is reachable from there without a NAT (its interface endpoint)
    endpoints = [r["Properties"] for r in resources(template, "AWS::EC2::VPCEndpoint").values()]
    assert any("secretsmanager" in json.dumps(e["ServiceName"]) and e.get("PrivateDnsEnabled") for e in endpoints)


def test_a_failed_rotation_step_alarms_like_any_function_error(built: dict[str, Any]) -> None:
    alarms = [r["Properties"] for r in resources(built["template"], "AWS::CloudWatch::Alarm").values()]
    rotate_errors = [a for a in alarms if a.get("AlarmName") == "warden-rot-fn-rotate-errors"]
    assert len(rotate_errors) == 1
    assert rotate_errors[0]["MetricName"] == "Errors" and rotate_errors[0]["AlarmActions"]
