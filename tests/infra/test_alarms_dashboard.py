"""Alarms and the dashboard of a stage: each alarm watches the exact metric the functions publish
(namespace, name, dimensions including Powertools' `service`), with a deliberate threshold, window
and missing-data rule, and notifies the stage's topic on ALARM and OK; the dashboard shows every
target's health, backups and engine gauges."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.assertions import Match, Template
from infra_helpers import Synthesized, logical_id, resources

from infra.alarms import (
    NAMESPACE,
    SERVICE,
    Alarms,
    AlarmSettings,
    backup_max_age_hours,
    health_period,
    schedule_interval_hours,
    settings_for,
)
from infra.config import read_cdk_json_context
from infra.storage import Storage
from warden.config.health import HealthThresholds, LicenseConfig
from warden.config.stage import StageConfig
from warden.config.target import Schedules, Target

pytestmark = pytest.mark.infra

ALARM = "AWS::CloudWatch::Alarm"


def target_alarm(
    metric: str,
    target: str,
    statistic: str,
    threshold: float,
    comparison: str,
    period: int,
    periods: int,
    datapoints: int,
    missing: str,
) -> dict[str, Any]:
    return {
        "Namespace": "Warden",
        "MetricName": metric,
        "Dimensions": {"Target": target, "service": "warden"},
        "Statistic": statistic,
        "Threshold": threshold,
        "ComparisonOperator": comparison,
        "Period": period,
        "EvaluationPeriods": periods,
        "DatapointsToAlarm": datapoints,
        "TreatMissingData": missing,
    }


LT, GT, GE = "LessThanThreshold", "GreaterThanThreshold", "GreaterThanOrEqualToThreshold"

# The dev stage of cdk.json: graph-main (Neo4j) and orders-pg (PostgreSQL), default schedules
# (health every 5 minutes, daily backup at 02:00).
DEV_TARGET_ALARMS = {
    "warden-dev-graph-main-unhealthy": target_alarm("Healthy", "graph-main", "Minimum", 1, LT, 300, 5, 3, "breaching"),
    "warden-dev-graph-main-backup-too-old": target_alarm(
        "BackupAgeHours", "graph-main", "Minimum", 26, GT, 3600, 1, 1, "breaching"
    ),
    "warden-dev-graph-main-backup-failed": target_alarm(
        "BackupFailure", "graph-main", "Sum", 1, GE, 300, 1, 1, "notBreaching"
    ),
    "warden-dev-graph-main-backup-corrupt": target_alarm(
        "BackupCorrupt", "graph-main", "Sum", 1, GE, 300, 1, 1, "notBreaching"
    ),
    "warden-dev-graph-main-backup-near-time-limit": target_alarm(
        "BackupDuration", "graph-main", "Maximum", 720, GT, 86400, 1, 1, "notBreaching"
    ),
    "warden-dev-graph-main-license-expiring": target_alarm(
        "LicenseDaysLeft", "graph-main", "Minimum", 30, LT, 86400, 1, 1, "notBreaching"
    ),
    "warden-dev-graph-main-neo4j-long-running-transactions": target_alarm(
        "LongestTransactionSeconds", "graph-main", "Maximum", 60, GT, 300, 3, 2, "ignore"
    ),
    "warden-dev-orders-pg-unhealthy": target_alarm("Healthy", "orders-pg", "Minimum", 1, LT, 300, 5, 3, "breaching"),
    "warden-dev-orders-pg-backup-too-old": target_alarm(
        "BackupAgeHours", "orders-pg", "Minimum", 26, GT, 3600, 1, 1, "breaching"
    ),
    "warden-dev-orders-pg-backup-failed": target_alarm(
        "BackupFailure", "orders-pg", "Sum", 1, GE, 300, 1, 1, "notBreaching"
    ),
    "warden-dev-orders-pg-backup-corrupt": target_alarm(
        "BackupCorrupt", "orders-pg", "Sum", 1, GE, 300, 1, 1, "notBreaching"
    ),
    "warden-dev-orders-pg-backup-near-time-limit": target_alarm(
        "BackupDuration", "orders-pg", "Maximum", 720, GT, 86400, 1, 1, "notBreaching"
    ),
    "warden-dev-orders-pg-pg-connections-saturated": target_alarm(
        "ConnectionsUsedPct", "orders-pg", "Maximum", 90, GT, 300, 3, 2, "ignore"
    ),
    "warden-dev-orders-pg-pg-long-running-queries": target_alarm(
        "LongQueries", "orders-pg", "Maximum", 1, GE, 300, 3, 2, "ignore"
    ),
}

COMMON_WIDGETS = ["health", "check duration (ms)", "backup age (h)", "backups", "backup size (bytes)",
                  "backup duration (s)"]
NEO4J_WIDGETS = ["licence days left", "Neo4j transactions", "Neo4j heap used (%)"]
POSTGRES_WIDGETS = ["PostgreSQL connections used (%)", "PostgreSQL cache hit ratio", "PostgreSQL long-running queries"]


def alarms_by_name(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = Template.from_json(template).find_resources(ALARM)
    by_name = {r["Properties"]["AlarmName"]: r["Properties"] for r in found.values()}
    assert len(by_name) == len(found), "alarm names must be unique"
    return by_name


def observed(props: dict[str, Any]) -> dict[str, Any]:
    """An alarm's metric and evaluation, with dimensions as a mapping (CloudWatch ignores their order)."""
    keys = ("Namespace", "MetricName", "Statistic", "Threshold", "ComparisonOperator", "Period",
            "EvaluationPeriods", "DatapointsToAlarm", "TreatMissingData")
    return {
        **{k: props.get(k) for k in keys},
        "Dimensions": {d["Name"]: d["Value"] for d in props.get("Dimensions", [])},
    }


@pytest.fixture(scope="module")
def dev_alarms(dev: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return alarms_by_name(dev)


@pytest.fixture(scope="module")
def dev_stack(synthesized: Synthesized) -> Any:
    return synthesized.stacks["dev"]


# -- the metric contract -----------------------------------------------------------------------


def test_alarms_use_the_namespace_and_service_dimension_the_functions_publish_with(dev: dict[str, Any]) -> None:
    # Powertools adds `service` (POWERTOOLS_SERVICE_NAME) to every metric: alarms must carry the same.
    assert (NAMESPACE, SERVICE) == ("Warden", "warden")
    functions = resources(dev, "AWS::Lambda::Function")
    env = [f["Properties"]["Environment"]["Variables"] for f in functions.values()]
    warden_env = [e for e in env if "WARDEN_FUNCTION" in e]
    assert len(warden_env) >= 3
    for variables in warden_env:
        assert variables["POWERTOOLS_SERVICE_NAME"] == SERVICE
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == NAMESPACE


# -- per-target alarms -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DEV_TARGET_ALARMS))
def test_target_alarm_watches_its_metric_with_its_threshold_window_and_missing_data_rule(
    dev_alarms: dict[str, dict[str, Any]], name: str
) -> None:
    assert name in dev_alarms, f"no alarm {name}; have {sorted(dev_alarms)}"
    assert observed(dev_alarms[name]) == DEV_TARGET_ALARMS[name]


def test_each_target_has_exactly_the_alarms_of_its_engine(dev_alarms: dict[str, dict[str, Any]]) -> None:
    target_alarms = {n for n in dev_alarms if n.startswith(("warden-dev-graph-main-", "warden-dev-orders-pg-"))}
    assert target_alarms == set(DEV_TARGET_ALARMS)
    # no licence alarm for PostgreSQL, no PostgreSQL alarms for Neo4j
    assert "warden-dev-orders-pg-license-expiring" not in dev_alarms
    assert not any(n.startswith("warden-dev-graph-main-pg-") for n in dev_alarms)


def test_alarm_descriptions_say_what_to_do(dev_alarms: dict[str, dict[str, Any]]) -> None:
    assert "warden health --stage dev --target graph-main" in dev_alarms["warden-dev-graph-main-unhealthy"][
        "AlarmDescription"]
    assert "warden backup create --stage dev --target orders-pg --wait" in dev_alarms[
        "warden-dev-orders-pg-backup-too-old"]["AlarmDescription"]
    assert "Never restore from it" in dev_alarms["warden-dev-orders-pg-backup-corrupt"]["AlarmDescription"]
    for props in dev_alarms.values():
        description = props["AlarmDescription"]
        assert isinstance(description, str) and 80 <= len(description) <= 1024, props["AlarmName"]


def test_every_alarm_notifies_the_stage_topic_on_alarm_and_on_ok(
    dev: dict[str, Any], dev_stack: Any, dev_alarms: dict[str, dict[str, Any]]
) -> None:
    topic = {"Ref": logical_id(dev_stack, dev_stack.storage.topic)}
    Template.from_json(dev).all_resources_properties(
        ALARM, {"AlarmActions": [topic], "OKActions": [topic], "InsufficientDataActions": Match.absent()}
    )
    assert len(dev_alarms) == len(resources(dev, ALARM)) >= len(DEV_TARGET_ALARMS)


def test_prod_alarm_windows_follow_each_targets_schedules(synthesized: Synthesized) -> None:
    prod = alarms_by_name(synthesized.template(synthesized.stacks["prod"]))
    # analytics-pg: health every minute (several runs per 5-minute period), backups daily at 01:00
    assert observed(prod["warden-prod-analytics-pg-unhealthy"]) == target_alarm(
        "Healthy", "analytics-pg", "Minimum", 1, LT, 300, 5, 3, "breaching"
    )
    assert observed(prod["warden-prod-analytics-pg-backup-too-old"]) == target_alarm(
        "BackupAgeHours", "analytics-pg", "Minimum", 26, GT, 3600, 1, 1, "breaching"
    )
    assert {n for n in prod if n.startswith("warden-prod-analytics-pg-")} == {
        f"warden-prod-analytics-pg-{what}"
        for what in ("unhealthy", "backup-too-old", "backup-failed", "backup-corrupt", "backup-near-time-limit",
                     "pg-connections-saturated",
                     "pg-long-running-queries", "backup-storage-over-budget")  # prod's cdk.json sets a budget
    }


# -- functions and state machines --------------------------------------------------------------


def test_every_function_has_an_errors_and_a_throttles_alarm(
    dev_stack: Any, dev_alarms: dict[str, dict[str, Any]]
) -> None:
    assert {"health", "backup", "verify"} <= set(dev_stack.functions)
    for job, fn in dev_stack.functions.items():
        for metric, what in (("Errors", "errors"), ("Throttles", "throttles")):
            name = f"warden-dev-fn-{job.replace('_', '-')}-{what}"
            assert name in dev_alarms, name
            assert observed(dev_alarms[name]) == {
                "Namespace": "AWS/Lambda",
                "MetricName": metric,
                "Dimensions": {"FunctionName": {"Ref": logical_id(dev_stack, fn.function)}},
                "Statistic": "Sum",
                "Threshold": 1,
                "ComparisonOperator": GE,
                "Period": 300,
                "EvaluationPeriods": 1,
                "DatapointsToAlarm": 1,
                "TreatMissingData": "notBreaching",
            }, name


def test_every_state_machine_of_the_stack_has_a_failed_and_a_timed_out_alarm(
    dev_stack: Any, dev_alarms: dict[str, dict[str, Any]]
) -> None:
    machines = dict(dev_stack.state_machines)
    assert "recovery" in machines
    assert dev_stack.alarms.state_machines == machines
    for name, machine in machines.items():
        for metric, what in (("ExecutionsFailed", "failed"), ("ExecutionsTimedOut", "timed-out")):
            alarm = f"warden-dev-sfn-{name}-{what}"
            assert observed(dev_alarms[alarm]) == {
                "Namespace": "AWS/States",
                "MetricName": metric,
                "Dimensions": {"StateMachineArn": {"Ref": logical_id(dev_stack, machine)}},
                "Statistic": "Sum",
                "Threshold": 1,
                "ComparisonOperator": GE,
                "Period": 300,
                "EvaluationPeriods": 1,
                "DatapointsToAlarm": 1,
                "TreatMissingData": "notBreaching",
            }, alarm


# -- the construct on its own: settings, schedules, state machines given ----------------------

def _app() -> App:
    """An app with cdk.json's context (its feature flags), as the stages are synthesized with."""
    return App(context=read_cdk_json_context())


OWN_STAGE = StageConfig(
    name="own",
    targets=[
        Target(name="graph", engine="neo4j", secret_name="s/graph",
               schedules=Schedules(health="rate(15 minutes)", backup="rate(6 hours)")),
        Target(name="pg", engine="postgres", secret_name="s/pg"),
    ],
)


@pytest.fixture(scope="module")
def own() -> dict[str, dict[str, Any]]:
    """A stack of its own: one state machine given, custom settings for `graph`, no functions."""
    stack = Stack(_app(), "OwnAlarms")
    storage = Storage(stack, "Storage", stage=OWN_STAGE)
    machine = sfn.StateMachine(stack, "Drill", definition_body=sfn.DefinitionBody.from_chainable(
        sfn.Pass(stack, "Nothing")))
    Alarms(stack, "Alarms", stage=OWN_STAGE, storage=storage, functions={}, state_machines={"drill": machine},
           settings={"graph": AlarmSettings(license_days_left=60, unhealthy_datapoints=2, unhealthy_periods=3,
                                            neo4j_long_transaction_seconds=120)})
    template = Template.from_stack(stack)
    return {r["Properties"]["AlarmName"]: r["Properties"] for r in template.find_resources(ALARM).values()}


def test_alarm_settings_and_schedules_shape_a_targets_alarms(own: dict[str, dict[str, Any]]) -> None:
    assert observed(own["warden-own-graph-unhealthy"]) == target_alarm(
        "Healthy", "graph", "Minimum", 1, LT, 900, 3, 2, "breaching"
    )
    assert observed(own["warden-own-graph-backup-too-old"]) == target_alarm(
        "BackupAgeHours", "graph", "Minimum", 8, GT, 3600, 1, 1, "breaching"
    )
    assert observed(own["warden-own-graph-license-expiring"])["Threshold"] == 60
    assert observed(own["warden-own-graph-neo4j-long-running-transactions"])["Period"] == 900
    assert observed(own["warden-own-graph-neo4j-long-running-transactions"])["Threshold"] == 120
    # the other target keeps the defaults
    assert observed(own["warden-own-pg-unhealthy"])["EvaluationPeriods"] == 5


def test_state_machines_given_get_failed_and_timed_out_alarms(own: dict[str, dict[str, Any]]) -> None:
    for metric, what in (("ExecutionsFailed", "failed"), ("ExecutionsTimedOut", "timed-out")):
        props = own[f"warden-own-sfn-drill-{what}"]
        assert props["Namespace"] == "AWS/States"
        assert props["MetricName"] == metric
        assert [d["Name"] for d in props["Dimensions"]] == ["StateMachineArn"]
        assert props["TreatMissingData"] == "notBreaching"
    assert not any("-fn-" in name for name in own)  # no functions given, no function alarms


def test_settings_for_an_unknown_target_are_refused() -> None:
    stack = Stack(_app(), "Typo")
    storage = Storage(stack, "Storage", stage=OWN_STAGE)
    with pytest.raises(ValueError, match="unknown targets \\['grpah'\\]"):
        Alarms(stack, "Alarms", stage=OWN_STAGE, storage=storage, functions={}, settings={"grpah": AlarmSettings()})


def test_an_evaluation_range_cloudwatch_would_refuse_fails_at_synth() -> None:
    stack = Stack(_app(), "TooLong")
    storage = Storage(stack, "Storage", stage=OWN_STAGE)
    with pytest.raises(ValueError, match="warden-own-pg-unhealthy: 300 periods of 300 s"):
        Alarms(stack, "Alarms", stage=OWN_STAGE, storage=storage, functions={},
               settings={"pg": AlarmSettings(unhealthy_datapoints=3, unhealthy_periods=300)})


@pytest.mark.parametrize(
    ("expression", "hours"),
    [
        ("cron(0 2 * * ? *)", 24),
        ("cron(30 1 ? * * *)", 24),
        ("cron(0 */6 * * ? *)", 6),
        ("cron(0 1,13 * * ? *)", 12),
        ("cron(0 1,5 * * ? *)", 20),
        ("cron(0 8-18 * * ? *)", 14),
        ("cron(0 * * * ? *)", 1),
        ("cron(0 2 ? * SUN *)", 168),
        ("cron(0 2 ? * MON-FRI *)", 168),
        ("cron(0 3 1 * ? *)", 744),
        ("rate(6 hours)", 6),
        ("rate(1 day)", 24),
        ("rate(30 minutes)", 0.5),
    ],
)
def test_schedule_interval_is_the_longest_gap_between_runs_never_less(expression: str, hours: float) -> None:
    assert schedule_interval_hours(expression) == hours


def test_backup_max_age_is_the_schedule_plus_two_hours_of_grace_unless_configured() -> None:
    daily = Target(name="t", engine="postgres", secret_name="s")
    assert backup_max_age_hours(daily) == 26
    six_hourly = Target(name="t", engine="postgres", secret_name="s", schedules=Schedules(backup="rate(6 hours)"))
    assert backup_max_age_hours(six_hourly) == 8
    assert backup_max_age_hours(daily, AlarmSettings(backup_grace_hours=4)) == 28
    assert backup_max_age_hours(daily, AlarmSettings(backup_max_age_hours=50)) == 50


def test_alarm_settings_follow_the_targets_health_and_licence_configuration() -> None:
    # `Target.license` / `Target.health` (warden.health_config) are read when the target has them
    defaults = settings_for(Target(name="t", engine="neo4j", secret_name="s"))
    assert (defaults.license_days_left, defaults.neo4j_long_transaction_seconds) == (30, 60)
    configured = SimpleNamespace(
        name="t",
        license=LicenseConfig(warn_days=45),
        health=HealthThresholds(long_tx_warn_s=90, long_tx_fail_s=600),
    )
    settings = settings_for(configured)  # type: ignore[arg-type]
    assert (settings.license_days_left, settings.neo4j_long_transaction_seconds) == (45, 90)


@pytest.mark.parametrize(("health", "seconds"), [("rate(1 minute)", 300), ("rate(5 minutes)", 300),
                                                 ("rate(15 minutes)", 900), ("rate(1 hour)", 3600)])
def test_health_period_covers_the_health_schedule_and_is_at_least_five_minutes(health: str, seconds: int) -> None:
    target = Target(name="t", engine="neo4j", secret_name="s", schedules=Schedules(health=health))
    assert health_period(target).to_seconds() == seconds


# -- the dashboard -----------------------------------------------------------------------------


def _placeholder(token: dict[str, Any]) -> str:
    if "Ref" in token:
        return f"Ref:{token['Ref']}"
    if "Fn::GetAtt" in token:
        return "GetAtt:" + ".".join(token["Fn::GetAtt"])
    return "Token:" + json.dumps(token, sort_keys=True).replace('"', "'")


def dashboard_body(template: dict[str, Any], name: str) -> dict[str, Any]:
    """The DashboardBody of dashboard `name`, its Fn::Join resolved with `Ref:<id>` /
    `GetAtt:<id>.<attr>` placeholders in place of the tokens."""
    (dashboard,) = [
        d for d in resources(template, "AWS::CloudWatch::Dashboard").values()
        if d["Properties"]["DashboardName"] == name
    ]
    body = dashboard["Properties"]["DashboardBody"]
    if isinstance(body, str):
        return json.loads(body)
    separator, parts = body["Fn::Join"]
    return json.loads(separator.join(p if isinstance(p, str) else _placeholder(p) for p in parts))


@pytest.fixture(scope="module")
def widgets(dev: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The dev dashboard's titled widgets, by title."""
    body = dashboard_body(dev, "warden-dev")
    titled = [w for w in body["widgets"] if w["properties"].get("title")]
    by_title = {w["properties"]["title"]: w for w in titled}
    assert len(by_title) == len(titled), "widget titles must be unique"
    return by_title


def _metric_rows(widget: dict[str, Any]) -> list[list[Any]]:
    return [m for m in widget["properties"].get("metrics", []) if isinstance(m[0], str)]


def _dims(row: list[Any]) -> dict[str, Any]:
    plain = [x for x in row[2:] if not isinstance(x, dict)]
    return dict(zip(plain[::2], plain[1::2], strict=True))


def test_dashboard_has_per_target_widgets_for_its_engine(widgets: dict[str, dict[str, Any]]) -> None:
    expected = {f"graph-main: {w}" for w in COMMON_WIDGETS + NEO4J_WIDGETS} | {
        f"orders-pg: {w}" for w in COMMON_WIDGETS + POSTGRES_WIDGETS
    }
    per_target = {t for t in widgets if t.startswith(("graph-main: ", "orders-pg: "))}
    assert per_target == expected


def test_dashboard_target_widgets_plot_that_targets_warden_metrics_with_the_service_dimension(
    widgets: dict[str, dict[str, Any]],
) -> None:
    rows_seen = 0
    for title, widget in widgets.items():
        target = title.split(": ")[0]
        if target not in ("graph-main", "orders-pg"):
            continue
        for row in _metric_rows(widget):
            assert row[0] == "Warden", title
            assert _dims(row) == {"Target": target, "service": "warden"}, title
            rows_seen += 1
    assert rows_seen >= 20

    def names(title: str) -> list[str]:
        return [row[1] for row in _metric_rows(widgets[title])]

    assert names("graph-main: health") == ["Healthy", "HealthStatus"]
    assert names("graph-main: backup age (h)") == ["BackupAgeHours", "VerifiedBackupAgeHours"]
    assert names("orders-pg: backup size (bytes)") == ["BackupSize"]
    assert names("orders-pg: backup duration (s)") == ["BackupDuration"]
    assert names("graph-main: backups") == ["BackupSuccess", "BackupFailure", "BackupVerified", "BackupCorrupt"]
    assert names("graph-main: licence days left") == ["LicenseDaysLeft"]
    assert names("graph-main: Neo4j transactions") == ["ActiveTransactions", "LongestTransactionSeconds"]
    assert names("graph-main: Neo4j heap used (%)") == ["HeapUsedPct"]
    assert names("orders-pg: PostgreSQL connections used (%)") == ["ConnectionsUsedPct"]
    assert names("orders-pg: PostgreSQL cache hit ratio") == ["CacheHitRatio"]
    assert names("orders-pg: PostgreSQL long-running queries") == ["LongQueries"]
    (search,) = widgets["orders-pg: check duration (ms)"]["properties"]["metrics"]
    assert "MetricName=\"CheckDuration\"" in search[0]["expression"]
    assert "Target=\"orders-pg\"" in search[0]["expression"]


def test_dashboard_marks_the_alarm_thresholds(widgets: dict[str, dict[str, Any]]) -> None:
    def lines(title: str) -> list[float]:
        return [a["value"] for a in widgets[title]["properties"].get("annotations", {}).get("horizontal", [])]

    assert lines("graph-main: backup age (h)") == [26]
    assert lines("graph-main: licence days left") == [30]
    assert lines("orders-pg: PostgreSQL connections used (%)") == [90]
    assert lines("graph-main: Neo4j transactions") == [60]  # the oldest transaction, on the right axis


def test_dashboard_shows_every_alarms_status(
    dev: dict[str, Any], widgets: dict[str, dict[str, Any]]
) -> None:
    widget = widgets["Alarms"]
    assert widget["type"] == "alarm"
    shown = set(widget["properties"]["alarms"])
    assert shown == {f"GetAtt:{lid}.Arn" for lid in resources(dev, ALARM)}


def test_dashboard_shows_errors_and_throttles_of_every_function_and_state_machine_executions(
    dev_stack: Any, widgets: dict[str, dict[str, Any]]
) -> None:
    functions = {f"Ref:{logical_id(dev_stack, fn.function)}" for fn in dev_stack.functions.values()}
    for title, metric in (("Functions: errors", "Errors"), ("Functions: throttles", "Throttles")):
        rows = _metric_rows(widgets[title])
        assert {(r[0], r[1]) for r in rows} == {("AWS/Lambda", metric)}
        assert {_dims(r)["FunctionName"] for r in rows} == functions
    assert _metric_rows(widgets["Health runs: targets checked"])[0][:4] == ["Warden", "TargetsChecked", "service",
                                                                          "warden"]
    machines = dev_stack.state_machines
    rows = _metric_rows(widgets["State machines: executions failed / timed out"])
    assert {r[1] for r in rows} == {"ExecutionsFailed", "ExecutionsTimedOut"}
    assert {_dims(r)["StateMachineArn"] for r in rows} == {f"Ref:{logical_id(dev_stack, m)}" for m in machines.values()}
