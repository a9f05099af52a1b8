"""Log monitoring: for targets whose database log reaches CloudWatch Logs (`Target.logs`), metric
filters that count error lines, slow queries and authentication failures, and an alarm on each count.

Metrics: namespace `Warden/Logs/<target>`, names `ErrorLines`, `SlowQueries`, `AuthFailures` (Count,
1 per matching line, no default value: no matching line, no data). Text filter patterns cannot carry
a per-target dimension, hence a namespace per target. One count may be fed by several filters (one
pattern each); the patterns of one count never match the same line twice.

The patterns (`PATTERNS`) are tested against real log lines captured from the local PostgreSQL 18 and
Neo4j 5.26 Community (tests/integration/test_log_patterns.py) with `filter_matches`, a small evaluator
of the part of CloudWatch's filter-pattern syntax they use (moto's logs backend does not evaluate
`-term` exclusions or several quoted terms, and produces no metrics from metric filters).
docs/monitoring.md documents each pattern and what the local servers could not produce.

Alarms: `warden-<stage>-<t>-log-errors`, `-log-slow-queries`, `-log-auth-failures`: the count reaches
its threshold (`logs.errors`, `logs.slow_queries`, `logs.auth_failures`) in one `logs.period_minutes`
period; missing data is not breaching (no matching line was logged). None has a Warden remediation
action; they notify the stage's topic on ALARM and OK.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.alarms import Alarms
from infra.instance_alarms import add_target_alarm
from warden.config.monitoring import LogFormat, log_format_of
from warden.config.monitoring import LogMonitoring as LogConfig
from warden.config.target import Target

NAMESPACE_PREFIX = "Warden/Logs"


@dataclass(frozen=True)
class LogCount:
    """One count kept from a target's log: its metric, its alarm and the threshold field of `logs`."""

    metric: str
    alarm: str  # alarm name suffix
    threshold_field: str  # LogMonitoring field
    label: str


COUNTS = (
    LogCount("ErrorLines", "log-errors", "errors", "error lines"),
    LogCount("SlowQueries", "log-slow-queries", "slow_queries", "slow queries"),
    LogCount("AuthFailures", "log-auth-failures", "auth_failures", "authentication failures"),
)

# Per format and count, the filter patterns (each one metric filter). Why each term is there:
# docs/monitoring.md. PostgreSQL lines carry RDS's prefix `%t:%r:%u@%d:[%p]:`, so the severity
# follows `]:` directly ("...[8551]:ERROR:  division by zero").
PATTERNS: dict[LogFormat, dict[str, tuple[str, ...]]] = {
    "postgres": {
        "ErrorLines": (
            '"]:ERROR:"',
            '"]:PANIC:"',
            # FATAL, except the authentication failures counted apart.
            '"]:FATAL:" -"authentication failed for user" -"no pg_hba.conf entry" -"pg_hba.conf rejects connection"',
        ),
        "SlowQueries": (
            # log_min_duration_statement: "LOG:  duration: 250.8 ms  statement: ..." (simple protocol)
            # and "... ms  execute <unnamed>: ..." (extended protocol, parameters).
            '"]:LOG:" "duration:" "statement:"',
            '"]:LOG:" "duration:" "execute" -"statement:"',
        ),
        "AuthFailures": (
            '"]:FATAL:" "authentication failed for user"',
            '"]:FATAL:" "no pg_hba.conf entry"',
            '"]:FATAL:" "pg_hba.conf rejects connection"',
        ),
    },
    "neo4j": {
        # neo4j.log / debug.log: "2026-11-24 01:01:21.634+0000 ERROR [o.n.g.f.DatabaseManagementServiceFactory] ..."
        "ErrorLines": ('" ERROR ["',),
        # query.log (Enterprise only): "... INFO  id:12 - 1550 ms: 136 B - bolt-session ..."; in VERBOSE
        # mode the start of every query is logged too ("Query started:"), which is not a slow query.
        "SlowQueries": ('"INFO" " ms: " "-session" -"Query started:"',),
        # neo4j.log / debug.log, every edition: a Bolt login with a wrong user or password.
        "AuthFailures": ('"unauthorized due to authentication failure"',),
    },
}


def patterns_for(fmt: LogFormat) -> dict[str, tuple[str, ...]]:
    return PATTERNS[fmt]


# -- the evaluator ---------------------------------------------------------------------------------

class UnsupportedPattern(ValueError):
    """A filter pattern outside the subset `filter_matches` evaluates."""


_TERM = re.compile(r'\s*([?-]?)\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_]+))')


def parse_terms(pattern: str) -> list[tuple[str, str]]:
    """A text filter pattern as (operator, term) pairs; operator is "", "?" (OR) or "-" (exclude).

    The subset: terms of letters, digits and `_`, or any text in double quotes; each term optionally
    preceded by `?` or `-`. JSON (`{...}`), space-delimited (`[...]`) and regex (`%...%`) patterns,
    and `?` terms mixed with plain or `-` terms, are refused.
    """
    stripped = pattern.strip()
    if stripped[:1] in ("{", "[", "%"):
        raise UnsupportedPattern(f"only text patterns are evaluated, not {pattern!r}")
    terms: list[tuple[str, str]] = []
    position = 0
    while position < len(stripped):
        match = _TERM.match(stripped, position)
        if not match or match.end() == position:
            raise UnsupportedPattern(f"cannot read {pattern!r} at {stripped[position:]!r}")
        operator, quoted, bare = match.groups()
        # Inside quotes, a backslash escapes the next character (`\"` is a quote).
        terms.append((operator, re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare))
        position = match.end()
        while position < len(stripped) and stripped[position].isspace():
            position += 1
    if any(op == "?" for op, _ in terms) and any(op != "?" for op, _ in terms):
        raise UnsupportedPattern(f"?-terms mixed with other terms: {pattern!r}")
    return terms


def filter_matches(pattern: str, message: str) -> bool:
    """Whether CloudWatch Logs' text filter `pattern` matches a log event `message`.

    As documented for unstructured log events: matching is case sensitive and by substring ("ERROR"
    matches "ERRORCODE"); every plain term must occur, no `-` term may occur; with `?` terms, any one
    of them must occur; an empty pattern matches everything.
    """
    terms = parse_terms(pattern)
    if not terms:
        return True
    if terms[0][0] == "?":
        return any(term in message for _, term in terms)
    return all((term in message) != (op == "-") for op, term in terms)


def count_lines(fmt: LogFormat, metric: str, lines: list[str]) -> int:
    """How much `metric` of a `fmt` log grows for `lines`: matching filters per line, summed."""
    return sum(filter_matches(p, line) for line in lines for p in PATTERNS[fmt][metric])


# -- the construct ---------------------------------------------------------------------------------

def log_namespace(target: str) -> str:
    return f"{NAMESPACE_PREFIX}/{target}"


def log_metric(target: str, metric: str, period: Duration, label: str | None = None) -> cw.Metric:
    return cw.Metric(namespace=log_namespace(target), metric_name=metric, statistic="Sum", period=period,
                     label=label)


class LogMonitors(Construct):
    """Metric filters and alarms of every target of the stage with `logs`.

    Compose it after `Alarms` (its alarms join `alarms.alarms` / `alarms.by_target`). The log
    groups are not created here: RDS makes `/aws/rds/instance/<id>/postgresql` (cluster:
    `/aws/rds/cluster/<id>/postgresql`) when PostgreSQL log export is on, the CloudWatch agent the
    group of a self-hosted server; a metric filter on a group that does not exist fails the deploy.
    Attributes: `filters` {target: [MetricFilter]}, `alarms` {name: Alarm}.
    """

    def __init__(self, scope: Construct, id: str, *, alarms: Alarms,
                 targets: Sequence[Target] | None = None) -> None:
        super().__init__(scope, id)
        self._stage_alarms = alarms
        self.filters: dict[str, list[logs.MetricFilter]] = {}
        self.alarms: dict[str, cw.Alarm] = {}
        for target in alarms.stage.targets if targets is None else targets:  # one target per group stack
            if target.logs is not None:
                self._build(target, target.logs)

    def _build(self, target: Target, config: LogConfig) -> None:
        t = target.name
        fmt = log_format_of(target.engine.value, config)
        group = logs.LogGroup.from_log_group_name(self, f"{t}-group", config.log_group)
        period = Duration.minutes(config.period_minutes)
        for count in COUNTS:
            for index, pattern in enumerate(PATTERNS[fmt][count.metric]):
                metric_filter = logs.MetricFilter(
                    self, f"{t}-{count.metric}-{index}",
                    log_group=group,
                    filter_name=f"warden-{self._stage_alarms.stage.name}-{t}-{count.alarm}-{index}",
                    filter_pattern=logs.FilterPattern.literal(pattern),
                    metric_namespace=log_namespace(t),
                    metric_name=count.metric,
                    metric_value="1",
                    unit=cw.Unit.COUNT,
                )
                self.filters.setdefault(t, []).append(metric_filter)
            threshold = getattr(config, count.threshold_field)
            alarm = add_target_alarm(
                self, self._stage_alarms, t, count.alarm,
                metric=log_metric(t, count.metric, period),
                threshold=threshold,
                comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                # Missing = notBreaching: no matching line in the period means none to count.
                missing=cw.TreatMissingData.NOT_BREACHING,
                description=_description(t, fmt, count, threshold, config),
            )
            self.alarms[alarm.node.id] = alarm


def _description(t: str, fmt: LogFormat, count: LogCount, threshold: int, config: LogConfig) -> str:
    where = f"{t}'s {'PostgreSQL' if fmt == 'postgres' else 'Neo4j'} log ({config.log_group})"
    head = f"{where} had {threshold} or more {count.label} within {config.period_minutes} minutes. "
    advice = {
        ("postgres", "ErrorLines"): "Open the log group in Logs Insights and filter on ERROR / FATAL / PANIC: "
        "each line says which statement failed and why; many of one kind point at an application bug "
        "or a schema change.",
        ("postgres", "SlowQueries"): "Each line is a statement over log_min_duration_statement; find the "
        "heaviest in pg_stat_statements, EXPLAIN (ANALYZE) them, and add the missing index.",
        ("postgres", "AuthFailures"): "Failed logins: a client with an old password (after a secret "
        "rotation) or someone guessing. The lines name user, database and client address.",
        ("neo4j", "ErrorLines"): "Read the ERROR lines and the stack traces beneath them in neo4j.log / "
        "debug.log; then `warden health --target " + t + "`.",
        ("neo4j", "SlowQueries"): "Each query.log line is a query over db.logs.query.threshold (Neo4j "
        "Enterprise); PROFILE the heaviest and add the missing index or constraint.",
        ("neo4j", "AuthFailures"): "Failed Bolt logins: a client with an old password (after a secret "
        "rotation) or someone guessing; debug.log has the client address of each.",
    }[(fmt, count.metric)]
    return head + advice


def log_widgets(target: Target, width: int, height: int) -> list[cw.IWidget]:
    """One dashboard graph of the target's log counts (none without `logs`)."""
    if target.logs is None:
        return []
    period = Duration.minutes(target.logs.period_minutes)
    return [cw.GraphWidget(
        title=f"{target.name}: log lines per {target.logs.period_minutes} min",
        left=[log_metric(target.name, c.metric, period, label=c.label) for c in COUNTS],
        left_y_axis=cw.YAxisProps(min=0, show_units=False),
        view=cw.GraphWidgetView.BAR,
        width=width,
        height=height,
    )]
