"""Per-target resources of a stage, in nested stacks: what lets one stage hold hundreds of targets
inside CloudFormation's limits (500 resources, 200 parameters, 200 outputs per stack).

A stage's shared resources (key, bucket, tables, topic, layers, functions, state machines, schedule
group and roles) stay in the stage's stack. Everything one target deploys on its own — its
configuration parameter, its alarms, instance alarms, log metric filters, schedules, restore drill
and rotation schedule — is one `TargetResources`, built in a group stack (`TargetGroupStack`, an
`aws_cdk.NestedStack`): the targets of one `Target.group`, split into chunks by a hash trie
(`chunk_targets`) so that each chunk plans at most `CHUNK_BUDGET` resources.

Why a hash trie: a target's chunk is the shortest prefix of the bits of SHA-256(name) whose
targets (same group) fit the budget. It depends only on the targets sharing that prefix, so adding
or removing a target changes its own chunk's stack and no other; when a chunk outgrows the budget
only its own targets split between its two halves (sorted order would shift every later target).
docs/fleets.md has the limits, the numbers and what a split means at deploy.

References: a per-target resource refers to the stage's shared resources through `TargetContext`;
the CDK turns each shared token into one parameter of the nested stack, once per stack however many
targets use it. Never hand a per-target resource's token to a shared construct: that is a
nested-stack output per target (refer to it by name instead, as `Alarms.referable` and
`grant_target_config_read` do).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from aws_cdk import CfnResource, NestedStack
from constructs import Construct

from infra.alarms import Alarms
from infra.instance_alarms import InstanceAlarms, instance_monitoring_of
from infra.log_monitoring import COUNTS, LogMonitors, patterns_for
from infra.recovery import RecoveryStateMachine
from infra.rotation import Rotation
from infra.schedules import TargetSchedules
from infra.storage import build_target_parameter
from warden.config.monitoring import log_format_of
from warden.config.stage import StageConfig
from warden.config.target import Target

# What one group stack plans for (CloudFormation allows 500): room for an estimate that falls short
# and for a chunk's growth before it splits.
CHUNK_BUDGET = 250
# A group stack that measures more than this after synthesis fails it, naming the stack.
MAX_STACK_RESOURCES = 450
_MAX_DEPTH = 16  # 65,536 chunks per group: far past any stage


@dataclass(frozen=True)
class TargetContext:
    """The stage's shared constructs a target's resources refer to (or register with).

    `alarms`: the stage's Alarms (per-target alarms join its `alarms` / `by_target`); `schedules`,
    `recovery`, `rotation`: None where the stage has none.
    """

    stage: StageConfig
    alarms: Alarms
    schedules: TargetSchedules | None = None
    recovery: RecoveryStateMachine | None = None
    rotation: Rotation | None = None


class TargetResources(Construct):
    """Everything one target deploys on its own, built in its group stack.

    To add a per-target resource: give its construct a `build_target(scope, target)` (or take
    `targets=[target]`) that builds into `scope`, call it here, and count it in `planned_resources`;
    shared resources stay in the stage's stack and are reached through `context`.
    Attributes: `target`, `parameter`, `alarms` [Alarm], `instance_alarms`, `log_monitors`.
    """

    def __init__(self, scope: Construct, id: str, *, target: Target, context: TargetContext) -> None:
        super().__init__(scope, id)
        self.target = target
        self.parameter = build_target_parameter(self, context.stage, target)
        self.alarms = context.alarms.build_target(self, target)
        self.instance_alarms = InstanceAlarms(self, "InstanceAlarms", alarms=context.alarms, targets=[target])
        self.log_monitors = LogMonitors(self, "LogMonitors", alarms=context.alarms, targets=[target])
        if context.schedules is not None:
            context.schedules.build_target(self, target)
        if context.recovery is not None:
            context.recovery.build_drill(self, target)
        if context.rotation is not None:
            context.rotation.build_target(self, target)

    @property
    def resource_count(self) -> int:
        """The CloudFormation resources built for this target (measured)."""
        return count_resources(self)


def count_resources(scope: Construct) -> int:
    return sum(isinstance(c, CfnResource) for c in scope.node.find_all())


def planned_resources(target: Target, context: TargetContext) -> int:
    """An upper bound of the resources `TargetResources` builds for `target`, known before it is
    built (chunking needs it first); tests/infra/test_fleet_synth.py holds it against the measured count."""
    count = 1  # the parameter; Alarms.build_target: none (each condition is a fleet alarm, infra/alarms.py)
    instances = instance_monitoring_of(target)
    if instances is not None:
        # per EC2 instance: cpu, memory, status, 2 x network, recover, and one per disk path
        count += len(instances.ec2_instance_ids) * (6 + len(instances.disk_paths))
        count += 8 if target.rds is not None else 0
    if target.logs is not None:
        patterns = patterns_for(log_format_of(target.engine.value, target.logs))
        count += sum(len(patterns[c.metric]) for c in COUNTS) + len(COUNTS)
    if context.schedules is not None:
        count += len(context.schedules.functions)
    count += (context.recovery is not None) + (context.rotation is not None and target.rotation.enabled)
    return count


def _bit(name: str, index: int) -> int:
    digest = hashlib.sha256(name.encode()).digest()
    return (digest[index // 8] >> (7 - index % 8)) & 1


def chunk_targets(targets: Sequence[Target], cost: Callable[[Target], int],
                  budget: int = CHUNK_BUDGET) -> dict[str, list[Target]]:
    """Targets of one group by chunk: the key is the shortest bit prefix of SHA-256(name) whose
    targets' `cost` fits `budget` ("" when the whole group fits). Empty halves make no chunk."""

    def split(prefix: str, members: list[Target]) -> dict[str, list[Target]]:
        if not members:
            return {}
        if sum(cost(t) for t in members) <= budget or len(members) == 1 or len(prefix) >= _MAX_DEPTH:
            return {prefix: sorted(members, key=lambda t: t.name)}
        depth = len(prefix)
        return {**split(prefix + "0", [t for t in members if _bit(t.name, depth) == 0]),
                **split(prefix + "1", [t for t in members if _bit(t.name, depth) == 1])}

    return split("", list(targets))


def group_stack_id(group: str, chunk: str) -> str:
    return f"{group}-{chunk or 'all'}"


class TargetGroupStack(NestedStack):
    """One chunk of one group's targets: a `TargetResources` per target. Attributes: `group`,
    `chunk`, `targets` {name: TargetResources}."""

    def __init__(self, scope: Construct, id: str, *, group: str, chunk: str, targets: Iterable[Target],
                 context: TargetContext) -> None:
        members = list(targets)
        super().__init__(scope, id, description=(
            f"Warden {context.stage.name}: targets of group {group}, chunk {chunk or 'all'} "
            f"({len(members)} target(s))"))
        self.group = group
        self.chunk = chunk
        self.targets = {t.name: TargetResources(self, t.name, target=t, context=context) for t in members}
        measured = count_resources(self)
        if measured > MAX_STACK_RESOURCES:
            raise ValueError(
                f"stage {context.stage.name!r}: group stack {id} has {measured} resources, over "
                f"{MAX_STACK_RESOURCES}: planned_resources (infra/targets.py) undercounts a target")


class TargetGroups(Construct):
    """The group stacks of a stage: every target's `TargetResources`, grouped by `Target.group` and
    chunked by `chunk_targets`. Attributes: `stacks` {id: TargetGroupStack}, `by_target` {name:
    TargetResources}, `planned` {name: planned resource count}."""

    def __init__(self, scope: Construct, id: str, *, context: TargetContext, budget: int | None = None) -> None:
        super().__init__(scope, id)
        budget = CHUNK_BUDGET if budget is None else budget
        stage = context.stage
        self.planned = {t.name: planned_resources(t, context) for t in stage.targets}
        self.stacks: dict[str, TargetGroupStack] = {}
        self.by_target: dict[str, TargetResources] = {}
        for group in sorted({t.group for t in stage.targets}):
            members = [t for t in stage.targets if t.group == group]
            for chunk, targets in chunk_targets(members, lambda t: self.planned[t.name], budget).items():
                stack_id = group_stack_id(group, chunk)
                nested = TargetGroupStack(self, stack_id, group=group, chunk=chunk, targets=targets,
                                          context=context)
                self.stacks[stack_id] = nested
                self.by_target.update(nested.targets)
