"""The Recovery state machine's restore and validation on Fargate, as synthesized (infra/recovery.py,
infra/tasks.py, docs/fargate.md): on a stage that can start tasks a Choice after Preflight sends a
plan whose runner is fargate to RestoreOnFargate → ValidateOnFargate, RunTask states of the stage's
one task definition with the plan as the command and its sizes, heartbeat and timeout, rolled back
on any error as the Lambda steps are; the machine may run only that task definition, the task may
answer it and do what those two steps need, the recovery function may stop the execution's task. A
stage without Fargate has the machine as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from infra_helpers import Synthesized, as_list, logical_id, resources

from infra.assembly import stage_template
from infra.nag import unacknowledged_findings
from infra.stack import WardenStack, build_app
from infra.tasks import MAX_RUN, RECOVERY_TASK_ENV
from local.aws import render_definition
from warden import names
from warden.config.fargate import FargateSize

pytestmark = pytest.mark.infra

ACCOUNT = "123456789012"
STAGING_SECRET = "warden/fgrec/orders-staging"
# A stage with its own Fargate placement, a replica, and a target that restores into a server of its own.
VARIANT = {"fgrec": {
    "account": ACCOUNT,
    "fargate": {"subnet_ids": ["subnet-0123456789abcdef0"], "security_group_ids": ["sg-0123456789abcdef0"]},
    "backup_protection": {"replication": {"region": "eu-central-1"}},
    "targets": [
        {"name": "orders", "engine": "postgres", "secret_name": "warden/fgrec/orders", "runner": "fargate",
         "recovery": {"staging_secret_name": STAGING_SECRET}},
        {"name": "graph", "engine": "neo4j", "secret_name": "warden/fgrec/graph"},
    ],
}}
LAMBDA_STATES = {"Preflight", "Restore", "Validate", "ApprovalMode", "RequestApproval", "Promote", "Finish",
                 "Recovered", "Rollback", "RecoveryFailed", "RollbackFailed", "PreflightFailed"}


def _lid(stack: WardenStack, construct: Any) -> str:
    return logical_id(stack, construct) if construct.node.default_child is not None else \
        str(stack.resolve(stack.get_logical_id(construct)))


def _definition(template: dict[str, Any], machine: str) -> dict[str, Any]:
    return dict(json.loads(render_definition(template, machine, lambda i, a: f"<{i}.{a}>" if a else f"<{i}>")))


def _recovery(stack: WardenStack, template: dict[str, Any]) -> dict[str, Any]:
    return _definition(template, _lid(stack, stack.recovery.state_machine))


def _role_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [s for r in resources(template, "AWS::IAM::Policy").values() if {"Ref": role} in r["Properties"]["Roles"]
            for s in as_list(r["Properties"]["PolicyDocument"]["Statement"])]


def _actions(statements: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a: s for s in statements for a in as_list(s["Action"])}


def _env(stack: WardenStack, template: dict[str, Any], job: str) -> dict[str, Any]:
    fn = template["Resources"][logical_id(stack, stack.functions[job].function)]
    return dict(fn["Properties"]["Environment"]["Variables"])


@pytest.fixture(scope="module")
def staging(synthesized: Synthesized) -> tuple[WardenStack, dict[str, Any]]:
    """cdk.json's staging stage: a network, so it can start tasks."""
    stack = synthesized.stacks["staging"]
    return stack, synthesized.template(stack)


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory, dependency_layer_dir: Path) -> tuple[WardenStack, dict[str, Any]]:
    outdir = tmp_path_factory.mktemp("cdk.out.recovery-fargate")
    app, stacks = build_app({"stages": VARIANT}, outdir=str(outdir), dependency_layer_dir=dependency_layer_dir)
    app.synth()  # raises on any unacknowledged cdk-nag finding
    assert unacknowledged_findings(outdir) == []
    stack = stacks["fgrec"]
    return stack, stage_template(outdir, stack.artifact_id)


# -- the state machine --------------------------------------------------------------------------


def test_after_preflight_a_choice_on_the_plans_runner_sends_fargate_plans_to_tasks_and_both_join_at_approval(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    states = _recovery(stack, template)["States"]
    assert set(states) == LAMBDA_STATES | {"Runner", "RestoreOnFargate", "ValidateOnFargate"}
    assert states["Preflight"]["Next"] == "Runner"
    runner = states["Runner"]
    assert runner["Type"] == "Choice" and runner["Default"] == "Restore"
    (fargate,) = runner["Choices"]
    assert fargate["Next"] == "RestoreOnFargate"
    assert fargate["And"] == [{"Variable": "$.plan.runner", "IsPresent": True},
                              {"Variable": "$.plan.runner", "StringEquals": "fargate"}]
    assert states["RestoreOnFargate"]["Next"] == "ValidateOnFargate"
    assert states["ValidateOnFargate"]["Next"] == "ApprovalMode"
    assert (states["Restore"]["Next"], states["Validate"]["Next"]) == ("Validate", "ApprovalMode")


def test_the_fargate_states_run_the_stages_task_definition_with_the_plan_and_its_sizes(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    assert stack.tasks is not None
    states = _recovery(stack, template)["States"]
    task_run = _definition(template, _lid(stack, stack.tasks.state_machine))["States"]["RunTask"]
    for name, step, result in (("RestoreOnFargate", "restore", "$.restore"),
                               ("ValidateOnFargate", "validate", "$.validation")):
        state = states[name]
        assert state["Type"] == "Task" and state["Resource"] == "arn:aws:states:::ecs:runTask.waitForTaskToken"
        assert state["HeartbeatSecondsPath"] == "$.plan.task.heartbeat_s"
        assert state["TimeoutSecondsPath"] == "$.plan.task.timeout_s"
        assert "HeartbeatSeconds" not in state and "TimeoutSeconds" not in state
        assert state["ResultPath"] == result  # where the Lambda step puts its result
        params = state["Parameters"]
        # The same cluster, task definition, placement and group as the Task state machine's run
        assert {k: v for k, v in params.items() if k != "Overrides"} == \
            {k: v for k, v in task_run["Parameters"].items() if k != "Overrides"}
        assert params["TaskDefinition"] == f"<{_lid(stack, stack.tasks.task_definition)}>"
        overrides = params["Overrides"]
        assert (overrides["Cpu.$"], overrides["Memory.$"]) == ("$.plan.task.cpu", "$.plan.task.memory")
        assert overrides["EphemeralStorage"] == {"SizeInGiB.$": "$.plan.task.ephemeral_gib"}
        (container,) = overrides["ContainerOverrides"]
        assert container["Name"] == "job"
        assert container["Command.$"] == (f"States.Array('recovery', '--step', '{step}', '--plan', "
                                          "States.JsonToString($.plan))")
        assert {e["Name"]: e["Value.$"] for e in container["Environment"]} == {
            names.ENV_TASK_TOKEN: "$$.Task.Token", names.ENV_TASK_EXECUTION: "$$.Execution.Name"}


def test_the_fargate_states_roll_back_on_any_error_and_retry_only_a_database_that_did_not_answer(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    states = _recovery(stack, template)["States"]
    for name in ("RestoreOnFargate", "ValidateOnFargate"):
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                                          "Next": "Rollback"}], name
        (retry,) = states[name]["Retry"]
        assert retry["ErrorEquals"] == ["DatabaseUnavailable"]
        assert retry["BackoffRate"] >= 2 and retry["MaxAttempts"] <= 3


def test_the_recovery_machine_outlives_an_approval_and_two_of_the_longest_tasks(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    longest = FargateSize(timeout_hours=48).timeout_s
    assert MAX_RUN.to_seconds() == longest
    assert _recovery(stack, template)["TimeoutSeconds"] == 7 * 86400 + 2 * 3600 + 2 * longest


# -- grants -------------------------------------------------------------------------------------


def test_the_recovery_machine_may_run_only_the_task_definition_and_pass_only_its_roles(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    tasks = stack.tasks
    assert tasks is not None
    by_action = _actions(_role_statements(template, _lid(stack, stack.recovery.state_machine.role)))
    run = by_action["ecs:RunTask"]
    assert run["Resource"] == {"Ref": _lid(stack, tasks.task_definition)}
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [_lid(stack, tasks.cluster), "Arn"]}}}
    passed = by_action["iam:PassRole"]
    assert sorted(r["Fn::GetAtt"][0] for r in as_list(passed["Resource"])) == sorted(
        [_lid(stack, tasks.task_role), _lid(stack, tasks.execution_role)])
    assert passed["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert [a for a in by_action if a.startswith(("ecs:", "iam:"))] == ["ecs:RunTask", "iam:PassRole"]


def test_the_task_may_answer_the_recovery_machine_and_read_backups_but_not_promote_or_notify(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    assert stack.tasks is not None
    by_action = _actions(_role_statements(template, _lid(stack, stack.tasks.task_role)))
    recovery_arn = f"arn:aws:states:eu-west-1:{ACCOUNT}:stateMachine:warden-staging-recovery"
    assert recovery_arn in as_list(by_action["states:SendTaskSuccess"]["Resource"])
    bucket = _lid(stack, stack.storage.bucket)
    assert by_action["s3:GetObjectVersion"]["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/*"]]}
    assert by_action["s3:ListBucketVersions"]["Resource"] == {"Fn::GetAtt": [bucket, "Arn"]}
    # The recovery function's other steps stay its own: approval requests, the active-endpoint pointer
    assert not {"sns:Publish", "ssm:PutParameter"} & set(by_action)
    statements = _role_statements(template, _lid(stack, stack.tasks.task_role))
    assert not [s for s in statements if "/active/" in json.dumps(s["Resource"])]


def test_the_recovery_function_knows_the_stage_starts_tasks_and_may_stop_only_its_clusters_tasks(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    tasks = stack.tasks
    assert tasks is not None
    recovery_env, backup_env = _env(stack, template, "recovery"), _env(stack, template, "backup")
    for name in (names.ENV_TASK_STATE_MACHINE_ARN, names.ENV_TASK_CLUSTER):
        assert recovery_env[name] == backup_env[name]
    statements = _role_statements(template, logical_id(stack, stack.functions["recovery"].role))
    ecs = {a: s for a, s in _actions(statements).items() if a.startswith(("ecs:", "iam:", "states:Start"))}
    assert set(ecs) == {"ecs:ListTasks", "ecs:DescribeTasks", "ecs:StopTask"}
    on_cluster = {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [_lid(stack, tasks.cluster), "Arn"]}}}
    assert all(s["Condition"] == on_cluster for s in ecs.values())
    assert ecs["ecs:StopTask"]["Resource"] == f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task/warden-staging/*"


def test_a_stage_with_a_replica_and_staging_secrets_gives_the_task_what_restore_and_validate_read(
        variant: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = variant
    assert stack.tasks is not None
    (container,) = template["Resources"][_lid(stack, stack.tasks.task_definition)]["Properties"][
        "ContainerDefinitions"]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    recovery_env = _env(stack, template, "recovery")
    # The replica's whereabouts come from the recovery function; its approval topic and job name do not
    assert set(recovery_env) >= RECOVERY_TASK_ENV
    assert {name: environment[name] for name in RECOVERY_TASK_ENV} == {n: recovery_env[n] for n in RECOVERY_TASK_ENV}
    assert names.ENV_TOPIC_ARN not in environment and environment[names.ENV_FUNCTION] == "backup"
    by_action = _actions(_role_statements(template, _lid(stack, stack.tasks.task_role)))
    secrets = as_list(by_action["secretsmanager:GetSecretValue"]["Resource"])
    assert f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:{STAGING_SECRET}-??????" in secrets
    statements = _role_statements(template, _lid(stack, stack.tasks.task_role))
    replica = [s for s in statements if "warden-fgrec-replica-" in json.dumps(s.get("Resource"))]
    assert [as_list(s["Action"]) for s in replica] == [["s3:GetObject", "s3:GetObjectVersion"]]
    decrypt = [s for s in statements if s.get("Condition", {}).get("ForAnyValue:StringEquals")]
    assert [(s["Action"], s["Condition"]["ForAnyValue:StringEquals"]) for s in decrypt] == [
        ("kms:Decrypt", {"kms:ResourceAliases": ["alias/warden/fgrec/replica"]})]


def test_a_new_variable_of_the_recovery_function_must_be_placed_for_the_task(
        tmp_path: Path, dependency_layer_dir: Path) -> None:
    # Given the variant stage built (not synthesized), and a variable the recovery function got afterwards
    _, stacks = build_app({"stages": VARIANT}, outdir=str(tmp_path), dependency_layer_dir=dependency_layer_dir)
    stack = stacks["fgrec"]
    assert stack.tasks is not None and stack.tasks.node.validate() == []
    stack.functions["recovery"].function.add_environment("WARDEN_SOMETHING_NEW", "x")
    # Then the task definition's check names it
    (problem,) = stack.tasks.node.validate()
    assert "['WARDEN_SOMETHING_NEW']" in problem and "RECOVERY_TASK_ENV" in problem


# -- a stage without Fargate --------------------------------------------------------------------


def test_a_stage_without_fargate_has_the_recovery_machine_as_before(synthesized: Synthesized,
                                                                    dev: dict[str, Any]) -> None:
    stack = synthesized.stacks["dev"]
    assert stack.tasks is None
    definition = _recovery(stack, dev)
    states = definition["States"]
    assert set(states) == LAMBDA_STATES and states["Preflight"]["Next"] == "Restore"
    assert definition["TimeoutSeconds"] == 7 * 86400 + 2 * 3600
    statements = _role_statements(dev, _lid(stack, stack.recovery.state_machine.role))
    statements += _role_statements(dev, logical_id(stack, stack.functions["recovery"].role))
    assert not [a for a in _actions(statements) if a.startswith(("ecs:", "iam:PassRole"))]
    assert not {names.ENV_TASK_STATE_MACHINE_ARN, names.ENV_TASK_CLUSTER} & set(_env(stack, dev, "recovery"))
