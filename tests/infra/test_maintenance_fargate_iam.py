"""Maintenance on Fargate as synthesized (docs/fargate.md, "Maintenance on Fargate"): where the stage
can start tasks, the maintenance function may start the Task state machine (and only it) and knows
its ARN; the task, which runs maintenance with the backup function's grants, may do everything the
maintenance function's run does; the Abandon step tells the backup function which job it abandons; a
stage without Fargate gives the maintenance function none of it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_helpers import Synthesized, as_list, logical_id, resources

from infra.stack import WardenStack
from warden import names

pytestmark = pytest.mark.infra

ACCOUNT = "123456789012"
TASK_MACHINE = f"arn:aws:states:eu-west-1:{ACCOUNT}:stateMachine:warden-staging-task"


@pytest.fixture(scope="module")
def staging(synthesized: Synthesized) -> tuple[WardenStack, dict[str, Any]]:
    stack = synthesized.stacks["staging"]
    return stack, synthesized.template(stack)


def role_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Every statement of the policies attached to the role `role` (a logical id)."""
    return [s for r in resources(template, "AWS::IAM::Policy").values() if {"Ref": role} in r["Properties"]["Roles"]
            for s in as_list(r["Properties"]["PolicyDocument"]["Statement"])]


def grants(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(action, resource) pairs the statements allow, resources as JSON (references included)."""
    return {(action, json.dumps(resource, sort_keys=True)) for s in statements if s["Effect"] == "Allow"
            for action in as_list(s["Action"]) for resource in as_list(s["Resource"])}


def function_env(stack: WardenStack, template: dict[str, Any], job: str) -> dict[str, Any]:
    fn = template["Resources"][logical_id(stack, stack.functions[job].function)]
    return dict(fn["Properties"]["Environment"]["Variables"])


def test_the_maintenance_function_may_start_the_task_state_machine_only_where_the_stage_has_one(
        staging: tuple[WardenStack, dict[str, Any]], synthesized: Synthesized, dev: dict[str, Any]) -> None:
    # A stage without Fargate: no machine to start, no variable naming one, no grant
    dev_stack = synthesized.stacks["dev"]
    assert dev_stack.tasks is None
    assert names.ENV_TASK_STATE_MACHINE_ARN not in function_env(dev_stack, dev, "maintenance")
    dev_statements = role_statements(dev, logical_id(dev_stack, dev_stack.functions["maintenance"].role))
    assert not [a for s in dev_statements for a in as_list(s["Action"]) if a.startswith("states:")]
    # A stage with Fargate (staging: a network): StartExecution on the Task state machine only
    stack, template = staging
    assert stack.tasks is not None
    role = logical_id(stack, stack.functions["maintenance"].role)
    statements = role_statements(template, role)
    start = [s for s in statements if "states:StartExecution" in as_list(s["Action"])]
    assert [(s["Action"], s["Resource"]) for s in start] == [("states:StartExecution", TASK_MACHINE)]
    assert not [s for s in start if "Condition" in s]
    # the machine it starts is the Task state machine, the one the backup function starts too
    machine = template["Resources"][logical_id(stack, stack.tasks.state_machine)]["Properties"]
    assert machine["StateMachineName"] == TASK_MACHINE.rsplit(":", 1)[-1]
    env = function_env(stack, template, "maintenance")
    assert env[names.ENV_TASK_STATE_MACHINE_ARN] == TASK_MACHINE
    assert function_env(stack, template, "backup")[names.ENV_TASK_STATE_MACHINE_ARN] == TASK_MACHINE
    # it starts runs; it neither runs tasks itself nor stops them, nor passes roles
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert not [a for a in actions if a.startswith(("ecs:", "iam:")) or (a.startswith("states:")
                                                                        and a != "states:StartExecution")]


def test_the_task_role_may_do_everything_a_maintenance_run_does(staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    assert stack.tasks is not None
    maintenance = grants(role_statements(template, logical_id(stack, stack.functions["maintenance"].role)))
    task = grants(role_statements(template, logical_id(stack, stack.tasks.task_role)))
    # what the function's own run needs: the state table (lease, last runs, durations), the audit, the
    # targets' configuration and secrets, the key; handing over is the function's, not the task's, and
    # its network interfaces, log group and traces are the Lambda runtime's (the task has its own)
    needed = {(a, r) for a, r in maintenance
              if a != "states:StartExecution" and not a.startswith(("ec2:", "logs:", "xray:"))}
    assert {a for a, _ in needed} >= {"dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:PutItem",
                                      "secretsmanager:GetSecretValue", "ssm:GetParametersByPath", "kms:Decrypt"}
    assert needed - task == set()


def test_the_abandon_step_tells_the_backup_function_the_job_of_the_run(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    from local.aws import render_definition

    stack, template = staging
    assert stack.tasks is not None
    lid = logical_id(stack, stack.tasks.state_machine)
    states = json.loads(render_definition(template, lid, lambda i, a: f"<{i}.{a}>" if a else f"<{i}>"))["States"]
    assert states["Abandon"]["Parameters"]["job.$"] == "$.job"
