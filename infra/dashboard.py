"""The stage's CloudWatch dashboard, `warden-<stage>`: what an operator opens first.

Top: the state of every alarm of the stage. Then one section per target — health and check
durations, backup age (against its alarm's limit), backup size and duration trends, and the
engine's own gauges (Neo4j: licence days left, transactions, heap; PostgreSQL: connections,
cache hit ratio, long-running queries). Bottom: the functions' errors and throttles, the health
runs, and the state machines' executions when there are any. Metric names: docs/metrics.md.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from infra.alarms import NAMESPACE, SERVICE, Alarms, AlarmSettings, health_period, warden_metric
from infra.instance_alarms import instance_widgets
from infra.log_monitoring import log_widgets
from warden.config.target import Engine, Target

WIDTH = 24  # the dashboard grid
PER_ROW = 3  # graphs per row: a target's nine graphs make three rows (health, backups, engine)
HEIGHT = 6
_TREND_PERIOD = Duration.days(1)  # backups run about daily: one point a day reads as a trend


class Dashboard(Construct):
    """One dashboard per stage, built from the stage's `Alarms` (its targets, settings, functions,
    state machines and alarms). Attributes: `dashboard`, `alarms`."""

    def __init__(self, scope: Construct, id: str, *, alarms: Alarms) -> None:
        super().__init__(scope, id)
        self.alarms = alarms
        stage = alarms.stage
        rows: list[list[cw.IWidget]] = [
            [
                cw.TextWidget(
                    markdown=(
                        f"# Warden {stage.name}\nBackups, verification and health of "
                        f"{len(stage.targets)} target(s). Every alarm notifies the stage's SNS topic; "
                        "its description says what to do."
                    ),
                    width=WIDTH,
                    height=2,
                )
            ],
            [
                cw.AlarmStatusWidget(
                    title="Alarms",
                    alarms=alarms.referable(self),  # by name where an alarm lives in a group stack
                    sort_by=cw.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
                    width=WIDTH,
                    height=max(3, 2 + len(alarms.alarms) // 4),
                )
            ],
        ]
        for target in stage.targets:
            rows += self._target_rows(target, alarms.settings[target.name])
        rows.append(self._operations_row())
        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"warden-{stage.name}",
            default_interval=Duration.days(7),
            widgets=rows,
        )

    def _target_rows(self, target: Target, settings: AlarmSettings) -> list[list[cw.IWidget]]:
        t = target.name
        period = health_period(target)
        header = f"## {t} ({target.engine.value})" + (f" — {target.description}" if target.description else "")
        max_age = self.alarms.backup_max_age[t]
        common: list[cw.IWidget] = [
            _graph(
                f"{t}: health",
                [
                    warden_metric("Healthy", target=t, statistic="Minimum", period=period, label="healthy (1 = yes)"),
                    warden_metric("HealthStatus", target=t, period=period,
                                  label="status (0 healthy, 1 degraded, 2 unhealthy)"),
                ],
                left_y_axis=cw.YAxisProps(min=0, max=2, show_units=False),
            ),
            _graph(
                f"{t}: check duration (ms)",
                [_check_durations(t, period)],
            ),
            _graph(
                f"{t}: backup age (h)",
                [
                    warden_metric("BackupAgeHours", target=t, period=Duration.hours(1), label="newest backup"),
                    warden_metric("VerifiedBackupAgeHours", target=t, period=Duration.hours(1),
                                  label="newest verified backup"),
                ],
                annotations=[cw.HorizontalAnnotation(value=max_age, label=f"alarm above {max_age:g} h")],
                left_y_axis=cw.YAxisProps(min=0, show_units=False),
            ),
            _graph(
                f"{t}: backups",
                [
                    warden_metric("BackupSuccess", target=t, statistic="Sum", period=_TREND_PERIOD, label="succeeded"),
                    warden_metric("BackupFailure", target=t, statistic="Sum", period=_TREND_PERIOD, label="failed"),
                    warden_metric("BackupVerified", target=t, statistic="Sum", period=_TREND_PERIOD, label="verified"),
                    warden_metric("BackupCorrupt", target=t, statistic="Sum", period=_TREND_PERIOD, label="corrupt"),
                ],
                view=cw.GraphWidgetView.BAR,
            ),
            _graph(
                f"{t}: backup size (bytes)",
                [warden_metric("BackupSize", target=t, period=_TREND_PERIOD, label="size")],
                left_y_axis=cw.YAxisProps(min=0),
            ),
            _graph(
                f"{t}: backup duration (s)",
                [warden_metric("BackupDuration", target=t, period=_TREND_PERIOD, label="duration")],
                left_y_axis=cw.YAxisProps(min=0),
            ),
        ]
        if target.engine is Engine.NEO4J:
            engine = self._neo4j_widgets(t, settings, period)
        else:
            engine = self._postgres_widgets(t, settings, period)
        # Instance and log graphs when the target names instances or a log group.
        machine = instance_widgets(target, WIDTH // PER_ROW, HEIGHT) + log_widgets(target, WIDTH // PER_ROW, HEIGHT)
        widgets = common + engine + machine
        return [
            [cw.TextWidget(markdown=header, width=WIDTH, height=1)],
            *[widgets[i : i + PER_ROW] for i in range(0, len(widgets), PER_ROW)],
        ]

    @staticmethod
    def _neo4j_widgets(t: str, settings: AlarmSettings, period: Duration) -> list[cw.IWidget]:
        return [
            _graph(
                f"{t}: licence days left",
                [warden_metric("LicenseDaysLeft", target=t, statistic="Minimum", period=Duration.days(1),
                               label="days left")],
                annotations=[cw.HorizontalAnnotation(value=settings.license_days_left,
                                                     label=f"alarm below {settings.license_days_left} days")],
                left_y_axis=cw.YAxisProps(min=0, show_units=False),
            ),
            _graph(
                f"{t}: Neo4j transactions",
                [
                    warden_metric("ActiveTransactions", target=t, period=period, label="open transactions"),
                ],
                right=[warden_metric("LongestTransactionSeconds", target=t, period=period, label="oldest (s)")],
                right_annotations=[cw.HorizontalAnnotation(value=settings.neo4j_long_transaction_seconds,
                                                           label="long-running above")],
                left_y_axis=cw.YAxisProps(min=0, show_units=False),
            ),
            _graph(
                f"{t}: Neo4j heap used (%)",
                [warden_metric("HeapUsedPct", target=t, period=period, label="heap used")],
                left_y_axis=cw.YAxisProps(min=0, max=100, show_units=False),
            ),
        ]

    @staticmethod
    def _postgres_widgets(t: str, settings: AlarmSettings, period: Duration) -> list[cw.IWidget]:
        limit = settings.pg_connections_used_percent
        return [
            _graph(
                f"{t}: PostgreSQL connections used (%)",
                [warden_metric("ConnectionsUsedPct", target=t, period=period, label="of max_connections")],
                annotations=[cw.HorizontalAnnotation(value=limit, label=f"alarm above {limit:g}%")],
                left_y_axis=cw.YAxisProps(min=0, max=100, show_units=False),
            ),
            _graph(
                f"{t}: PostgreSQL cache hit ratio",
                [warden_metric("CacheHitRatio", target=t, statistic="Minimum", period=period, label="hits / reads")],
                left_y_axis=cw.YAxisProps(max=1, show_units=False),
            ),
            _graph(
                f"{t}: PostgreSQL long-running queries",
                [warden_metric("LongQueries", target=t, period=period, label="long-running")],
                left_y_axis=cw.YAxisProps(min=0, show_units=False),
            ),
        ]

    def _operations_row(self) -> list[cw.IWidget]:
        functions = self.alarms.functions
        period = Duration.minutes(5)
        widgets: list[cw.IWidget] = [
            _graph(
                "Functions: errors",
                [fn.function.metric_errors(statistic="Sum", period=period, label=job) for job, fn in functions.items()],
            ),
            _graph(
                "Functions: throttles",
                [
                    fn.function.metric_throttles(statistic="Sum", period=period, label=job)
                    for job, fn in functions.items()
                ],
            ),
            _graph(
                "Health runs: targets checked",
                [warden_metric("TargetsChecked", statistic="Sum", period=period, label="targets checked")],
            ),
        ]
        machines = self.alarms.state_machines
        if machines:
            widgets.append(
                _graph(
                    "State machines: executions failed / timed out",
                    [
                        metric
                        for name, machine in machines.items()
                        for metric in (
                            machine.metric_failed(statistic="Sum", period=period, label=f"{name} failed"),
                            machine.metric_timed_out(statistic="Sum", period=period, label=f"{name} timed out"),
                        )
                    ],
                )
            )
        return widgets


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


def _check_durations(target: str, period: Duration) -> cw.MathExpression:
    """CheckDuration of every check of `target` (the checks grow with the health tiers)."""
    seconds = int(period.to_seconds())
    return cw.MathExpression(
        expression=(
            f"SEARCH('{{{NAMESPACE},Check,Target,service}} MetricName=\"CheckDuration\" "
            f"Target=\"{target}\" service=\"{SERVICE}\"', 'Maximum', {seconds})"
        ),
        using_metrics={},
        label="",
        period=period,
    )
