"""The CloudWatch cost model of a stage (docs/cost.md): what a stage and each target cost a month at
list prices, from a synthesized template (alarms by kind, metric filters, dashboards) and from the
EMF lines of a real health run (distinct metric streams per target).

    python -m infra.cost --stage prod [--targets 500] [--emf health-run.jsonl]

Prices (us-east-1 list prices, the first tier; what is counted):
- a custom metric stream (namespace, name, dimension values): $0.30 a month, prorated by the hour
  and metered only in hours it is sent: a health-run metric (every 5 min) is a full month, a
  backup / verify / licence metric (once a day) 1/24 of one;
- a standard metric alarm: $0.10 a month per metric it watches;
- a Metrics Insights query alarm: $0.10 a month per metric its query analyzes, i.e. per target it
  covers (counted so: the cheapest reading of "alarms over many targets" is not assumed);
- a dashboard: $3.00 a month (first 3 free, not deducted); log metric filters are free, their
  metrics are custom metrics. Not counted: PutMetricData/EMF log ingestion (the health log lines
  are Logs' $0.50/GB), GetMetricData of the remediate function (only on ALARM), SNS.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

METRIC_MONTH = 0.30
ALARM_METRIC_MONTH = 0.10
DASHBOARD_MONTH = 3.00
BUDGET_PER_TARGET = 3.00
DAILY = 1 / 24  # a metric sent once a day is metered one hour in 24

# Per-target metrics sent once a day or per backup (functions/backup, verify, license_check).
DAILY_STREAMS = {"neo4j": ("BackupSuccess", "BackupDuration", "BackupSize", "StoredBytes", "BackupVerified",
                           "LicenseDaysLeft"),
                 "postgres": ("BackupSuccess", "BackupDuration", "BackupSize", "StoredBytes", "BackupVerified")}


def emf_streams(lines: Iterable[str]) -> dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]]:
    """Distinct metric streams per target in EMF lines: (metric name, dimension values)."""
    by_target: dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]] = {}
    for line in lines:
        if '"_aws"' not in line:
            continue
        record = json.loads(line)
        for block in record["_aws"]["CloudWatchMetrics"]:
            for dims in block["Dimensions"]:
                key = tuple(sorted((d, str(record[d])) for d in dims))
                target = record.get("Target", "")
                for metric in block["Metrics"]:
                    by_target.setdefault(target, set()).add((metric["Name"], key))
    return by_target


@dataclass(frozen=True)
class TemplateCounts:
    metric_alarms: int  # standard alarms on one metric (per function, instance, log)
    insights_alarms: int  # Metrics Insights query alarms
    composite_alarms: int
    metric_filters: int
    dashboards: int


def count_template(template: Mapping[str, Any]) -> TemplateCounts:
    """Alarms by kind, metric filters and dashboards of one synthesized template."""
    kinds = [r for r in template.get("Resources", {}).values()]
    alarms = [r["Properties"] for r in kinds if r["Type"] == "AWS::CloudWatch::Alarm"]
    insights = sum(1 for a in alarms if any(str(m.get("Expression", "")).lstrip().upper().startswith("SELECT")
                                            for m in a.get("Metrics", [])))
    return TemplateCounts(
        metric_alarms=len(alarms) - insights,
        insights_alarms=insights,
        composite_alarms=sum(1 for r in kinds if r["Type"] == "AWS::CloudWatch::CompositeAlarm"),
        metric_filters=sum(1 for r in kinds if r["Type"] == "AWS::Logs::MetricFilter"),
        dashboards=sum(1 for r in kinds if r["Type"] == "AWS::CloudWatch::Dashboard"),
    )


@dataclass(frozen=True)
class TargetCost:
    engine: str
    health_streams: int  # full-month streams from the health run
    daily_streams: int
    insights_alarm_metrics: int  # fleet alarms covering the target (one metric analyzed each)
    per_target_alarms: int  # instance / log alarms of the target

    @property
    def monthly(self) -> float:
        return round(self.health_streams * METRIC_MONTH + self.daily_streams * METRIC_MONTH * DAILY
                     + (self.insights_alarm_metrics + self.per_target_alarms) * ALARM_METRIC_MONTH, 2)


def target_cost(engine: str, health_streams: int, insights_alarm_metrics: int,
                per_target_alarms: int = 0) -> TargetCost:
    return TargetCost(engine, health_streams, len(DAILY_STREAMS[engine]), insights_alarm_metrics, per_target_alarms)


def stage_cost(targets: Iterable[TargetCost], counts: TemplateCounts, stage_streams: int = 8) -> float:
    """A stage's month: its targets, the stage-wide alarms (functions, state machines, counted in
    the template as standard alarms minus the per-target ones), its dashboards and the stage-wide
    metrics (TargetsChecked, LicensesChecked, the prune / maintenance / report counts)."""
    targets = list(targets)
    per_target = sum(t.per_target_alarms for t in targets)
    shared = max(counts.metric_alarms - per_target, 0) * ALARM_METRIC_MONTH
    return round(sum(t.monthly for t in targets) + shared + counts.dashboards * DASHBOARD_MONTH
                 + stage_streams * METRIC_MONTH, 2)


# Measured from a real health run against the local PostgreSQL 18 and Neo4j 5.26 (tests/integration/
# test_cost_model.py measures them, backed up and verified): the health streams of one target. A PostgreSQL replica adds
# ReplicationLagSeconds; a failing tier adds a TierStatus while it fails.
MEASURED_HEALTH_STREAMS = {"postgres": 7, "neo4j": 5}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.cost", description=__doc__.split("\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--targets", type=int, default=None, help="model this many targets (half each engine)")
    parser.add_argument("--emf", help="EMF lines of a health run (one JSON object a line)")
    args = parser.parse_args(argv)
    from aws_cdk import App, Stack
    from aws_cdk import aws_sns as sns

    from infra.alarms import Alarms
    from infra.config import load_stages, read_cdk_json_context

    stage = next(s for s in load_stages(read_cdk_json_context()) if s.name == args.stage)
    if args.targets:
        from warden.config.target import Target
        stage = stage.model_copy(update={"targets": [
            Target(name=f"t{i:03d}", engine=("postgres", "neo4j")[i % 2], secret_name=f"warden/{stage.name}/t{i:03d}")
            for i in range(args.targets)]})
    streams = dict(MEASURED_HEALTH_STREAMS)
    if args.emf:
        with open(args.emf) as f:
            measured = emf_streams(f)
        for engine in streams:
            found = [len(v) for k, v in measured.items() if k and engine[:3] in k]
            streams[engine] = max(found, default=streams[engine])
    app = App()
    stack = Stack(app, "CostModel")
    alarms = Alarms(stack, "Alarms", stage=stage, storage=type("S", (), {"topic": sns.Topic(stack, "T")})(),
                    functions={})
    from aws_cdk.assertions import Template
    counts = count_template(Template.from_stack(stack).to_json())
    covering: dict[str, int] = {}
    for spec in alarms.fleet.values():
        for t in spec.targets:
            covering[t] = covering.get(t, 0) + 1
    costs = [target_cost(t.engine.value, streams[t.engine.value], covering.get(t.name, 0)) for t in stage.targets]
    for engine in ("postgres", "neo4j"):
        one = next((c for c in costs if c.engine == engine), None)
        if one:
            print(f"{engine:9} per target: ${one.monthly:.2f}/month ({one.health_streams} health streams, "
                  f"{one.daily_streams} daily, {one.insights_alarm_metrics} fleet-alarm metrics; budget "
                  f"${BUDGET_PER_TARGET:.2f})")
    print(f"stage {stage.name}: {len(costs)} targets, {counts.insights_alarms} Metrics Insights alarms, "
          f"{counts.metric_alarms} standard alarms, {counts.metric_filters} metric filters: "
          f"${stage_cost(costs, counts) + 13 * 2 * ALARM_METRIC_MONTH:.2f}/month "
          f"(incl. 13 functions x 2 alarms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
