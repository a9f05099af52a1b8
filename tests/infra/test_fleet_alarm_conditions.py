"""Every alarm condition of the per-target alarms of old still fires as a fleet alarm, one test per
condition: the Metrics Insights alarm exists with the condition's threshold and window, and given a
failing target's values the resolver names that target and its check (warden.fleet_alarms)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template

from infra.alarms import Alarms
from warden import fleet_alarms
from warden.config.stage import StageConfig
from warden.config.target import Target

STAGE = StageConfig(name="dev", targets=[
    Target(name="graph-main", engine="neo4j", secret_name="warden/dev/graph-main"),
    Target(name="orders-pg", engine="postgres", secret_name="warden/dev/orders-pg",
           retention={"storage_budget_gb": 5}),
    Target(name="other-pg", engine="postgres", secret_name="warden/dev/other-pg"),
])

# condition: (failing target, threshold, period s, M, N, a breaching value)
CASES = {
    "unhealthy": ("graph-main", 1, 300, 3, 5, 2.0),
    "backup-too-old": ("orders-pg", 26, 3600, 1, 1, 30.0),
    "backup-failed": ("orders-pg", 1, 300, 1, 1, 1.0),
    "backup-corrupt": ("graph-main", 1, 300, 1, 1, 1.0),
    "backup-near-time-limit": ("orders-pg", 720, 3600, 1, 1, 800.0),
    "backup-storage-over-budget": ("orders-pg", 5e9, 3600, 1, 1, 6e9),
    "license-expiring": ("graph-main", 30, 3600, 1, 1, 12.0),
    "neo4j-long-running-transactions": ("graph-main", 60, 300, 2, 3, 400.0),
    "pg-connections-saturated": ("orders-pg", 90, 300, 2, 3, 97.0),
    "pg-long-running-queries": ("other-pg", 1, 300, 2, 3, 3.0),
}


@pytest.fixture(scope="module")
def fleet() -> tuple[dict[str, Any], Alarms]:
    app = App()
    stack = Stack(app, "FleetAlarms")
    alarms = Alarms(stack, "Alarms", stage=STAGE, storage=SimpleNamespace(topic=sns.Topic(stack, "Topic")),
                    functions={})
    template = Template.from_stack(stack).to_json()
    by_name = {r["Properties"]["AlarmName"]: r["Properties"] for r in template["Resources"].values()
               if r["Type"] == "AWS::CloudWatch::Alarm"}
    return by_name, alarms


def _series(condition: str, target: str, value: float, periods: int) -> dict[str, list[float | None]]:
    """Every other target well inside the condition, `target` breaching in every period."""
    healthy = {"backup-too-old": 2.0, "license-expiring": 300.0}.get(condition, 0.0)
    series: dict[str, list[float | None]] = {t.name: [healthy] * periods for t in STAGE.targets}
    series[target] = [value] * periods
    return series


@pytest.mark.parametrize("condition", sorted(CASES))
def test_condition_fires_as_a_fleet_alarm_and_names_its_target(condition: str, fleet: Any) -> None:
    by_name, alarms = fleet
    target, threshold, period, m, n, value = CASES[condition]
    # Given the fleet alarm of the condition (one per stage: every target shares these settings)
    name = fleet_alarms.alarm_name("dev", condition)
    props = by_name[name]
    c = fleet_alarms.CONDITIONS[condition]
    (query,) = props["Metrics"]
    assert query["Expression"].startswith(f"SELECT {c.function}({c.metric}) FROM {fleet_alarms.SCHEMA_TARGET}")
    assert "WHERE Stage = 'dev'" in query["Expression"] and "GROUP BY Target" in query["Expression"]
    assert target in alarms.fleet[name].targets
    assert (props["Threshold"], query["Period"], props["DatapointsToAlarm"], props["EvaluationPeriods"]) == (
        threshold, period, m, n)
    assert props["ComparisonOperator"] == c.comparison and props["TreatMissingData"] == c.missing
    # When one target's values breach in the alarm's window
    found = fleet_alarms.breaching_targets(fleet_alarms.parse_name(name, "dev"), _series(condition, target, value, n),
                                           threshold=props["Threshold"], datapoints=m)
    # Then the resolver names that target, and only it, with the failing check
    assert [(b.target, b.check) for b in found] == [(target, c.check)]
    subject, body = fleet_alarms.message("dev", name, found)
    assert target in subject and c.check in body


@pytest.mark.parametrize("condition", ["unhealthy", "backup-too-old"])
def test_target_that_stops_reporting_is_named_by_the_unreported_alarm(condition: str, fleet: Any) -> None:
    by_name, _ = fleet
    name = fleet_alarms.alarm_name("dev", condition, unreported=True)
    props = by_name[name]
    assert props["Threshold"] == len(STAGE.targets) and props["TreatMissingData"] == "breaching"
    assert props["Metrics"][0]["Expression"].startswith(f"SELECT COUNT({fleet_alarms.CONDITIONS[condition].metric})")
    series = {"graph-main": [0.0] * 5, "orders-pg": [0.0] * 5}  # other-pg sends nothing
    found = fleet_alarms.breaching_targets(fleet_alarms.parse_name(name, "dev"), series,
                                           threshold=props["Threshold"], datapoints=props["DatapointsToAlarm"],
                                           expected=[t.name for t in STAGE.targets])
    assert [b.target for b in found] == ["other-pg"]


def test_a_sustained_condition_does_not_fire_on_one_breaching_period() -> None:
    alarm = fleet_alarms.parse_name("warden-dev-fleet-pg-connections-saturated", "dev")
    assert alarm is not None
    assert fleet_alarms.breaching_targets(alarm, {"orders-pg": [97.0, 10.0, 10.0]}, threshold=90, datapoints=2) == []
