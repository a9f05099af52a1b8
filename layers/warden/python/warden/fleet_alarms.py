"""Fleet alarms: one CloudWatch alarm per condition and stage over every target, on a Metrics
Insights query, instead of one alarm per condition and target (docs/cost.md, docs/metrics.md).

The stack (infra/alarms.py) builds each alarm from `CONDITIONS`; the remediate function, when one
goes into ALARM, asks `resolve` which targets breach: it reads the alarm's own query, threshold and
window (DescribeAlarms), fetches the query per target over that window (GetMetricData, grouped by
`Target`) and evaluates each target's M-of-N as CloudWatch does. The notification names each
breaching target and the check that fails; a remediation action then runs per target.

Alarm names: `warden-<stage>-fleet-<condition>`; when the targets of a condition differ in
threshold or window, one alarm per distinct setting, `warden-<stage>-fleet-<k>-<condition>`
(k = 2, 3, ...); a target that stops reporting a metric whose absence was an alarm (health,
backup age) is caught by `warden-<stage>-fleet-unreported-<condition>` (the count of reporting
targets below the number expected). Pure except `resolve`, which takes its CloudWatch client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from warden import names

FLEET = "fleet"
UNREPORTED = "unreported"
SCHEMA_TARGET = f'SCHEMA("{names.METRICS_NAMESPACE}", Stage, Target, service)'
SCHEMA_TIER = f'SCHEMA("{names.METRICS_NAMESPACE}", Stage, Target, Tier, service)'


@dataclass(frozen=True)
class Condition:
    """One alarm condition of today's per-target alarms, now evaluated over the fleet."""

    suffix: str  # the per-target alarm's suffix of old: remediation.ACTIONS keys on it
    metric: str
    function: str  # the Metrics Insights aggregate: MAX, MIN or SUM
    check: str  # the health check (or job) the notification names
    comparison: str  # CloudWatch ComparisonOperator
    missing: str  # TreatMissingData
    unreported: bool = False  # also a `fleet-unreported-<suffix>` alarm (missing data was breaching)
    engine: str | None = None  # only targets of this engine send the metric (None: every target)


GT, GE, LT = "GreaterThanThreshold", "GreaterThanOrEqualToThreshold", "LessThanThreshold"
CONDITIONS: dict[str, Condition] = {c.suffix: c for c in (
    Condition("unhealthy", "HealthStatus", "MAX", "health", GE, "notBreaching", unreported=True),
    Condition("backup-too-old", "BackupAgeHours", "MIN", "backup_freshness", GT, "notBreaching", unreported=True),
    Condition("backup-failed", "BackupFailure", "SUM", "backup", GE, "notBreaching"),
    Condition("backup-corrupt", "BackupCorrupt", "SUM", "verify", GE, "notBreaching"),
    Condition("backup-near-time-limit", "BackupDuration", "MAX", "backup", GT, "notBreaching"),
    Condition("backup-storage-over-budget", "StoredBytes", "MAX", "backup", GT, "notBreaching"),
    Condition("license-expiring", "LicenseDaysLeft", "MIN", "license", LT, "notBreaching", engine="neo4j"),
    Condition("neo4j-long-running-transactions", "LongestTransactionSeconds", "MAX", "transactions", GT, "ignore",
              engine="neo4j"),
    Condition("pg-connections-saturated", "ConnectionsUsedPct", "MAX", "connections", GT, "ignore",
              engine="postgres"),
    Condition("pg-long-running-queries", "LongQueries", "MAX", "long_queries", GE, "ignore", engine="postgres"),
)}


# CloudWatch accepts a Metrics Insights query of at most this many characters.
QUERY_LIMIT = 2048


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def where(stage: str, *, targets_in: Sequence[str] = (), targets_not_in: Sequence[str] = ()) -> str:
    clause = f"Stage = {_quote(stage)}"
    if targets_in:
        clause += f" AND Target IN ({', '.join(map(_quote, targets_in))})"
    if targets_not_in:
        clause += f" AND Target NOT IN ({', '.join(map(_quote, targets_not_in))})"
    return clause


def condition_query(condition: Condition, stage: str, *, targets_in: Sequence[str] = (),
                    targets_not_in: Sequence[str] = ()) -> str:
    """The multi-time-series query of a condition: one contributor per target, worst first."""
    fn = condition.function
    return (f"SELECT {fn}({condition.metric}) FROM {SCHEMA_TARGET} "
            f"WHERE {where(stage, targets_in=targets_in, targets_not_in=targets_not_in)} "
            f"GROUP BY Target ORDER BY {fn}() {'ASC' if condition.comparison == LT else 'DESC'} LIMIT 500")


def reporting_query(condition: Condition, stage: str, *, targets_not_in: Sequence[str] = ()) -> str:
    """How many datapoints of the condition's metric arrived per period: one per reporting target."""
    return (f"SELECT COUNT({condition.metric}) FROM {SCHEMA_TARGET} "
            f"WHERE {where(stage, targets_not_in=targets_not_in)}")


def alarm_name(stage: str, suffix: str, *, index: int = 1, unreported: bool = False) -> str:
    part = UNREPORTED if unreported else (str(index) if index > 1 else "")
    return f"{names.alarm_prefix(stage)}{FLEET}-" + (f"{part}-" if part else "") + suffix


@dataclass(frozen=True)
class FleetAlarm:
    """A fleet alarm recognised by name: its condition, and whether it counts unreporting targets."""

    name: str
    condition: Condition
    unreported: bool


_PART = re.compile(r"^(?:(\d+|" + UNREPORTED + r")-)?(.+)$")


def parse_name(name: str, stage: str) -> FleetAlarm | None:
    """The fleet alarm `name` is, or None (a per-target or foreign alarm)."""
    prefix = f"{names.alarm_prefix(stage)}{FLEET}-"
    if not name.startswith(prefix):
        return None
    match = _PART.match(name.removeprefix(prefix))
    if not match or match.group(2) not in CONDITIONS:
        return None
    return FleetAlarm(name=name, condition=CONDITIONS[match.group(2)], unreported=match.group(1) == UNREPORTED)


# -- evaluation --------------------------------------------------------------------------------------

def breaches(value: float, comparison: str, threshold: float) -> bool:
    return {GT: value > threshold, GE: value >= threshold, LT: value < threshold,
            "LessThanOrEqualToThreshold": value <= threshold}[comparison]


def evaluate(values: Sequence[float | None], *, comparison: str, threshold: float, datapoints: int,
             missing: str) -> bool:
    """Whether one target's last N period values (None: no data) put it in ALARM: at least
    `datapoints` of them breach; a missing one breaches only when `missing` is breaching."""
    count = sum(breaches(v, comparison, threshold) if v is not None else missing == "breaching" for v in values)
    return count >= datapoints


@dataclass(frozen=True)
class Breach:
    """A target a fleet alarm fires for, the check that fails and the values that made it."""

    target: str
    condition: str
    check: str
    values: tuple[float | None, ...]
    detail: str = ""

    def text(self) -> str:
        seen = ", ".join("-" if v is None else f"{v:g}" for v in self.values)
        tail = f" {self.detail}" if self.detail else ""
        return f"{self.target}: {self.check} ({self.condition}; last values {seen}){tail}"


def breaching_targets(alarm: FleetAlarm, series: Mapping[str, Sequence[float | None]], *, threshold: float,
                      datapoints: int, expected: Iterable[str] = ()) -> list[Breach]:
    """The targets `alarm` fires for, from each target's last N period values. For an `unreported`
    alarm, a target of `expected` breaches in a period it has no value for."""
    c = alarm.condition
    if alarm.unreported:
        found = []
        for target in sorted(expected):
            values = tuple(series.get(target, ()))
            periods = max((len(v) for v in series.values()), default=0) or datapoints
            padded = values + (None,) * (periods - len(values))
            if sum(v is None for v in padded) >= datapoints:
                found.append(Breach(target, c.suffix, c.check, padded, "reported no data"))
        return found
    return [Breach(target, c.suffix, c.check, tuple(values))
            for target, values in sorted(series.items())
            if evaluate(values, comparison=c.comparison, threshold=threshold, datapoints=datapoints,
                        missing=c.missing)]


def bucket(timestamps: Sequence[datetime], values: Sequence[float], *, start: datetime, period_s: int,
           periods: int) -> list[float | None]:
    """GetMetricData's points of one series into `periods` periods from `start` (None: none)."""
    out: list[float | None] = [None] * periods
    for ts, value in zip(timestamps, values, strict=False):
        index = int((ts - start).total_seconds() // period_s)
        if 0 <= index < periods:
            out[index] = value
    return out


def resolve(cloudwatch: Any, name: str, stage: str, *, expected: Iterable[str] = (),
            now: datetime | None = None) -> list[Breach]:
    """Which targets the fleet alarm `name` fires for now: its query per target over its window."""
    alarm = parse_name(name, stage)
    if alarm is None:
        return []
    described = cloudwatch.describe_alarms(AlarmNames=[name]).get("MetricAlarms", [])
    if not described:
        return []
    spec = described[0]
    query = next(m for m in spec["Metrics"] if m.get("ReturnData", True))
    period_s, periods = int(query["Period"]), int(spec["EvaluationPeriods"])
    expression = query["Expression"]
    if alarm.unreported:  # the same WHERE, per target
        expression = expression.replace("SELECT COUNT(", "SELECT MAX(", 1) + " GROUP BY Target"
    end = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = end - timedelta(seconds=period_s * periods)
    series: dict[str, list[float | None]] = {}
    kwargs: dict[str, Any] = {"MetricDataQueries": [{"Id": "q", "Expression": expression, "Period": period_s}],
                              "StartTime": start, "EndTime": end, "ScanBy": "TimestampAscending"}
    while True:
        page = cloudwatch.get_metric_data(**kwargs)
        for result in page.get("MetricDataResults", []):
            series[result["Label"]] = bucket(result.get("Timestamps", []), result.get("Values", []),
                                             start=start, period_s=period_s, periods=periods)
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    return breaching_targets(alarm, series, threshold=float(spec["Threshold"]),
                             datapoints=int(spec.get("DatapointsToAlarm") or periods), expected=expected)


def message(stage: str, name: str, found: Sequence[Breach]) -> tuple[str, str]:
    """Subject and body of the notification naming every breaching target and its check."""
    if not found:
        return (f"Warden {stage}: {name} in ALARM, no target breaches now"[:100],
                f"{name} went into ALARM, but no target breaches its condition any more.")
    who = ", ".join(b.target for b in found)
    subject = f"Warden {stage}: {found[0].condition} on {who}"[:100]
    body = "\n".join([f"{name} is in ALARM for {len(found)} target(s):", *(f"- {b.text()}" for b in found)])
    return subject, body
