"""Alarms and the dashboard of a stage: each condition of Warden's metrics is one fleet alarm, a
Metrics Insights query over the stage's targets (SCHEMA with Stage, Target and Powertools' `service`),
with a deliberate threshold, window and missing-data rule per distinct setting; function and state
machine alarms watch their AWS metrics; every alarm notifies the stage's topic on ALARM and OK; the
dashboard leads with the worst targets and shows every target's health, backups and engine gauges."""

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


def fleet_alarm(function: str, metric: str, threshold: float, comparison: str, period: int, periods: int,
                datapoints: int, missing: str, *, schema: str = "Stage, Target, service",
                stage: str = "dev") -> dict[str, Any]:
    """A fleet alarm as CloudFormation holds it: a Metrics Insights query over the stage's targets."""
    return {
        "Select": f'SELECT {function}({metric}) FROM SCHEMA("Warden", {schema}) WHERE Stage = \'{stage}\'',
        "Threshold": threshold,
        "ComparisonOperator": comparison,
        "Period": period,
        "EvaluationPeriods": periods,
        "DatapointsToAlarm": datapoints,
        "TreatMissingData": missing,
    }


LT, GT, GE = "LessThanThreshold", "GreaterThanThreshold", "GreaterThanOrEqualToThreshold"

# The dev stage of cdk.json: graph-main (Neo4j) and orders-pg (PostgreSQL), default schedules
# (health every 5 minutes, daily backup at 02:00): one fleet alarm per condition.
DEV_FLEET_ALARMS = {
    "warden-dev-fleet-unhealthy": fleet_alarm("MAX", "HealthStatus", 1, GE, 300, 5, 3, "notBreaching"),
    "warden-dev-fleet-unreported-unhealthy": fleet_alarm("COUNT", "HealthStatus", 2, LT, 300, 5, 3, "breaching"),
    "warden-dev-fleet-backup-too-old": fleet_alarm("MIN", "BackupAgeHours", 26, GT, 3600, 1, 1, "notBreaching"),
    "warden-dev-fleet-unreported-backup-too-old": fleet_alarm("COUNT", "BackupAgeHours", 2, LT, 3600, 1, 1,
                                                              "breaching"),
    "warden-dev-fleet-backup-failed": fleet_alarm("SUM", "BackupFailure", 1, GE, 300, 1, 1, "notBreaching"),
    "warden-dev-fleet-backup-corrupt": fleet_alarm("SUM", "BackupCorrupt", 1, GE, 300, 1, 1, "notBreaching"),
    "warden-dev-fleet-backup-near-time-limit": fleet_alarm("MAX", "BackupDuration", 720, GT, 3600, 1, 1,
                                                           "notBreaching"),
    "warden-dev-fleet-license-expiring": fleet_alarm("MIN", "LicenseDaysLeft", 30, LT, 3600, 1, 1, "notBreaching"),
    "warden-dev-fleet-neo4j-long-running-transactions": fleet_alarm("MAX", "LongestTransactionSeconds", 60, GT,
                                                                    300, 3, 2, "ignore"),
    "warden-dev-fleet-pg-connections-saturated": fleet_alarm("MAX", "ConnectionsUsedPct", 90, GT, 300, 3, 2,
                                                             "ignore"),
    "warden-dev-fleet-pg-long-running-queries": fleet_alarm("MAX", "LongQueries", 1, GE, 300, 3, 2, "ignore"),
}
# condition -> the dev targets its fleet alarm covers (by engine)
DEV_COVERS = {
    "unhealthy": {"graph-main", "orders-pg"}, "backup-too-old": {"graph-main", "orders-pg"},
    "backup-failed": {"graph-main", "orders-pg"}, "backup-corrupt": {"graph-main", "orders-pg"},
    "backup-near-time-limit": {"graph-main", "orders-pg"}, "license-expiring": {"graph-main"},
    "neo4j-long-running-transactions": {"graph-main"}, "pg-connections-saturated": {"orders-pg"},
    "pg-long-running-queries": {"orders-pg"},
}

COMMON_WIDGETS = ["health", "backup age (h)", "backups", "backup size (bytes)", "backup duration (s)"]
NEO4J_WIDGETS = ["licence days left", "Neo4j transactions", "Neo4j heap used (%)"]
POSTGRES_WIDGETS = ["PostgreSQL connections used (%)", "PostgreSQL long-running queries",
                    "PostgreSQL database size (bytes)"]


def alarms_by_name(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = Template.from_json(template).find_resources(ALARM)
    by_name = {r["Properties"]["AlarmName"]: r["Properties"] for r in found.values()}
    assert len(by_name) == len(found), "alarm names must be unique"
    return by_name


def observed_fleet(props: dict[str, Any]) -> dict[str, Any]:
    """A fleet alarm's query (its SELECT ... WHERE Stage) and evaluation."""
    (query,) = props["Metrics"]
    expression = query["Expression"]
    return {"Select": expression.split(" GROUP BY")[0].split(" AND Target")[0], "Period": query["Period"],
            **{k: props.get(k) for k in ("Threshold", "ComparisonOperator", "EvaluationPeriods",
                                          "DatapointsToAlarm", "TreatMissingData")}}


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


# -- fleet alarms: one per condition over the stage's targets ------------------------------------


@pytest.mark.parametrize("name", sorted(DEV_FLEET_ALARMS))
def test_fleet_alarm_queries_its_metric_with_its_threshold_window_and_missing_data_rule(
    dev_alarms: dict[str, dict[str, Any]], name: str
) -> None:
    assert name in dev_alarms, f"no alarm {name}; have {sorted(dev_alarms)}"
    assert observed_fleet(dev_alarms[name]) == DEV_FLEET_ALARMS[name]
    if "-unreported-" not in name:  # one contributor per target, worst first
        assert "GROUP BY Target ORDER BY" in dev_alarms[name]["Metrics"][0]["Expression"]


def test_each_condition_covers_exactly_the_targets_of_its_engine_and_no_target_has_its_own(
    dev_stack: Any, dev_alarms: dict[str, dict[str, Any]]
) -> None:
    fleet = dev_stack.alarms.fleet
    covers = {spec.condition: set(spec.targets) for spec in fleet.values() if not spec.unreported}
    assert covers == DEV_COVERS
    assert {n for n in dev_alarms if n.startswith("warden-dev-fleet-")} == set(DEV_FLEET_ALARMS)
    # no per-target alarm on Warden's own metrics any more (instance and log alarms stay per target)
    assert not any(n.startswith(("warden-dev-graph-main-", "warden-dev-orders-pg-")) for n in dev_alarms)


def test_alarm_descriptions_say_what_to_do(dev_alarms: dict[str, dict[str, Any]]) -> None:
    unhealthy = dev_alarms["warden-dev-fleet-unhealthy"]["AlarmDescription"]
    assert "warden health --stage dev" in unhealthy and "graph-main, orders-pg" in unhealthy
    assert "names each breaching target and its failing check" in unhealthy
    assert "(verify)" in dev_alarms["warden-dev-fleet-backup-corrupt"]["AlarmDescription"]
    assert "reported no" not in unhealthy and "stops reporting" in dev_alarms[
        "warden-dev-fleet-unreported-unhealthy"]["AlarmDescription"]
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
    assert len(dev_alarms) == len(resources(dev, ALARM)) >= len(DEV_FLEET_ALARMS)


def test_prod_alarm_windows_follow_each_targets_schedules(synthesized: Synthesized) -> None:
    stack = synthesized.stacks["prod"]
    prod = alarms_by_name(synthesized.template(stack))
    # analytics-pg: health every minute (several runs per 5-minute period), backups daily at 01:00:
    # the same window and limit as the others, so the same fleet alarms cover it
    assert observed_fleet(prod["warden-prod-fleet-unhealthy"]) == fleet_alarm(
        "MAX", "HealthStatus", 1, GE, 300, 5, 3, "notBreaching", stage="prod")
    assert observed_fleet(prod["warden-prod-fleet-backup-too-old"]) == fleet_alarm(
        "MIN", "BackupAgeHours", 26, GT, 3600, 1, 1, "notBreaching", stage="prod")
    covering = {spec.condition for spec in stack.alarms.fleet.values()
                if "analytics-pg" in spec.targets and not spec.unreported}
    assert covering == {"unhealthy", "backup-too-old", "backup-failed", "backup-corrupt", "backup-near-time-limit",
                        "pg-connections-saturated", "pg-long-running-queries",
                        "backup-storage-over-budget"}  # prod's cdk.json sets a budget
    assert prod["warden-prod-fleet-backup-storage-over-budget"]["Threshold"] == 500e9


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
            alarm = f"warden-dev-sfn-{name.replace('_', '-')}-{what}"  # as Alarms spells it
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
def own() -> tuple[dict[str, dict[str, Any]], Alarms]:
    """A stack of its own: one state machine given, custom settings for `graph`, no functions."""
    stack = Stack(_app(), "OwnAlarms")
    storage = Storage(stack, "Storage", stage=OWN_STAGE)
    machine = sfn.StateMachine(stack, "Drill", definition_body=sfn.DefinitionBody.from_chainable(
        sfn.Pass(stack, "Nothing")))
    alarms = Alarms(stack, "Alarms", stage=OWN_STAGE, storage=storage, functions={},
                    state_machines={"drill": machine},
           settings={"graph": AlarmSettings(license_days_left=60, unhealthy_datapoints=2, unhealthy_periods=3,
                                            neo4j_long_transaction_seconds=120)})
    template = Template.from_stack(stack)
    return {r["Properties"]["AlarmName"]: r["Properties"] for r in template.find_resources(ALARM).values()}, alarms


def _fleet_alarm_of(own: tuple[dict[str, dict[str, Any]], Alarms], condition: str, target: str) -> dict[str, Any]:
    """The fleet alarm of `condition` that covers `target` (targets of other settings get their own)."""
    by_name, alarms = own
    (name,) = [n for n, spec in alarms.fleet.items()
               if spec.condition == condition and target in spec.targets and not spec.unreported]
    return observed_fleet(by_name[name])


def test_alarm_settings_and_schedules_shape_a_targets_alarms(own: Any) -> None:
    # graph's settings and schedules differ from pg's: each condition splits into one alarm per setting
    assert _fleet_alarm_of(own, "unhealthy", "graph") == fleet_alarm(
        "MAX", "HealthStatus", 1, GE, 900, 3, 2, "notBreaching", stage="own")
    assert _fleet_alarm_of(own, "backup-too-old", "graph") == fleet_alarm(
        "MIN", "BackupAgeHours", 8, GT, 3600, 1, 1, "notBreaching", stage="own")
    assert _fleet_alarm_of(own, "license-expiring", "graph")["Threshold"] == 60
    assert _fleet_alarm_of(own, "neo4j-long-running-transactions", "graph")["Period"] == 900
    assert _fleet_alarm_of(own, "neo4j-long-running-transactions", "graph")["Threshold"] == 120
    # the other target keeps the defaults, in an alarm that names only it
    assert _fleet_alarm_of(own, "unhealthy", "pg")["EvaluationPeriods"] == 5
    _, alarms = own
    (pg_only,) = [spec for spec in alarms.fleet.values() if spec.condition == "unhealthy"
                  and not spec.unreported and "pg" in spec.targets]
    assert pg_only.targets == ("pg",)


def test_state_machines_given_get_failed_and_timed_out_alarms(own: Any) -> None:
    own, _ = own
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
    with pytest.raises(ValueError, match=r"warden-own-fleet-(2-)?unhealthy: 300 periods of 300 s"):
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
            assert _dims(row) == {"Stage": "dev", "Target": target, "service": "warden"}, title
            rows_seen += 1
    assert rows_seen >= 20

    def names(title: str) -> list[str]:
        return [row[1] for row in _metric_rows(widgets[title])]

    assert names("graph-main: health") == ["HealthStatus"]
    assert names("graph-main: backup age (h)") == ["BackupAgeHours"]
    assert names("orders-pg: backup size (bytes)") == ["BackupSize", "StoredBytes"]
    assert names("orders-pg: backup duration (s)") == ["BackupDuration"]
    assert names("graph-main: backups") == ["BackupSuccess", "BackupFailure", "BackupVerified", "BackupCorrupt"]
    assert names("graph-main: licence days left") == ["LicenseDaysLeft"]
    assert names("graph-main: Neo4j transactions") == ["ActiveTransactions", "LongestTransactionSeconds"]
    assert names("graph-main: Neo4j heap used (%)") == ["HeapUsedPct"]
    assert names("orders-pg: PostgreSQL connections used (%)") == ["ConnectionsUsedPct"]
    assert names("orders-pg: PostgreSQL database size (bytes)") == ["DatabaseSizeBytes"]
    assert names("orders-pg: PostgreSQL long-running queries") == ["LongQueries"]
    # the worst targets first, over the whole stage: a Metrics Insights query (check durations are in the log)
    (query,) = widgets["Worst health (0 healthy, 1 degraded, 2 unhealthy)"]["properties"]["metrics"]
    assert query[0]["expression"] == ('SELECT MAX(HealthStatus) FROM SCHEMA("Warden", Stage, Target, service) '
                                      "WHERE Stage = 'dev' GROUP BY Target ORDER BY MAX() DESC LIMIT 10")
    assert not any(r[1] in ("Healthy", "CheckDuration", "CheckStatus", "CacheHitRatio", "VerifiedBackupAgeHours")
                   for w in widgets.values() for r in _metric_rows(w))


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
    shown = {a for w in widgets.values() if w["type"] == "alarm" for a in w["properties"]["alarms"]}
    assert widgets["Stage alarms (fleet, functions, state machines)"]["type"] == "alarm"
    assert shown == {f"GetAtt:{lid}.Arn" for lid in resources(dev, ALARM)}


def test_dashboard_shows_errors_and_throttles_of_every_function_and_state_machine_executions(
    dev_stack: Any, widgets: dict[str, dict[str, Any]]
) -> None:
    functions = {f"Ref:{logical_id(dev_stack, fn.function)}" for fn in dev_stack.functions.values()}
    for title, metric in (("Functions: errors", "Errors"), ("Functions: throttles", "Throttles")):
        rows = _metric_rows(widgets[title])
        assert {(r[0], r[1]) for r in rows} == {("AWS/Lambda", metric)}
        assert {_dims(r)["FunctionName"] for r in rows} == functions
    checked = _metric_rows(widgets["Health runs: targets checked"])[0]
    assert checked[:2] == ["Warden", "TargetsChecked"] and _dims(checked) == {"Stage": "dev", "service": "warden"}
    machines = dev_stack.state_machines
    rows = _metric_rows(widgets["State machines: executions failed / timed out"])
    assert {r[1] for r in rows} == {"ExecutionsFailed", "ExecutionsTimedOut"}
    assert {_dims(r)["StateMachineArn"] for r in rows} == {f"Ref:{logical_id(dev_stack, m)}" for m in machines.values()}
