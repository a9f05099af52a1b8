"""The stage's dashboards stay within CloudWatch's quotas at 500 targets (infra/dashboard.py): at most
500 widgets and 2,500 metrics a dashboard, 500 metrics a graph, 100 alarms an alarm widget, every
query under 2,048 characters; the overview leads with worst-first Metrics Insights widgets, and
every group has a drill-down."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template

from infra.alarms import Alarms
from infra.dashboard import ALARMS_PER_WIDGET, METRICS_MAX, METRICS_PER_WIDGET_MAX, QUERY_MAX, WIDGETS_MAX, Dashboard
from warden.config.stage import StageConfig
from warden.config.target import Target

pytestmark = pytest.mark.infra

GROUPS = ("payments", "search", "analytics", "default")
STAGE = StageConfig(name="fleet", targets=[
    Target(name=f"db-{i:03d}-{('orders', 'graph')[i % 2]}", engine=("postgres", "neo4j")[i % 2],
           secret_name=f"warden/fleet/db-{i:03d}", group=GROUPS[i % len(GROUPS)])
    for i in range(500)])


def _body(dashboard: dict[str, Any]) -> str:
    body = dashboard["Properties"]["DashboardBody"]
    return body if isinstance(body, str) else "".join(p if isinstance(p, str) else 'TOKEN' for p in body["Fn::Join"][1])


@pytest.fixture(scope="module")
def dashboards() -> dict[str, tuple[str, dict[str, Any]]]:
    stack = Stack(App(), "Fleet")
    alarms = Alarms(stack, "Alarms", stage=STAGE, storage=SimpleNamespace(topic=sns.Topic(stack, "Topic")),
                    functions={})
    Dashboard(stack, "Dashboard", alarms=alarms)
    found = Template.from_stack(stack).find_resources("AWS::CloudWatch::Dashboard")
    return {d["Properties"]["DashboardName"]: (_body(d), json.loads(_body(d))) for d in found.values()}


def _series(row: list[Any]) -> int:
    expression = next((x.get("expression") for x in row if isinstance(x, dict) and "expression" in x), "")
    if expression.upper().startswith("SELECT"):
        return int(expression.rsplit("LIMIT", 1)[1])
    return 1


def test_every_dashboard_of_a_500_target_stage_is_within_cloudwatchs_quotas(dashboards: Any) -> None:
    for name, (text, body) in dashboards.items():
        widgets = body["widgets"]
        metrics = [row for w in widgets for row in w["properties"].get("metrics", [])]
        print(f"{name}: {len(widgets)} widgets, {sum(map(_series, metrics))} metrics, {len(text) / 1024:.0f} KiB")
        assert len(widgets) <= WIDGETS_MAX, name
        assert sum(map(_series, metrics)) <= METRICS_MAX, name
        assert len(text) < 1_000_000, name  # well inside the stack template's own 1 MB
        for w in widgets:
            rows = w["properties"].get("metrics", [])
            assert sum(map(_series, rows)) <= METRICS_PER_WIDGET_MAX, w["properties"].get("title")
            assert len(w["properties"].get("alarms", [])) <= ALARMS_PER_WIDGET
            for row in rows:
                for x in row:
                    if isinstance(x, dict) and "expression" in x:
                        assert len(x["expression"]) <= QUERY_MAX, w["properties"]["title"]


def test_the_overview_leads_with_the_worst_targets_by_metrics_insights(dashboards: Any) -> None:
    _, overview = dashboards["warden-fleet"]
    queries = [row[0]["expression"] for w in overview["widgets"] for row in w["properties"].get("metrics", [])
               if isinstance(row[0], dict) and "expression" in row[0]]
    first = queries[0]
    assert first == ('SELECT MAX(HealthStatus) FROM SCHEMA("Warden", Stage, Target, service) '
                     "WHERE Stage = 'fleet' GROUP BY Target ORDER BY MAX() DESC LIMIT 10")
    assert any("MAX(TierStatus) FROM SCHEMA(\"Warden\", Stage, Target, Tier, service)" in q for q in queries)
    assert any(q.startswith("SELECT MIN(LicenseDaysLeft)") and "ORDER BY MIN() ASC" in q for q in queries)
    # no graph of a metric the functions no longer send
    text = json.dumps(overview)
    assert '"Healthy"' not in text and "CheckDuration" not in text and "CheckStatus" not in text


def test_every_group_has_a_drill_down_over_exactly_its_targets(dashboards: Any) -> None:
    text = "\n".join(t for t, _ in dashboards.values())
    for group in GROUPS:
        assert f"Group {group}: 125 target(s)" in text, group
    # each target is named in a query of its own group's section
    named = {t.name for t in STAGE.targets if f"'{t.name}'" in text}
    assert named == {t.name for t in STAGE.targets}
