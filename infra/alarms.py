"""CloudWatch alarms of one stage: per target (health, backups, licence, engine pressure), per Lambda
function (errors, throttles) and per state machine (failed, timed-out executions).

Every alarm notifies the stage's SNS topic on ALARM and on OK. Names are stable and readable,
`warden-<stage>-<subject>-<what>`: the subject is a target name, `fn-<job>` for a function or
`sfn-<name>` for a state machine (target alarms never end in errors / throttles / failed /
timed-out, so the three families cannot collide).

The Warden metrics are Powertools EMF in namespace "Warden" (names, units and dimension sets:
docs/metrics.md); Powertools adds `service=warden` to every metric, so each alarm's dimensions are
the metric's own plus `service` — CloudWatch matches the exact dimension set.

| alarm `warden-<stage>-...`            | metric (statistic)                  | fires | M of N, period | missing      |
|---------------------------------------|-------------------------------------|-------|----------------|--------------|
| `<t>-unhealthy`                       | Healthy (Minimum)                   | < 1   | 3 of 5, H      | breaching    |
| `<t>-backup-too-old`                  | BackupAgeHours (Minimum)            | > A   | 1 of 1, 1 h    | breaching    |
| `<t>-backup-failed`                   | BackupFailure (Sum)                 | >= 1  | 1 of 1, 5 min  | notBreaching |
| `<t>-backup-corrupt`                  | BackupCorrupt (Sum)                 | >= 1  | 1 of 1, 5 min  | notBreaching |
| `<t>-license-expiring` (Neo4j)        | LicenseDaysLeft (Minimum)           | < 30  | 1 of 1, 1 day  | notBreaching |
| `<t>-neo4j-long-running-transactions` | LongestTransactionSeconds (Max)     | > 60  | 2 of 3, H      | ignore       |
| `<t>-pg-connections-saturated`        | ConnectionsUsedPct (Max)            | > 90  | 2 of 3, H      | ignore       |
| `<t>-pg-long-running-queries`         | LongQueries (Max)                   | >= 1  | 2 of 3, H      | ignore       |
| `fn-<job>-errors`                     | AWS/Lambda Errors (Sum)             | >= 1  | 1 of 1, 5 min  | notBreaching |
| `fn-<job>-throttles`                  | AWS/Lambda Throttles (Sum)          | >= 1  | 1 of 1, 5 min  | notBreaching |
| `sfn-<name>-failed`                   | AWS/States ExecutionsFailed (Sum)   | >= 1  | 1 of 1, 5 min  | notBreaching |
| `sfn-<name>-timed-out`                | AWS/States ExecutionsTimedOut (Sum) | >= 1  | 1 of 1, 5 min  | notBreaching |

H is the target's health period: its health schedule's interval, at least 5 minutes. A is the
backup age limit, from the target's backup schedule (`backup_max_age_hours`: a daily cron → 26 h).
Why each missing-data choice: in a comment beside each alarm. Thresholds and windows per target:
`AlarmSettings`, read from the target's health and licence configuration by `settings_for`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.functions import WardenFunction
from infra.storage import Storage
from warden import fleet_alarms, names
from warden.backup import BACKUP_TIMEOUT_S
from warden.config.backup import RDS_SNAPSHOT
from warden.config.health import license_of, thresholds_of
from warden.config.stage import StageConfig
from warden.config.target import Engine, Target

NAMESPACE = names.METRICS_NAMESPACE  # POWERTOOLS_METRICS_NAMESPACE of every Warden function
SERVICE = names.SERVICE_NAME  # POWERTOOLS_SERVICE_NAME: Powertools adds it to every metric as dimension `service`

MIN_HEALTH_PERIOD = Duration.minutes(5)
EVENT_PERIOD = Duration.minutes(5)  # failures, corruption, Lambda and Step Functions events
BACKUP_AGE_PERIOD = Duration.hours(1)
LICENSE_PERIOD = Duration.days(1)
NEAR_TIME_LIMIT = 0.8  # backup-near-time-limit: a backup took more than this share of the backup function's timeout
_MAX_PERIOD_S = 86_400
_DAY_H = 24.0


@dataclass(frozen=True)
class AlarmSettings:
    """Thresholds and evaluation windows of one target's alarms (the defaults suit most targets).

    `backup_max_age_hours` None: derived from the backup schedule plus `backup_grace_hours`.
    """

    unhealthy_datapoints: int = 3
    unhealthy_periods: int = 5
    backup_grace_hours: float = 2.0
    backup_max_age_hours: float | None = None
    license_days_left: int = 30
    pg_connections_used_percent: float = 90.0
    # A transaction open longer than this is long-running (the health check's `long_tx_warn_s`).
    neo4j_long_transaction_seconds: float = 60.0
    # Engine pressure must last: this many breaching health periods out of `sustained_periods`.
    sustained_datapoints: int = 2
    sustained_periods: int = 3


def settings_for(target: Target) -> AlarmSettings:
    """A target's alarm settings from its configuration (warden.health_config), defaults otherwise:
    the licence alarm warns as many days ahead as the licence check (`license.warn_days`), and a
    Neo4j transaction is long-running past the health check's `health.long_tx_warn_s`, as
    PostgreSQL's `LongQueries` counts queries past `long_query_warn_s`."""
    return AlarmSettings(
        license_days_left=license_of(target).warn_days,
        neo4j_long_transaction_seconds=thresholds_of(target).long_tx_warn_s,
    )


# -- schedules -----------------------------------------------------------------------------------

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((\S+(?: \S+){5})\)$")
_RATE_HOURS = {"minute": 1 / 60, "hour": 1.0, "day": _DAY_H}
_WILDCARD = {"*", "?"}


def schedule_interval_hours(expression: str) -> float:
    """The longest gap between two runs of an EventBridge Scheduler expression, in hours.

    Kept simple, and never shorter than the real gap (an alarm built on it may be late, never
    false): `rate(N unit)` exactly; a cron that runs every day, exactly from its hour field (`2` →
    24, `*/6` → 6, `1,13` → 12, `*` → 1); a cron restricted by day of week → a week; by day of
    month or month → 31 days.
    """
    rate = _RATE.match(expression)
    if rate:
        return int(rate.group(1)) * _RATE_HOURS[rate.group(2).rstrip("s")]
    cron = _CRON.match(expression)
    if not cron:
        raise ValueError(f"not an EventBridge schedule expression: {expression!r}")
    _minutes, hours, day_of_month, month, day_of_week, _year = cron.group(1).split(" ")
    if day_of_month not in _WILDCARD or month not in _WILDCARD:
        return 31 * _DAY_H
    if day_of_week not in _WILDCARD:
        return 7 * _DAY_H
    run_hours = _cron_hours(hours)
    if not run_hours:
        return _DAY_H  # a form this does not read (e.g. with L or #): assume once a day
    ordered = sorted(run_hours)
    return float(max((b - a) % 24 or 24 for a, b in zip(ordered, ordered[1:] + ordered[:1], strict=True)))


def _cron_hours(field: str) -> set[int]:
    """The hours of day a cron hour field selects; empty when the field is not understood."""
    hours: set[int] = set()
    for part in field.split(","):
        match = re.fullmatch(r"(\*|\d+)(?:-(\d+))?(?:/(\d+))?", part)
        if not match:
            return set()
        start_text, end_text, step_text = match.groups()
        start = 0 if start_text == "*" else int(start_text)
        end = 23 if start_text == "*" or (step_text and not end_text) else int(end_text or start)
        hours.update(range(start, end + 1, int(step_text or 1)))
    return {h for h in hours if 0 <= h <= 23}


def backup_max_age_hours(target: Target, settings: AlarmSettings = AlarmSettings()) -> float:
    """How old the newest backup of `target` may be before `backup-too-old` fires: the backup
    schedule's longest gap plus `backup_grace_hours` (a daily cron → 26 h, `rate(6 hours)` → 8 h),
    unless `settings.backup_max_age_hours` says otherwise."""
    if settings.backup_max_age_hours is not None:
        return settings.backup_max_age_hours
    return schedule_interval_hours(target.schedules.backup) + settings.backup_grace_hours


def health_period(target: Target) -> Duration:
    """The period of alarms on health-run metrics: the health schedule's interval, at least 5
    minutes (a shorter one leaves several runs per period), at most a day. A period shorter than the
    interval would see empty periods between runs, which `unhealthy` counts as breaching."""
    seconds = math.ceil(schedule_interval_hours(target.schedules.health) * 3600 / 60) * 60
    return Duration.seconds(min(max(seconds, int(MIN_HEALTH_PERIOD.to_seconds())), _MAX_PERIOD_S))


# -- metrics -------------------------------------------------------------------------------------


def warden_metric(
    name: str,
    *,
    target: str | None = None,
    statistic: str = "Maximum",
    period: Duration = EVENT_PERIOD,
    label: str | None = None,
    **dimensions: str,
) -> cw.Metric:
    """A metric the Warden functions publish: namespace Warden, dimensions `Target` (when given),
    any others, and the `service` dimension Powertools adds to every metric."""
    dimensions_map = {**({"Target": target} if target else {}), **dimensions, "service": SERVICE}
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map=dimensions_map,
        statistic=statistic,
        period=period,
        label=label,
    )


def _period_text(period: Duration) -> str:
    seconds = int(period.to_seconds())
    if seconds % 86_400 == 0:
        return f"{seconds // 86_400}-day"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}-hour"
    return f"{seconds // 60}-minute"


def _hours_text(hours: float) -> str:
    return f"{hours:g} h"


@dataclass(frozen=True)
class FleetSpec:
    """What one condition asks of one target: threshold and M of N periods."""

    threshold: float
    period: Duration
    datapoints: int = 1
    periods: int = 1

    def __hash__(self) -> int:
        return hash((self.threshold, int(self.period.to_seconds()), self.datapoints, self.periods))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FleetSpec) and hash(self) == hash(other)


@dataclass(frozen=True)
class FleetAlarmSpec:
    """One fleet alarm as built: condition, threshold and window, the targets it covers, its query."""

    condition: str
    spec: FleetSpec
    targets: tuple[str, ...]
    unreported: bool
    query: str


_COMPARISON = {fleet_alarms.GT: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
               fleet_alarms.GE: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
               fleet_alarms.LT: cw.ComparisonOperator.LESS_THAN_THRESHOLD}
_MISSING = {"notBreaching": cw.TreatMissingData.NOT_BREACHING, "ignore": cw.TreatMissingData.IGNORE,
            "breaching": cw.TreatMissingData.BREACHING}
_COMPARISON_TEXT = {fleet_alarms.GT: ">", fleet_alarms.GE: ">=", fleet_alarms.LT: "<"}


# -- the construct -------------------------------------------------------------------------------


class Alarms(Construct):
    """Every alarm of one stage, with ALARM and OK actions on the stage's topic.

    Compose it after every function and state machine exists: it alarms on those it is given.
    `settings` by target name override what `settings_for` reads from each target's configuration.
    Attributes: `alarms` {alarm name: Alarm}, `by_target` {target: [Alarm]}, `settings` {target:
    AlarmSettings}, `backup_max_age` {target: hours}, `stage`, `functions`, `state_machines`, `topic`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        stage: StageConfig,
        storage: Storage,
        functions: Mapping[str, WardenFunction],
        state_machines: Mapping[str, sfn.IStateMachine] | None = None,
        settings: Mapping[str, AlarmSettings] | None = None,
        per_target: bool = True,
    ) -> None:
        super().__init__(scope, id)
        unknown = sorted(set(settings or {}) - {t.name for t in stage.targets})
        if unknown:
            raise ValueError(f"stage {stage.name!r}: alarm settings for unknown targets {unknown}")
        self.stage = stage
        self.topic = storage.topic
        self.functions = dict(functions)
        self.state_machines = dict(state_machines or {})
        self.settings = {t.name: (settings or {}).get(t.name) or settings_for(t) for t in stage.targets}
        self.backup_max_age = {t.name: backup_max_age_hours(t, self.settings[t.name]) for t in stage.targets}
        self.alarms: dict[str, cw.Alarm] = {}
        self.by_target: dict[str, list[cw.Alarm]] = {}
        self._action = cw_actions.SnsAction(storage.topic)
        self._scope: Construct = self  # where `_alarm` builds: a target's own scope in `build_target`

        if per_target:  # else each target's alarms are built by `build_target` (infra/targets.py)
            for target in stage.targets:
                self.build_target(self, target)
        self._build_fleet_alarms()  # one alarm per condition over the stage's targets, in this stack
        for job, fn in self.functions.items():
            self._build_function_alarms(job, fn)
        for name, machine in self.state_machines.items():
            self._build_state_machine_alarms(name, machine)

    def build_target(self, scope: Construct, target: Target) -> list[cw.Alarm]:
        """The per-target alarms of `target`, built in `scope` (its group stack's TargetResources)."""
        self._scope = scope
        try:
            # Every condition of Warden's own metrics is a fleet alarm (`_build_fleet_alarms`): only
            # instance and log alarms stay per target, and they add themselves here.
            self.by_target.setdefault(target.name, [])
        finally:
            self._scope = self
        return self.by_target[target.name]

    def referable(self, scope: Construct) -> list[cw.IAlarm]:
        """Every alarm, as `scope` may refer to it: alarms of another stack (a group stack) by name,
        so a dashboard in the stage's stack makes no nested-stack output per alarm."""
        stack = Stack.of(scope)
        return [alarm if Stack.of(alarm) is stack else cw.Alarm.from_alarm_name(scope, f"Ref-{name}", name)
                for name, alarm in self.alarms.items()]

    def _alarm(
        self,
        subject: str,
        what: str,
        *,
        metric: cw.IMetric,
        threshold: float,
        comparison: cw.ComparisonOperator,
        missing: cw.TreatMissingData,
        description: str,
        datapoints: int = 1,
        periods: int = 1,
    ) -> cw.Alarm:
        name = f"{names.alarm_prefix(self.stage.name)}{subject}-{what}"
        stat = metric.to_metric_config().metric_stat
        assert stat is not None, f"{name}: alarms here are on plain metrics, not math expressions"
        period = stat.period
        _check_evaluation_range(name, period, periods)
        alarm = cw.Alarm(
            self._scope,
            name,
            alarm_name=name,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=periods,
            datapoints_to_alarm=datapoints,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms[name] = alarm
        return alarm

    # -- per condition, over the fleet (warden.fleet_alarms)

    def target_specs(self, target: Target, settings: AlarmSettings) -> dict[str, FleetSpec]:
        """What each condition of today's per-target alarms asks of `target`: threshold and window."""
        period = health_period(target)
        sustained = (settings.sustained_datapoints, settings.sustained_periods)
        specs = {
            # Missing health or backup age is the `fleet-unreported-*` alarms' business.
            "unhealthy": FleetSpec(1, period, settings.unhealthy_datapoints, settings.unhealthy_periods),
            # Minimum: age only grows between backups, so it is the age at the end of the hour.
            "backup-too-old": FleetSpec(self.backup_max_age[target.name], _at_least(BACKUP_AGE_PERIOD, period)),
            "backup-failed": FleetSpec(1, EVENT_PERIOD),
            "backup-corrupt": FleetSpec(1, EVENT_PERIOD),
        }
        if target.backup.method != RDS_SNAPSHOT:  # an export must finish inside one backup invocation
            # An hour, not a day: Metrics Insights alarms evaluate the last three hours only.
            specs["backup-near-time-limit"] = FleetSpec(round(BACKUP_TIMEOUT_S * NEAR_TIME_LIMIT), BACKUP_AGE_PERIOD)
        if target.retention.storage_budget_gb is not None:
            specs["backup-storage-over-budget"] = FleetSpec(target.retention.storage_budget_gb * 1e9, BACKUP_AGE_PERIOD)
        if target.engine is Engine.NEO4J:
            # An hour after each daily licence check (Metrics Insights: three hours at most).
            specs["license-expiring"] = FleetSpec(settings.license_days_left, BACKUP_AGE_PERIOD)
            specs["neo4j-long-running-transactions"] = FleetSpec(settings.neo4j_long_transaction_seconds, period,
                                                                 *sustained)
        else:
            specs["pg-connections-saturated"] = FleetSpec(settings.pg_connections_used_percent, period, *sustained)
            specs["pg-long-running-queries"] = FleetSpec(1, period, *sustained)
        return specs

    def _build_fleet_alarms(self) -> None:
        """One Metrics Insights alarm per condition and distinct (threshold, window), covering every
        target that has the condition; plus `fleet-unreported-*` where missing data was an alarm."""
        stage = self.stage.name
        by_condition: dict[str, dict[FleetSpec, list[str]]] = {}
        for target in self.stage.targets:
            for suffix, spec in self.target_specs(target, self.settings[target.name]).items():
                by_condition.setdefault(suffix, {}).setdefault(spec, []).append(target.name)
        self.fleet: dict[str, FleetAlarmSpec] = {}
        for suffix, partitions in by_condition.items():
            condition = fleet_alarms.CONDITIONS[suffix]
            ordered = sorted(partitions.items(), key=lambda kv: (-len(kv[1]), kv[1]))
            covered = [t for _, ts in ordered for t in ts]
            # Targets that never send the metric (another engine's) need no exclusion.
            outside = sorted(t.name for t in self.stage.targets if t.name not in set(covered)
                             and (condition.engine is None or t.engine.value == condition.engine))
            index = 0
            for position, (spec, targets) in enumerate(ordered):
                others = sorted(set(covered) - set(targets)) + outside
                for query, members in _fleet_queries(condition, stage, targets, others, first=position == 0):
                    index += 1
                    self._fleet_alarm(fleet_alarms.alarm_name(stage, suffix, index=index), condition, spec, query,
                                      members)
            if condition.unreported:
                spec = ordered[0][0]
                query = fleet_alarms.reporting_query(condition, stage, targets_not_in=outside)
                self._fleet_alarm(fleet_alarms.alarm_name(stage, suffix, unreported=True), condition,
                                  FleetSpec(len(covered), spec.period, spec.datapoints, spec.periods), query,
                                  covered, unreported=True)

    def _fleet_alarm(self, name: str, condition: fleet_alarms.Condition, spec: FleetSpec, query: str,
                     targets: list[str], *, unreported: bool = False) -> cw.Alarm:
        _check_evaluation_range(name, spec.period, spec.periods)
        stage = self.stage.name
        shown = ", ".join(targets[:20]) + (f" and {len(targets) - 20} more" if len(targets) > 20 else "")
        if unreported:
            what = (f"fewer than {len(targets)} targets reported {condition.metric} in {spec.datapoints} of the "
                    f"last {spec.periods} {_period_text(spec.period)} periods: a target's health run stops "
                    f"reporting, or (backup age) it has no backup yet")
            comparison, missing = cw.ComparisonOperator.LESS_THAN_THRESHOLD, cw.TreatMissingData.BREACHING
        else:
            what = (f"{condition.function}({condition.metric}) {_COMPARISON_TEXT[condition.comparison]} "
                    f"{spec.threshold:g} in {spec.datapoints} of the last {spec.periods} "
                    f"{_period_text(spec.period)} periods, for any target")
            comparison = _COMPARISON[condition.comparison]
            missing = _MISSING[condition.missing]
        alarm = cw.Alarm(
            self, name, alarm_name=name,
            alarm_description=(
                f"Warden {stage} {condition.suffix} ({condition.check}): {what}. Targets: {shown}. The "
                f"remediate function names each breaching target and its failing check on the stage's topic "
                f"(and acts where remediation is enabled); `warden health --stage {stage}` shows them too. "
                f"Per target, what to do: docs/monitoring.md."
            )[:1024],
            metric=cw.MathExpression(expression=query, using_metrics={}, period=spec.period, label=condition.metric),
            threshold=spec.threshold,
            comparison_operator=comparison,
            evaluation_periods=spec.periods,
            datapoints_to_alarm=spec.datapoints,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms[name] = alarm
        self.fleet[name] = FleetAlarmSpec(condition.suffix, spec, tuple(targets), unreported, query)
        return alarm

    # -- per function and state machine

    def _build_function_alarms(self, job: str, fn: WardenFunction) -> None:
        subject = f"fn-{job.replace('_', '-')}"
        stage = self.stage.name
        # Missing = notBreaching on both: no invocations means no errors and no throttles.
        self._alarm(
            subject,
            "errors",
            metric=fn.function.metric_errors(statistic="Sum", period=EVENT_PERIOD),
            threshold=1,
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            missing=cw.TreatMissingData.NOT_BREACHING,
            description=(
                f"The Warden {stage} {job} function failed (error or timeout). Its log group has the "
                f"error and the target (search for level ERROR); the per-target alarms say which target "
                f"suffered. Scheduled runs are retried twice within an hour."
            ),
        )
        self._alarm(
            subject,
            "throttles",
            metric=fn.function.metric_throttles(statistic="Sum", period=EVENT_PERIOD),
            threshold=1,
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            missing=cw.TreatMissingData.NOT_BREACHING,
            description=(
                f"Invocations of the Warden {stage} {job} function were throttled: the account's "
                f"concurrency is exhausted or the function's reserved concurrency is too low. Check "
                f"ConcurrentExecutions in the account and the function's reserved concurrency; "
                f"scheduled runs retry for an hour, then are dropped."
            ),
        )

    def _build_state_machine_alarms(self, name: str, machine: sfn.IStateMachine) -> None:
        subject = f"sfn-{name.replace('_', '-')}"
        stage = self.stage.name
        advice = (
            "Open the execution in the Step Functions console: its events name the failed state and "
            "the cause. For Recovery, a failed execution has rolled back and production is untouched; "
            f"`warden recovery status --stage {stage}` shows the recovery record."
        )
        # Missing = notBreaching on both: no executions means none failed.
        self._alarm(
            subject,
            "failed",
            metric=machine.metric_failed(statistic="Sum", period=EVENT_PERIOD),
            threshold=1,
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            missing=cw.TreatMissingData.NOT_BREACHING,
            description=f"An execution of the Warden {stage} {name} state machine failed. {advice}",
        )
        self._alarm(
            subject,
            "timed-out",
            metric=machine.metric_timed_out(statistic="Sum", period=EVENT_PERIOD),
            threshold=1,
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            missing=cw.TreatMissingData.NOT_BREACHING,
            description=f"An execution of the Warden {stage} {name} state machine timed out. {advice}",
        )


def _fleet_queries(condition: fleet_alarms.Condition, stage: str, targets: list[str], others: list[str], *,
                   first: bool) -> list[tuple[str, list[str]]]:
    """The queries (and the targets each covers) of one partition of a condition, each within
    CloudWatch's query length: the whole stage but `others` (the first partition, when that is the
    shorter form), else the partition's targets by name, in as many alarms as their names need."""
    if first:
        query = fleet_alarms.condition_query(condition, stage, targets_not_in=others)
        if len(query) <= fleet_alarms.QUERY_LIMIT:
            return [(query, targets)]
    chunks: list[tuple[str, list[str]]] = []
    members: list[str] = []
    for name in targets:
        if members and len(fleet_alarms.condition_query(condition, stage, targets_in=[*members, name])) > \
                fleet_alarms.QUERY_LIMIT:
            chunks.append((fleet_alarms.condition_query(condition, stage, targets_in=members), members))
            members = []
        members.append(name)
    chunks.append((fleet_alarms.condition_query(condition, stage, targets_in=members), members))
    return chunks


def _at_least(period: Duration, floor: Duration) -> Duration:
    return period if period.to_seconds() >= floor.to_seconds() else floor


def _check_evaluation_range(name: str, period: Duration, periods: int) -> None:
    """CloudWatch refuses an alarm whose periods span more than a day (periods under an hour) or
    seven days (longer periods): fail at synth, with the alarm's name, not at deploy."""
    seconds = int(period.to_seconds())
    limit = 86_400 if seconds < 3600 else 7 * 86_400
    if seconds * periods > limit:
        raise ValueError(
            f"alarm {name}: {periods} periods of {seconds} s span more than CloudWatch's {limit} s; "
            f"use fewer evaluation periods or a more frequent schedule"
        )
