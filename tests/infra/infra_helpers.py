"""What the infrastructure tests share: the session's synthesis result and small readers of
synthesized CloudFormation templates."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_cdk import App, Stack

from infra.assembly import read_template, stage_template
from infra.smoke import SmokeStack
from infra.stack import WardenStack

RESOURCE_POLICY_TYPES = {
    "AWS::IAM::Policy": ("PolicyDocument",),
    "AWS::IAM::ManagedPolicy": ("PolicyDocument",),
    "AWS::S3::BucketPolicy": ("PolicyDocument",),
    "AWS::SNS::TopicPolicy": ("PolicyDocument",),
    "AWS::SQS::QueuePolicy": ("PolicyDocument",),
    "AWS::KMS::Key": ("KeyPolicy",),
}


@dataclass
class Synthesized:
    """One synthesis of the app (every stage) plus the smoke and grants-probe stacks."""

    app: App
    outdir: Path
    stacks: dict[str, WardenStack]
    smoke: SmokeStack
    probe: Stack
    seconds: float
    _templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def template(self, stack: Stack) -> dict[str, Any]:
        """The synthesized CloudFormation template of `stack`, as JSON, with its nested stacks (the
        targets' group stacks) inlined and their parameters resolved: what the stage deploys."""
        if stack.artifact_id not in self._templates:
            self._templates[stack.artifact_id] = stage_template(self.outdir, stack.artifact_id)
        return self._templates[stack.artifact_id]

    def parent_template(self, stack: Stack) -> dict[str, Any]:
        """The template of `stack` alone, as synthesized (nested stacks as AWS::CloudFormation::Stack)."""
        return read_template(self.outdir, stack.artifact_id)

    @property
    def all_stacks(self) -> list[Stack]:
        return [*self.stacks.values(), self.smoke, self.probe]


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """The resources of one type, by logical id."""
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == resource_type}


def logical_id(stack: Stack, construct: Any) -> str:
    """The logical id of an L2 construct's CloudFormation resource."""
    return str(stack.resolve(stack.get_logical_id(construct.node.default_child)))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every policy statement of the template, with the logical id of the resource holding it:
    IAM policies, roles' inline policies, bucket / topic / queue policies and key policies."""
    for lid, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in RESOURCE_POLICY_TYPES:
            (doc_key,) = RESOURCE_POLICY_TYPES[resource["Type"]]
            for statement in as_list(props.get(doc_key, {}).get("Statement", [])):
                yield lid, statement
        elif resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for statement in as_list(policy["PolicyDocument"]["Statement"]):
                    yield lid, statement


def references(value: Any, logical_id: str) -> bool:
    """Whether a template value (a Resource entry, ...) refers to `logical_id` (Ref or GetAtt)."""
    if isinstance(value, dict):
        if value.get("Ref") == logical_id:
            return True
        if "Fn::GetAtt" in value and value["Fn::GetAtt"][0] == logical_id:
            return True
        return any(references(v, logical_id) for v in value.values())
    if isinstance(value, list):
        return any(references(v, logical_id) for v in value)
    return False


def fleet_alarm_targets(props: dict[str, Any], stage_targets: list[str]) -> set[str]:
    """The targets a fleet alarm (one Metrics Insights query over the stage) covers: those its
    `Target IN (...)` names, or every target of the stage but those its `Target NOT IN (...)` names."""
    import re

    (query,) = [m["Expression"] for m in props.get("Metrics", []) if "Expression" in m]
    listed = re.search(r"Target (NOT )?IN \(([^)]*)\)", query)
    if listed is None:
        return set(stage_targets)
    names = {n.strip().strip("'") for n in listed.group(2).split(",")}
    return set(stage_targets) - names if listed.group(1) else names
