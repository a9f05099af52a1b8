"""The stage's CloudWatch dashboards: an overview, `warden-<stage>`, and a drill-down per target group.

The overview leads with what needs attention: Metrics Insights query widgets over every target of
the stage, worst first (the highest health status, tiers not passing, the oldest backups, backup
failures and corruption, the fewest licence days left, the busiest engines), then the state of the
stage-wide alarms (fleet, function and state machine alarms) and the fleet's operations (function
errors and throttles, health runs, state machine executions), and an index of the groups.

The drill-down is one section per `Target.group`: its per-target alarms (instance and log alarms)
and one row of graphs per target (health, backups, engine gauges, instance and log graphs). Sections
stay on the overview while the whole fits CloudWatch's dashboard quotas (`WIDGETS_MAX` widgets,
`METRICS_MAX` metrics per dashboard, `ALARMS_PER_WIDGET` per alarm widget); past them each group
gets its own dashboard, `warden-<stage>-<group>` (a group too big for one: `-2`, `-3`, ...). Metric
names and dimensions: docs/metrics.md; every Warden metric carries `Stage`.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from infra.alarms import Alarms, AlarmSettings, health_period, warden_metric
from infra.instance_alarms import instance_widgets
from infra.log_monitoring import log_widgets
from warden import fleet_alarms
from warden.config.target import Engine, Target

WIDTH = 24  # the dashboard grid
PER_ROW = 3  # graphs per row in a target's section
HEIGHT = 6
QUERY_WIDTH = 8  # overview query widgets: three a row
WORST = 10  # series per worst-first query widget
_TREND_PERIOD = Duration.days(1)  # backups run about daily: one point a day reads as a trend
_HOUR = Duration.hours(1)
_EVENTS = Duration.minutes(5)

# CloudWatch's dashboard quotas (CloudWatch service quotas, "Dashboards"; alarm widget: 1-100 ARNs).
WIDGETS_MAX = 500
METRICS_MAX = 2500  # per dashboard, across its widgets (a query widget counts as the series it returns)
METRICS_PER_WIDGET_MAX = 500
ALARMS_PER_WIDGET = 100

# The overview's worst-first widgets: (title, aggregate, metric, schema, order, period, group by).
_T, _TIER = fleet_alarms.SCHEMA_TARGET, fleet_alarms.SCHEMA_TIER
ATTENTION: tuple[tuple[str, str, str, str, str, Duration, str], ...] = (
    ("Worst health (0 healthy, 1 degraded, 2 unhealthy)", "MAX", "HealthStatus", _T, "DESC", _EVENTS, "Target"),
    ("Tiers not passing (1 warn, 2 fail)", "MAX", "TierStatus", _TIER, "DESC", _EVENTS, "Target, Tier"),
    ("Oldest backups (h)", "MAX", "BackupAgeHours", _T, "DESC", _HOUR, "Target"),
    ("Backups failed", "SUM", "BackupFailure", _T, "DESC", _TREND_PERIOD, "Target"),
    ("Backups corrupt", "SUM", "BackupCorrupt", _T, "DESC", _TREND_PERIOD, "Target"),
    ("Fewest licence days left", "MIN", "LicenseDaysLeft", _T, "ASC", _TREND_PERIOD, "Target"),
    ("PostgreSQL connections used (%)", "MAX", "ConnectionsUsedPct", _T, "DESC", _EVENTS, "Target"),
    ("PostgreSQL long-running queries", "MAX", "LongQueries", _T, "DESC", _EVENTS, "Target"),
    ("PostgreSQL replication lag (s)", "MAX", "ReplicationLagSeconds", _T, "DESC", _EVENTS, "Target"),
    ("Neo4j oldest transaction (s)", "MAX", "LongestTransactionSeconds", _T, "DESC", _EVENTS, "Target"),
    ("Neo4j heap used (%)", "MAX", "HeapUsedPct", _T, "DESC", _EVENTS, "Target"),
    ("Longest backups (s)", "MAX", "BackupDuration", _T, "DESC", _TREND_PERIOD, "Target"),
    ("Largest stored backups (bytes)", "MAX", "StoredBytes", _T, "DESC", _TREND_PERIOD, "Target"),
)


QUERY_MAX = 2048  # a MetricDataQuery expression's length limit (what the console sends per widget)
_IN_LIST_MAX = 1500  # room for a group's `Target IN (...)` in a query under QUERY_MAX


def worst_query(stage: str, function: str, metric: str, schema: str = _T, order: str = "DESC",
                group_by: str = "Target", limit: int = WORST, targets_in: Sequence[str] = ()) -> str:
    """A Metrics Insights query: the `limit` worst series of `metric` in `stage` (and `targets_in`,
    when given), worst first."""
    return (f"SELECT {function}({metric}) FROM {schema} WHERE {fleet_alarms.where(stage, targets_in=targets_in)} "
            f"GROUP BY {group_by} ORDER BY {function}() {order} LIMIT {limit}")


def target_chunks(names: Sequence[str]) -> list[list[str]]:
    """`names` in runs whose quoted `IN (...)` list stays under `_IN_LIST_MAX` characters."""
    chunks: list[list[str]] = [[]]
    length = 0
    for name in names:
        size = len(name) + 4  # quotes, comma, space
        if chunks[-1] and length + size > _IN_LIST_MAX:
            chunks.append([])
            length = 0
        chunks[-1].append(name)
        length += size
    return chunks


Rows = list[list[cw.IWidget]]


class Dashboard(Construct):
    """The overview dashboard of a stage and its groups' drill-downs, built from the stage's
    `Alarms` (targets, settings, functions, state machines, alarms). Attributes: `dashboard` (the
    overview), `dashboards` {name: Dashboard}, `alarms`, `groups` {group: [dashboard name]}."""

    def __init__(self, scope: Construct, id: str, *, alarms: Alarms) -> None:
        super().__init__(scope, id)
        self.alarms = alarms
        stage = alarms.stage
        # By name where an alarm lives in a group stack: no nested-stack output per alarm.
        self._refs: dict[str, cw.IAlarm] = dict(zip(alarms.alarms, alarms.referable(self), strict=True))
        self._names = {alarm.node.path: name for name, alarm in alarms.alarms.items()}
        per_target = {self._names.get(a.node.path) for alarms_of in alarms.by_target.values() for a in alarms_of}
        stage_alarms = [ref for name, ref in self._refs.items() if name not in per_target]

        groups: dict[str, list[Target]] = {}
        for target in stage.targets:
            groups.setdefault(target.group, []).append(target)
        sections = {g: [self._target_rows(t, alarms.settings[t.name]) for t in ts] for g, ts in groups.items()}
        overview = [*self._attention_rows(), *_alarm_rows("Stage alarms (fleet, functions, state machines)",
                                                          stage_alarms), self._operations_row()]
        together = [*overview, *(row for g in groups for row in self._group_header(g, groups[g])),
                    *(row for g in groups for rows in sections[g] for row in rows)]
        self.dashboards: dict[str, cw.Dashboard] = {}
        self.groups: dict[str, list[str]] = {}
        name = f"warden-{stage.name}"
        header = self._header(len(stage.targets), {})
        self._counts: dict[int, int] = {}
        if self._fits([header, *together]):
            self.groups = {g: [name] for g in groups}
            self.dashboard = self._dashboard(name, [header, *together])
            return
        # Too big for one dashboard with a row per target: each group is a section of worst-first
        # query widgets over its targets (no row per target), on the overview while it fits, else
        # on its own dashboards.
        compact = {g: self._group_queries(g, ts) for g, ts in groups.items()}
        if self._fits([header, *overview, *(row for rows in compact.values() for row in rows)]):
            self.groups = {g: [name] for g in groups}
            self.dashboard = self._dashboard(name, [header, *overview, *(r for rows in compact.values() for r in rows)])
            return
        pages: dict[str, list[Rows]] = {}
        for group, rows in compact.items():
            parts: list[Rows] = [[]]
            for row in rows:
                if parts[-1] and not self._fits([*parts[-1], row]):
                    parts.append([])
                parts[-1].append(row)
            pages[group] = parts
            base = f"{name}-{group}"
            self.groups[group] = [base if k == 1 else f"{base}-{k}" for k in range(1, len(parts) + 1)]
        self.dashboard = self._dashboard(name, [self._header(len(stage.targets), self.groups), *overview])
        for group, parts in pages.items():
            for page, rows in zip(self.groups[group], parts, strict=True):
                self._dashboard(page, rows)

    def _group_queries(self, group: str, targets: Sequence[Target]) -> Rows:
        """A group's section without a row per target: its alarms, then the overview's worst-first
        widgets over its targets (one set per run of targets a query can name)."""
        stage = self.alarms.stage.name
        rows = self._group_header(group, targets)
        chunks = target_chunks([t.name for t in targets])
        for chunk in chunks:
            part = f" ({chunk[0]} … {chunk[-1]})" if len(chunks) > 1 else ""
            widgets: list[cw.IWidget] = [
                _query_widget(f"{group}{part}: {title}",
                              worst_query(stage, fn, metric, schema, order, group_by, targets_in=chunk),
                              period, self._attention_lines(metric))
                for title, fn, metric, schema, order, period, group_by in ATTENTION]
            per_row = WIDTH // QUERY_WIDTH
            rows += [widgets[i: i + per_row] for i in range(0, len(widgets), per_row)]
        return rows

    def _fits(self, rows: Rows) -> bool:
        return _fits(Stack.of(self), rows, self._counts)

    def _dashboard(self, name: str, rows: Rows) -> cw.Dashboard:
        dashboard = cw.Dashboard(self, "Dashboard" if not self.dashboards else f"Dashboard-{name}",
                                 dashboard_name=name, default_interval=Duration.days(7), widgets=rows)
        self.dashboards[name] = dashboard
        return dashboard

    def _header(self, targets: int, elsewhere: dict[str, list[str]]) -> list[cw.IWidget]:
        stage = self.alarms.stage.name
        text = (f"# Warden {stage}\nBackups, verification and health of {targets} target(s), worst first. "
                "Every alarm notifies the stage's SNS topic; a fleet alarm's notification names each "
                f"breaching target and check (`warden health --stage {stage}` too).")
        if elsewhere:
            text += "\n\nPer group: " + ", ".join(f"**{g}** ({', '.join(f'`{n}`' for n in names)})"
                                                  for g, names in sorted(elsewhere.items()))
        return [cw.TextWidget(markdown=text, width=WIDTH, height=3 if elsewhere else 2)]

    def _attention_rows(self) -> Rows:
        stage = self.alarms.stage.name
        widgets: list[cw.IWidget] = []
        for title, fn, metric, schema, order, period, group_by in ATTENTION:
            query = worst_query(stage, fn, metric, schema, order, group_by)
            widgets.append(_query_widget(title, query, period, self._attention_lines(metric)))
        per_row = WIDTH // QUERY_WIDTH
        return [widgets[i: i + per_row] for i in range(0, len(widgets), per_row)]

    def _attention_lines(self, metric: str) -> list[cw.HorizontalAnnotation] | None:
        """The thresholds of the fleet alarms on `metric` (one line per distinct threshold)."""
        values = sorted({spec.spec.threshold for spec in getattr(self.alarms, "fleet", {}).values()
                         if not spec.unreported and fleet_alarms.CONDITIONS[spec.condition].metric == metric})
        return [cw.HorizontalAnnotation(value=v, label=f"alarm at {v:g}") for v in values[:3]] or None

    def _group_header(self, group: str, targets: Sequence[Target]) -> Rows:
        alarms = [self._refs[self._names[a.node.path]] for t in targets for a in self.alarms.by_target.get(t.name, [])
                  if a.node.path in self._names]
        head: Rows = [[cw.TextWidget(markdown=f"# Group {group}: {len(targets)} target(s)", width=WIDTH, height=1)]]
        return head + _alarm_rows(f"{group}: instance and log alarms", alarms)

    def _target_rows(self, target: Target, settings: AlarmSettings) -> Rows:
        t = target.name
        stage = self.alarms.stage.name
        period = health_period(target)

        def metric(name: str, **kwargs: object) -> cw.Metric:
            return warden_metric(name, target=t, Stage=stage, **kwargs)  # type: ignore[arg-type]

        header = f"## {t} ({target.engine.value})" + (f" — {target.description}" if target.description else "")
        max_age = self.alarms.backup_max_age[t]
        common: list[cw.IWidget] = [
            _graph(f"{t}: health", [metric("HealthStatus", period=period,
                                           label="status (0 healthy, 1 degraded, 2 unhealthy)")],
                   left_y_axis=cw.YAxisProps(min=0, max=2, show_units=False)),
            _graph(f"{t}: backup age (h)", [metric("BackupAgeHours", period=_HOUR, label="newest backup")],
                   annotations=[cw.HorizontalAnnotation(value=max_age, label=f"alarm above {max_age:g} h")],
                   left_y_axis=cw.YAxisProps(min=0, show_units=False)),
            _graph(f"{t}: backups", [
                metric("BackupSuccess", statistic="Sum", period=_TREND_PERIOD, label="succeeded"),
                metric("BackupFailure", statistic="Sum", period=_TREND_PERIOD, label="failed"),
                metric("BackupVerified", statistic="Sum", period=_TREND_PERIOD, label="verified"),
                metric("BackupCorrupt", statistic="Sum", period=_TREND_PERIOD, label="corrupt"),
            ], view=cw.GraphWidgetView.BAR),
            _graph(f"{t}: backup size (bytes)", [metric("BackupSize", period=_TREND_PERIOD, label="size"),
                                                 metric("StoredBytes", period=_TREND_PERIOD, label="stored")],
                   left_y_axis=cw.YAxisProps(min=0)),
            _graph(f"{t}: backup duration (s)", [metric("BackupDuration", period=_TREND_PERIOD, label="duration")],
                   left_y_axis=cw.YAxisProps(min=0)),
        ]
        if target.engine is Engine.NEO4J:
            engine = [
                _graph(f"{t}: licence days left", [metric("LicenseDaysLeft", statistic="Minimum",
                                                          period=Duration.days(1), label="days left")],
                       annotations=[cw.HorizontalAnnotation(value=settings.license_days_left,
                                                            label=f"alarm below {settings.license_days_left} days")],
                       left_y_axis=cw.YAxisProps(min=0, show_units=False)),
                _graph(f"{t}: Neo4j transactions", [metric("ActiveTransactions", period=period,
                                                           label="open transactions")],
                       right=[metric("LongestTransactionSeconds", period=period, label="oldest (s)")],
                       right_annotations=[cw.HorizontalAnnotation(value=settings.neo4j_long_transaction_seconds,
                                                                  label="long-running above")],
                       left_y_axis=cw.YAxisProps(min=0, show_units=False)),
                _graph(f"{t}: Neo4j heap used (%)", [metric("HeapUsedPct", period=period, label="heap used")],
                       left_y_axis=cw.YAxisProps(min=0, max=100, show_units=False)),
            ]
        else:
            limit = settings.pg_connections_used_percent
            engine = [
                _graph(f"{t}: PostgreSQL connections used (%)", [metric("ConnectionsUsedPct", period=period,
                                                                        label="of max_connections")],
                       annotations=[cw.HorizontalAnnotation(value=limit, label=f"alarm above {limit:g}%")],
                       left_y_axis=cw.YAxisProps(min=0, max=100, show_units=False)),
                _graph(f"{t}: PostgreSQL long-running queries", [metric("LongQueries", period=period,
                                                                        label="long-running")],
                       left_y_axis=cw.YAxisProps(min=0, show_units=False)),
                _graph(f"{t}: PostgreSQL database size (bytes)", [metric("DatabaseSizeBytes", period=period,
                                                                         label="size")],
                       left_y_axis=cw.YAxisProps(min=0)),
            ]
        # Instance and log graphs when the target names instances or a log group.
        machine = instance_widgets(target, WIDTH // PER_ROW, HEIGHT) + log_widgets(target, WIDTH // PER_ROW, HEIGHT)
        widgets = common + engine + machine
        return [
            [cw.TextWidget(markdown=header, width=WIDTH, height=1)],
            *[widgets[i: i + PER_ROW] for i in range(0, len(widgets), PER_ROW)],
        ]

    def _operations_row(self) -> list[cw.IWidget]:
        functions = self.alarms.functions
        period = _EVENTS
        widgets: list[cw.IWidget] = [
            _graph("Functions: errors",
                   [fn.function.metric_errors(statistic="Sum", period=period, label=job)
                    for job, fn in functions.items()]),
            _graph("Functions: throttles",
                   [fn.function.metric_throttles(statistic="Sum", period=period, label=job)
                    for job, fn in functions.items()]),
            _graph("Health runs: targets checked",
                   [warden_metric("TargetsChecked", statistic="Sum", period=period, label="targets checked",
                                  Stage=self.alarms.stage.name)]),
        ]
        machines = self.alarms.state_machines
        if machines:
            widgets.append(_graph("State machines: executions failed / timed out", [
                metric
                for name, machine in machines.items()
                for metric in (machine.metric_failed(statistic="Sum", period=period, label=f"{name} failed"),
                               machine.metric_timed_out(statistic="Sum", period=period, label=f"{name} timed out"))
            ]))
        return widgets


def _query_widget(title: str, query: str, period: Duration,
                  annotations: list[cw.HorizontalAnnotation] | None) -> cw.GraphWidget:
    assert len(query) <= QUERY_MAX, f"{title}: query of {len(query)} characters"
    return cw.GraphWidget(
        title=title, width=QUERY_WIDTH, height=HEIGHT, legend_position=cw.LegendPosition.RIGHT,
        left=[cw.MathExpression(expression=query, using_metrics={}, period=period, label="")],
        left_y_axis=cw.YAxisProps(min=0, show_units=False), left_annotations=annotations)


def _alarm_rows(title: str, alarms: Sequence[cw.IAlarm]) -> Rows:
    """Alarm status widgets of at most `ALARMS_PER_WIDGET` alarms each (none for no alarms)."""
    chunks = [alarms[i: i + ALARMS_PER_WIDGET] for i in range(0, len(alarms), ALARMS_PER_WIDGET)]
    return [[cw.AlarmStatusWidget(
        title=title if len(chunks) == 1 else f"{title} ({k}/{len(chunks)})", alarms=list(chunk),
        sort_by=cw.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP, width=WIDTH,
        height=max(3, 2 + len(chunk) // 4))] for k, chunk in enumerate(chunks, start=1)]


def widget_metrics(stack: Stack, widget: cw.IWidget) -> int:
    """How many metrics a widget counts against the dashboard's quota: its metrics and expressions,
    a Metrics Insights query as the series it may return (its LIMIT)."""
    count = 0
    for props in (w.get("properties", {}) for w in stack.resolve(widget.to_json())):
        for row in props.get("metrics", []):
            expression = next((x.get("expression") for x in row if isinstance(x, dict) and "expression" in x), None)
            if isinstance(expression, str) and expression.lstrip().upper().startswith("SELECT"):
                count += int(expression.rsplit("LIMIT", 1)[1]) if "LIMIT" in expression else METRICS_PER_WIDGET_MAX
            else:
                count += 1
    return count


def _fits(stack: Stack, rows: Rows, counts: dict[int, int]) -> bool:
    """Whether `rows` fit one dashboard (`counts`: metrics per widget, by id, filled as measured)."""
    widgets = [w for row in rows for w in row]
    if len(widgets) > WIDGETS_MAX:
        return False
    for w in widgets:
        if id(w) not in counts:
            counts[id(w)] = widget_metrics(stack, w)
    return sum(counts[id(w)] for w in widgets) <= METRICS_MAX


def _graph(
    title: str,
    metrics: list[cw.IMetric],
    *,
    annotations: list[cw.HorizontalAnnotation] | None = None,
    left_y_axis: cw.YAxisProps | None = None,
    view: cw.GraphWidgetView | None = None,
    right: list[cw.IMetric] | None = None,
    right_annotations: list[cw.HorizontalAnnotation] | None = None,
) -> cw.GraphWidget:
    return cw.GraphWidget(
        title=title,
        left=metrics,
        left_annotations=annotations,
        left_y_axis=left_y_axis,
        view=view,
        right=right,
        right_annotations=right_annotations,
        right_y_axis=cw.YAxisProps(min=0, show_units=False) if right else None,
        width=WIDTH // PER_ROW,
        height=HEIGHT,
    )
