"""The smoke state machine: one LambdaInvoke of the health WardenFunction, renderable for moto."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_helpers import Synthesized, logical_id, resources

from local.aws import render_definition

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def smoke(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.template(synthesized.smoke)


def test_smoke_state_machine_invokes_the_health_function_and_returns_its_payload(
    synthesized: Synthesized, smoke: dict[str, Any]
) -> None:
    # Given the synthesized smoke stack
    (machine_id,) = resources(smoke, "AWS::StepFunctions::StateMachine")
    (function_id,) = resources(smoke, "AWS::Lambda::Function")
    assert smoke["Resources"][function_id]["Properties"]["Environment"]["Variables"]["WARDEN_FUNCTION"] == "health"
    # When its definition is rendered as the local runtime renders it
    definition = json.loads(
        render_definition(smoke, machine_id, lambda lid, attribute: f"{lid}.{attribute}" if attribute else lid)
    )
    # Then it is one Task calling the function directly (payload_response_only)
    (state,) = definition["States"].values()
    assert definition["StartAt"] == "CheckHealth"
    assert state["Type"] == "Task"
    assert state["Resource"] == f"{function_id}.Arn"
    assert state["End"] is True
    assert any("Lambda.ServiceException" in r["ErrorEquals"] for r in state.get("Retry", []))
    assert machine_id == logical_id(synthesized.smoke, synthesized.smoke.state_machine)


def test_smoke_state_machine_logs_everything_and_is_traced(smoke: dict[str, Any]) -> None:
    (machine,) = resources(smoke, "AWS::StepFunctions::StateMachine").values()
    props = machine["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    (destination,) = props["LoggingConfiguration"]["Destinations"]
    log_group_id = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert "KmsKeyId" in smoke["Resources"][log_group_id]["Properties"]
