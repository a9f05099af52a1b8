"""The local runtime runs the synthesized state machine definition; rendering it must resolve
every reference CDK writes, and fail loudly on anything it does not understand."""

from __future__ import annotations

import json

import pytest

from local.aws import render_definition


def template_with(definition: object, substitutions: dict | None = None) -> dict:
    props: dict = {"DefinitionString": definition}
    if substitutions:
        props["DefinitionSubstitutions"] = substitutions
    return {"Resources": {"Machine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": props}}}


def test_join_with_getatt_and_ref_resolves_to_local_values() -> None:
    definition = {"Fn::Join": ["", [
        '{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"',
        {"Fn::GetAtt": ["HealthFn", "Arn"]},
        '","Parameters":{"Topic":"', {"Ref": "Topic"}, '"},"End":true}}}',
    ]]}
    values = {("HealthFn", "Arn"): "arn:aws:lambda:eu-west-1:123456789012:function:h", ("Topic", None): "arn:sns"}
    text = render_definition(template_with(definition), "Machine", lambda i, a: values[(i, a)])
    state = json.loads(text)["States"]["T"]
    assert state["Resource"].endswith(":function:h")
    assert state["Parameters"]["Topic"] == "arn:sns"


def test_definition_substitutions_are_applied() -> None:
    text = render_definition(
        template_with('{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"${Fn}","End":true}}}',
                      {"Fn": {"Fn::GetAtt": ["HealthFn", "Arn"]}}),
        "Machine", lambda i, a: f"arn:{i}:{a}")
    assert json.loads(text)["States"]["T"]["Resource"] == "arn:HealthFn:Arn"


def test_unknown_intrinsic_is_an_error_not_a_silent_blank() -> None:
    with pytest.raises(ValueError, match="unsupported intrinsic"):
        render_definition(template_with({"Fn::Join": ["", [{"Fn::ImportValue": "x"}]]}), "Machine",
                          lambda i, a: "x")
