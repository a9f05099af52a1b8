"""The CloudWatch cost model of a stage (docs/cost.md): what a stage and each target cost a month at
list prices, from a synthesized template (alarms by kind, metric filters, dashboards) and from the
EMF lines of a real health run (distinct metric streams per target); and what the fleet runs cost in
Step Functions (`fleet_run_cost`: the health run, every 5 minutes, is the one that counts).

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
- Step Functions: a Standard workflow $0.025 per 1,000 state transitions; an Express workflow $1.00
  per million executions plus $0.00001667 per GB-second of its duration, its memory billed in 64 MB
  steps (a fleet run's plan and results are far below 64 MB). Not counted: the Lambda invocations
  (the same either way).
"""

from __future__ import annotations

import argparse
import json
import math
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


TRANSITION = 0.025 / 1000
EXPRESS_EXECUTION = 1.00 / 1_000_000
EXPRESS_GB_SECOND = 0.00001667
EXPRESS_MEMORY_GB = 64 / 1024
MONTH_MINUTES = 30 * 24 * 60
# A fleet run's own states (Plan, FanOut, Summarise); per item the Map iteration and each state on
# its ok path (Run, Ok; a windowed job also Delay, WaitForOffset). tests/infra checks the synthesized
# definitions agree.
RUN_STATES = 3
# Measured (docs/fleets.md, tests/perf/test_fleet_perf.py): one target's health takes 0.34 s; a run
# adds its cold starts and the plan / summary steps.
HEALTH_TARGET_S = 0.34
RUN_OVERHEAD_S = 5.0


def item_transitions(windowed: bool) -> int:
    return 1 + 2 + (2 if windowed else 0)


def definition_transitions(definition: Mapping[str, Any], items: int) -> int:
    """State transitions of one successful run of a Fleet definition over `items` targets: every
    top-level state once, and per item its iteration and each state on the path to its end."""
    states = definition["States"]
    processor = next(s["ItemProcessor"] for s in states.values() if s["Type"] == "Map")
    path, name = 0, processor["StartAt"]
    while name is not None:
        path += 1
        name = processor["States"][name].get("Next")
    return len(states) + items * (1 + path)


def runs_per_month(expression: str) -> float:
    """How often a schedule expression fires in 30 days: `rate(...)` exactly; a cron by its minute,
    hour and day fields (`*`, `*/n`, lists, ranges; a day of the week as 30/7 days)."""
    if expression.startswith("rate("):
        count, unit = expression[5:-1].split()
        minutes = {"minute": 1, "hour": 60, "day": 24 * 60}[unit.rstrip("s")]
        return MONTH_MINUTES / (int(count) * minutes)
    minute, hour, day, _, weekday = expression.removeprefix("cron(").removesuffix(")").split()[:5]
    days = 30.0 if day in ("*", "?") else _field_count(day, 31) * 30 / 31
    if weekday not in ("*", "?"):
        days = _field_count(weekday, 7) * 30 / 7
    return _field_count(minute, 60) * _field_count(hour, 24) * days


_WEEKDAYS = {day: str(i) for i, day in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}


def _field_count(field: str, span: int) -> float:
    """How many values of a cron field of `span` values fire."""
    count = 0.0
    for part in field.split(","):
        if part in ("*", "?"):
            count += span
        elif "/" in part:  # */n, a/n: every n-th from a
            start, step = part.split("/")
            count += math.ceil((span - (0 if start == "*" else int(start))) / int(step))
        elif "-" in part:  # a range: 1-5, MON-FRI
            low, high = (_WEEKDAYS.get(v, v) for v in part.split("-"))
            count += int(high) - int(low) + 1
        else:
            count += 1  # one value: a number or a name (SUN)
    return count


@dataclass(frozen=True)
class FleetRunCost:
    """One job's fleet runs in a month: a Standard workflow pays its state transitions, an Express
    one its executions and their duration."""

    express: bool
    targets: int
    runs: float  # a month
    transitions: int  # per run (what Standard bills)
    run_s: float  # duration of a run (what Express bills)

    @property
    def monthly(self) -> float:
        if self.express:
            return self.runs * (EXPRESS_EXECUTION + EXPRESS_MEMORY_GB * self.run_s * EXPRESS_GB_SECOND)
        return self.runs * self.transitions * TRANSITION

    @property
    def per_target(self) -> float:
        return self.monthly / max(self.targets, 1)


def fleet_run_cost(*, express: bool, targets: int, expression: str, max_concurrency: int,
                   windowed: bool = False, timeout_s: float = 300, run_s: float | None = None) -> FleetRunCost:
    """A job's fleet runs a month. `run_s` defaults to the health sizing of docs/fleets.md (0.34 s a
    target, `max_concurrency` at once, plus 5 s), never beyond the run's timeout."""
    if run_s is None:
        run_s = min(timeout_s, targets * HEALTH_TARGET_S / max_concurrency + RUN_OVERHEAD_S)
    return FleetRunCost(express, targets, runs_per_month(expression),
                        RUN_STATES + targets * item_transitions(windowed), run_s)


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
# test_cost_model.py measures them, backed up and verified): the health streams of one target, 5 each, plus
# ReplicationLagSeconds for a PostgreSQL primary with a replica (counted here: the dearer case). A failing
# tier adds a TierStatus only while it fails; CloudWatch bills a custom metric by the hours it is sent, so
# an hour's failure costs 1/730 of a metric-month and is left out.
MEASURED_HEALTH_STREAMS = {"postgres": 6, "neo4j": 5}


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
    print_fleet_runs(stage)
    return 0


def print_fleet_runs(stage: Any) -> None:
    """Each job's fleet runs in Step Functions, and the health run as Express and as Standard."""
    from infra.fleet import EXPRESS_JOBS
    from warden.config.fleet import FLEET_JOBS, fleet_expression, runs_in_fleet

    runs = {}
    for job in FLEET_JOBS:
        config = stage.fleet.job(job)
        targets = sum(1 for t in stage.targets if runs_in_fleet(t, job, config))
        runs[job] = fleet_run_cost(express=job in EXPRESS_JOBS, targets=targets,
                                   expression=fleet_expression(job, config), max_concurrency=config.max_concurrency,
                                   windowed=config.window is not None)
    total = sum(r.monthly for r in runs.values())
    health = runs["health"]
    standard = FleetRunCost(False, health.targets, health.runs, health.transitions, health.run_s)
    slowest = FleetRunCost(health.express, health.targets, health.runs, health.transitions, 300)
    print(f"fleet runs (Step Functions): ${total:.2f}/month, ${total / max(len(stage.targets), 1):.4f} per target; "
          f"health ({'Express' if health.express else 'Standard'}, {health.runs:.0f} runs of "
          f"{health.targets} targets, ~{health.run_s:.0f} s each): ${health.per_target:.4f} per target "
          f"(every run at its 300 s timeout: ${slowest.per_target:.4f}); as a Standard workflow "
          f"({health.transitions} transitions a run) ${standard.per_target:.2f} per target")


if __name__ == "__main__":
    raise SystemExit(main())
