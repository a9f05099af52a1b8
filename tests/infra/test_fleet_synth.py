"""A stage of hundreds of targets synthesizes within CloudFormation's limits: per-target resources
live in group stacks (infra/targets.py), every template — the stage's and each nested one — stays
within the quotas, and adding a target changes only its own group stack.

Size: WARDEN_FLEET_SIZE targets (default 500; the synthesis takes minutes, see docs/fleets.md for
the measured times); `make bench` measures 10, 100 and 500 (tests/perf/test_synth_perf.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infra import targets as target_groups
from infra.stack import build_app
from infra.targets import chunk_targets
from tests.fleet_synth import (
    INLINE_BODY_BYTES,
    STAGE,
    FleetSynth,
    fleet_stage,
    fleet_target,
    over_limits,
    synthesize_fleet,
)
from warden import fleet_alarms
from warden.config.target import Target

pytestmark = pytest.mark.infra

SIZE = int(os.environ.get("WARDEN_FLEET_SIZE", "500"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, dependency_layer_dir: Path) -> FleetSynth:
    synth = synthesize_fleet(SIZE, tmp_path_factory.mktemp("cdk.out.fleet"), dependency_layer_dir)
    print(f"\n{SIZE} targets: built in {synth.build_seconds:.1f} s, synthesized in {synth.synth_seconds:.1f} s")
    return synth


def test_every_template_of_a_500_target_stage_is_within_cloudformation_limits(fleet: FleetSynth) -> None:
    templates = fleet.templates()
    # Given a stage of SIZE targets in four groups, the stage's stack holds a stack per group chunk
    assert len(templates) - 1 == len(fleet.group_stacks) >= 4
    # Then no template breaks a quota: resources, parameters, outputs, mappings, body size
    problems = [p for name, template in templates.items() for p in over_limits(name, template)]
    assert problems == []
    # and every group stack but a lone-target one stays within the budget its chunking planned for
    for name, template in templates.items():
        if name != fleet.artifact_id:
            assert len(template["Resources"]) <= target_groups.MAX_STACK_RESOURCES, name
    # Templates over 51,200 bytes deploy by URL only: the CDK uploads every template to the
    # bootstrap bucket (cdk bootstrap), which the stage's template is at this size.
    assert max(len(json.dumps(t, separators=(",", ":"))) for t in templates.values()) > INLINE_BODY_BYTES


def test_every_fleet_alarm_query_of_a_500_target_stage_fits_cloudwatchs_query_limit(fleet: FleetSynth) -> None:
    # Given every alarm of the stage's templates that evaluates a Metrics Insights query
    queries = {alarm_id: metric["Expression"]
               for template in fleet.templates().values()
               for alarm_id, resource in template["Resources"].items()
               if resource["Type"] == "AWS::CloudWatch::Alarm"
               for metric in resource["Properties"].get("Metrics", []) if "Expression" in metric}
    # Then there are fleet alarms, and none is longer than CloudWatch accepts (2,048 characters)
    assert any("SCHEMA(" in q for q in queries.values())
    assert {a: len(q) for a, q in queries.items() if len(q) > fleet_alarms.QUERY_LIMIT} == {}


def test_each_target_is_in_one_group_stack_of_its_own_group_and_planned_at_least_what_it_builds(
        fleet: FleetSynth) -> None:
    placed = [name for members in fleet.group_stacks.values() for name in members]
    assert sorted(placed) == sorted(fleet_target(i)["name"] for i in range(SIZE))
    for stack_id, members in fleet.group_stacks.items():
        groups = {fleet_target(int(name.removeprefix("db-")))["group"] for name in members}
        assert groups == {stack_id.split("-")[0]}, stack_id
    # The planned count (chunking needs it before building) is an upper bound of the measured one
    undercounted = {t: (fleet.planned[t], n) for t, n in fleet.measured.items() if n > fleet.planned[t]}
    assert undercounted == {}


def test_group_stacks_take_each_shared_value_once_and_give_nothing_back(fleet: FleetSynth) -> None:
    stacks = [r for r in fleet.parent["Resources"].values() if r["Type"] == "AWS::CloudFormation::Stack"]
    for stack in stacks:
        values = [json.dumps(v, sort_keys=True) for v in stack["Properties"].get("Parameters", {}).values()]
        # one parameter per shared value (the topic, a function's ARN...), however many targets use it
        assert len(values) == len(set(values)) and len(values) <= 20
    for name, template in fleet.templates().items():
        if name != fleet.artifact_id:  # an output would mean a shared construct refers to a target's resource
            assert not template.get("Outputs"), name


def _targets(names: list[str]) -> list[Target]:
    return [Target(name=n, engine="postgres", secret_name=f"s/{n}") for n in names]


def test_adding_a_target_changes_only_its_own_chunk_or_splits_only_that_chunk() -> None:
    # Given a group of 60 targets of 5 resources each, chunked at most 40 resources a chunk
    names = [f"db-{i:04d}" for i in range(60)]
    before = chunk_targets(_targets(names), lambda t: 5, 40)
    assert len(before) >= 8
    for added in ("db-new", "orders", "zz-top", "a", "db-0060", "db-0061"):
        # When one target joins
        after = chunk_targets(_targets([*names, added]), lambda t: 5, 40)
        (home,) = [k for k, members in after.items() if added in {t.name for t in members}]
        (old_home,) = [k for k in before if home.startswith(k) or k.startswith(home)]
        # Then only the chunk it joins changed (or split into halves under the same prefix)
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        assert changed <= {old_home} | {k for k in after if k.startswith(old_home)}, (added, changed)
        # and every other chunk, and so every other target's stack, is as it was
        for key, members in before.items():
            if key != old_home:
                assert after[key] == members


def test_adding_a_target_to_a_stage_changes_one_nested_template(
        tmp_path: Path, dependency_layer_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a stage of 40 targets whose groups split into several chunks: a budget of about three
    # targets (what a target plans depends on the stage's jobs; read from a build without synthesis)
    _, stacks = build_app({"stages": {STAGE: fleet_stage(40)}, "stage": STAGE}, outdir=str(tmp_path / "plan"),
                          dependency_layer_dir=dependency_layer_dir)
    budget = 3 * max(stacks[STAGE].targets.planned.values())
    monkeypatch.setattr(target_groups, "CHUNK_BUDGET", budget)
    before = synthesize_fleet(40, tmp_path / "before", dependency_layer_dir)
    assert len(before.group_stacks) >= 6
    # When one more plain target joins group "payments", in a chunk with room for it (a chunk
    # that overflows splits, and only its own targets move: test_adding_a_target_changes_only_its_own_chunk...)
    plain = {"engine": "postgres", "group": "payments"}
    name = _joining_without_split(before, plain, budget)
    extra = {**plain, "name": name, "secret_name": f"warden/fleet/{name}"}
    after = synthesize_fleet(40, tmp_path / "after", dependency_layer_dir, extra=[extra])
    # Then exactly one nested template differs: the one that holds the new target
    old, new = _nested_by_stack(before), _nested_by_stack(after)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    assert changed == [next(k for k, members in after.group_stacks.items() if name in members)]


def _joining_without_split(synth: FleetSynth, fields: dict[str, str], budget: int) -> str:
    """A new target name whose chunk of `fields["group"]` in `synth` has room for one more like it."""
    members = [t for i in range(synth.size) if (t := fleet_target(i))["group"] == fields["group"]]
    # a plain PostgreSQL target plans what the plain ones of the stage plan
    cost = min(synth.planned[t["name"]] for t in members if not {"rds", "logs", "instances"} & set(t))
    group = [Target(name=t["name"], engine=t["engine"], secret_name=t["secret_name"]) for t in members]
    planned = {**synth.planned}
    keys = set(chunk_targets(group, lambda t: planned[t.name], budget))
    for k in range(100):
        name = f"db-added-{k}"
        planned[name] = cost
        joined = chunk_targets([*group, Target(name=name, engine="postgres", secret_name="s")],
                               lambda t: planned[t.name], budget)
        if set(joined) == keys:
            return name
    raise AssertionError("no name joins a chunk with room")


def _nested_by_stack(synth: FleetSynth) -> dict[str, str]:
    """Group stack id -> its template's text, read from the cloud assembly."""
    parent = synth.parent
    by_logical_id = {lid: json.dumps(t, sort_keys=True) for lid, t in
                     target_groups_templates(synth, parent).items()}
    return {sid: by_logical_id[lid] for sid, lid in _logical_ids(synth, parent).items()}


def target_groups_templates(synth: FleetSynth, parent: dict[str, object]) -> dict[str, dict[str, object]]:
    from infra.assembly import nested_templates

    return nested_templates(parent, synth.outdir)  # type: ignore[arg-type]


def _logical_ids(synth: FleetSynth, parent: dict[str, object]) -> dict[str, str]:
    resources = parent["Resources"]
    assert isinstance(resources, dict)
    found = {}
    for sid in synth.group_stacks:
        key = "".join(ch for ch in f"Targets{sid}" if ch.isalnum())
        (lid,) = [lid for lid, r in resources.items() if r["Type"] == "AWS::CloudFormation::Stack"
                  and lid.startswith(key + "NestedStack")]
        found[sid] = lid
    return found
