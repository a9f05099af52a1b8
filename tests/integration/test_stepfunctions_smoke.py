"""Smoke: a tiny state machine built with the stack's own constructs, synthesized, deployed into
moto, and run by moto's interpreter; its Task invokes the real health handler in-process."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from local.aws import LocalAws
from local.deploy import deploy_template
from tests.conftest import STAGE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smoke_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from aws_cdk import App

    from infra.config import read_cdk_json_context
    from infra.nag import enable_nag
    from infra.smoke import SmokeStack
    from warden.config.stage import StageConfig

    app = App(context=read_cdk_json_context(), outdir=str(tmp_path_factory.mktemp("smoke.out")))
    enable_nag(app)
    stack = SmokeStack(app, stage=StageConfig(name=STAGE))
    assembly = app.synth()
    return dict(assembly.get_stack_by_name(stack.stack_name).template)


def run_execution(aws: LocalAws, arn: str, payload: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    sfn = aws.client("stepfunctions")
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(payload))["executionArn"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return dict(described)
        time.sleep(0.2)
    raise TimeoutError(f"execution {execution} still running after {timeout} s")


def test_smoke_state_machine_runs_the_real_handler(aws: LocalAws, local_targets: dict,
                                                   smoke_template: dict[str, Any]) -> None:
    # Given the synthesized smoke stack deployed into moto
    deployment = deploy_template(aws, smoke_template, STAGE)
    arn = deployment.state_machine_arn("SmokeStateMachine")
    # When an execution checks one target
    result = run_execution(aws, arn, {"target": "pg-local"})
    # Then the Task ran the real handler against the real PostgreSQL
    assert result["status"] == "SUCCEEDED", result
    report = json.loads(result["output"])
    assert report["targets"][0]["target"] == "pg-local"
    assert report["targets"][0]["checks"][0]["details"]["version"].startswith("18.")


def test_smoke_state_machine_fails_with_the_handlers_error_name(aws: LocalAws, local_targets: dict,
                                                                smoke_template: dict[str, Any]) -> None:
    deployment = deploy_template(aws, smoke_template, STAGE)
    result = run_execution(aws, deployment.state_machine_arn("SmokeStateMachine"), {"target": "absent"})
    assert result["status"] == "FAILED"
    assert result.get("error") == "TargetNotFound", result
