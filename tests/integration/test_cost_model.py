"""The CloudWatch cost per target (docs/cost.md, infra/cost.py) from a real health run: the deployed
health function checks the local PostgreSQL and Neo4j targets, its EMF lines are counted into
distinct metric streams per target, the synthesized local template gives the alarms covering each
target, and the model's monthly figure per target stays within the issue's $3 budget."""

from __future__ import annotations

import re
from typing import Any

import pytest

from infra import cost
from local.aws import LocalAws
from local.deploy import Deployment
from tests.conftest import invoke, load_event

pytestmark = pytest.mark.integration


def covering_alarms(template: dict[str, Any], target: str) -> tuple[int, int]:
    """(Metrics Insights alarms whose query covers `target`, standard alarms naming it)."""
    insights = standard = 0
    quoted = f"'{target}'"
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        expression = next((m.get("Expression", "") for m in props.get("Metrics", []) if "Expression" in m), "")
        if expression.upper().startswith("SELECT"):
            within = re.search(r"Target IN \(([^)]*)\)", expression)
            without = re.search(r"Target NOT IN \(([^)]*)\)", expression)
            if (within is None or quoted in within.group(1)) and (without is None or quoted not in without.group(1)):
                insights += 1
        elif props.get("AlarmName", "").startswith(f"warden-local-{target}-"):
            standard += 1
    return insights, standard


@pytest.fixture
def measured(aws: LocalAws, deployed: Deployment, local_template: dict[str, Any],
             capsys: pytest.CaptureFixture[str]) -> dict[str, cost.TargetCost]:
    """Each engine's per-target cost from one real health run (printed)."""
    # Given both local targets backed up (a target's steady state: its backup tier passes), then a
    # real health run of both through the deployed function
    for target in ("pg-local", "graph-local"):
        record, error = invoke(aws, deployed.function_named("backup"), load_event("backup_manual", target=target))
        assert error is None, record
        verified, error = invoke(aws, deployed.function_named("verify"), {"target": target})
        assert error is None, verified
    capsys.readouterr()
    report, error = invoke(aws, deployed.function_named("health"), load_event("health_all_targets"))
    assert error is None, report
    lines = capsys.readouterr().out.splitlines()

    # When its EMF lines are counted into streams per target and priced with the template's alarms
    streams = cost.emf_streams(lines)
    figures = {}
    for target, engine in (("pg-local", "postgres"), ("graph-local", "neo4j")):
        found = streams[target]
        assert found, f"no EMF streams for {target}"
        assert all(dict(dims).get("Stage") == "local" for _, dims in found)  # stages never share a stream
        insights, standard = covering_alarms(local_template, target)
        figures[engine] = cost.target_cost(engine, len(found), insights, standard)
        one = figures[engine]
        with capsys.disabled():
            print(f"\n{engine}: ${one.monthly:.2f}/month per target ({one.health_streams} health streams "
                  f"{sorted(n + ('/' + dict(d)['Tier'] if 'Tier' in dict(d) else '') for n, d in found)}, "
                  f"{one.daily_streams} daily, {insights} fleet-alarm metrics, {standard} per-target alarms)")
    return figures


@pytest.mark.parametrize("engine", [
    "postgres",
    "neo4j",
])
def test_cost_per_target_from_a_real_health_run_is_within_budget(
        engine: str, measured: dict[str, cost.TargetCost]) -> None:
    # Then the engine's target costs at most the budget a month
    one = measured[engine]
    assert one.monthly <= cost.BUDGET_PER_TARGET, one
