"""Instance alarms and log monitoring: every alarm watches the exact AWS or agent metric of the
instance the target names, with the configured (or default) threshold and window, and notifies the
stage's topic; every log count has its metric filters with the documented patterns and an alarm;
configuration that cannot work is refused with the field named."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Template
from infra_helpers import Synthesized, resources
from pydantic import ValidationError

from infra.alarms import Alarms
from infra.config import read_cdk_json_context
from infra.dashboard import Dashboard
from infra.instance_alarms import InstanceAlarms, path_slug
from infra.log_monitoring import PATTERNS, LogMonitors
from infra.storage import Storage
from warden.config.monitoring import InstanceMonitoring
from warden.config.stage import StageConfig
from warden.config.target import Target
from warden.remediation import ACTIONS

pytestmark = pytest.mark.infra

ALARM = "AWS::CloudWatch::Alarm"
FILTER = "AWS::Logs::MetricFilter"
GT, LT, GE = "GreaterThanThreshold", "LessThanThreshold", "GreaterThanOrEqualToThreshold"
EC2_ID = "i-0123456789abcdef0"
GIB, MIB = 2**30, 2**20

STAGE = StageConfig(
    name="mon",
    targets=[
        # Self-hosted Neo4j on two EC2 instances, custom thresholds, logs shipped by the agent.
        Target(name="graph", engine="neo4j", secret_name="s/graph",
               instances={"ec2_instance_ids": [EC2_ID, "i-0badc0de"], "disk_paths": ["/", "/var/lib/neo4j"],
                          "cpu_percent": 70, "network_in_mbps": 200, "recover_on_system_check_failure": True,
                          "evaluation": {"period_minutes": 1, "datapoints": 4, "periods": 5}},
               logs={"log_group": "/warden/mon/graph/neo4j", "auth_failures": 3}),
        # RDS instance: sizes given, so memory and storage thresholds are percentages of them.
        Target(name="orders", engine="postgres", secret_name="s/orders", rds={"instance_id": "orders-db"},
               instances={"memory_gb": 16, "storage_gb": 200, "max_connections": 1000},
               logs={"log_group": "/aws/rds/instance/orders-db/postgresql"}),
        # Aurora cluster with no instances section: every default.
        Target(name="aurora", engine="postgres", secret_name="s/aurora", rds={"cluster_id": "aurora-cluster"}),
        # Names nothing: no instance alarms, no filters.
        Target(name="plain", engine="postgres", secret_name="s/plain"),
    ],
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    stack = Stack(App(context=read_cdk_json_context()), "Monitoring")
    storage = Storage(stack, "Storage", stage=STAGE)
    alarms = Alarms(stack, "Alarms", stage=STAGE, storage=storage, functions={})
    InstanceAlarms(stack, "InstanceAlarms", alarms=alarms)
    LogMonitors(stack, "LogMonitors", alarms=alarms)
    Dashboard(stack, "Dashboard", alarms=alarms)
    return Template.from_stack(stack).to_json()


@pytest.fixture(scope="module")
def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = resources(template, ALARM)
    by_name = {r["Properties"]["AlarmName"]: r["Properties"] for r in found.values()}
    assert len(by_name) == len(found), "alarm names must be unique"
    return by_name


def observed(props: dict[str, Any]) -> tuple[Any, ...]:
    """(namespace, metric, dimensions, statistic, period, comparison, threshold, datapoints, periods, missing)."""
    return (props["Namespace"], props["MetricName"], {d["Name"]: d["Value"] for d in props.get("Dimensions", [])},
            props["Statistic"], props["Period"], props["ComparisonOperator"], props["Threshold"],
            props["DatapointsToAlarm"], props["EvaluationPeriods"], props["TreatMissingData"])


def _ec2(what: str, instance: str = EC2_ID) -> str:
    return f"warden-mon-graph-ec2-{instance}-{what}"


# -- EC2 ---------------------------------------------------------------------------------------------------

EC2_EXPECTED = {
    "cpu-high": ("AWS/EC2", "CPUUtilization", {"InstanceId": EC2_ID}, "Average", 60, GT, 70, 4, 5, "notBreaching"),
    "memory-high": ("CWAgent", "mem_used_percent", {"InstanceId": EC2_ID}, "Maximum", 60, GT, 85, 4, 5, "missing"),
    "disk-root-high": ("CWAgent", "disk_used_percent", {"InstanceId": EC2_ID, "path": "/"}, "Maximum", 60, GT, 85,
                       4, 5, "missing"),
    "disk-var-lib-neo4j-high": ("CWAgent", "disk_used_percent", {"InstanceId": EC2_ID, "path": "/var/lib/neo4j"},
                                "Maximum", 60, GT, 85, 4, 5, "missing"),
    # 200 Mbit/s over a 60 s period: 200e6 / 8 * 60 bytes
    "network-in-high": ("AWS/EC2", "NetworkIn", {"InstanceId": EC2_ID}, "Sum", 60, GT, 1.5e9, 4, 5, "notBreaching"),
    "status-check-failed": ("AWS/EC2", "StatusCheckFailed", {"InstanceId": EC2_ID}, "Maximum", 60, GE, 1, 2, 2,
                            "notBreaching"),
    "system-check-failed": ("AWS/EC2", "StatusCheckFailed_System", {"InstanceId": EC2_ID}, "Maximum", 60, GE, 1,
                            2, 2, "notBreaching"),
}


@pytest.mark.parametrize("what", sorted(EC2_EXPECTED))
def test_ec2_alarm_watches_its_instance_metric_with_the_configured_threshold(
    alarms: dict[str, dict[str, Any]], what: str
) -> None:
    assert observed(alarms[_ec2(what)]) == EC2_EXPECTED[what]


def test_every_ec2_instance_gets_the_same_set_and_no_network_out_alarm_without_a_limit(
    alarms: dict[str, dict[str, Any]]
) -> None:
    for instance in (EC2_ID, "i-0badc0de"):
        names = {n.removeprefix(f"warden-mon-graph-ec2-{instance}-") for n in alarms
                 if n.startswith(f"warden-mon-graph-ec2-{instance}-")}
        assert names == set(EC2_EXPECTED)
    assert not any("network-out" in n for n in alarms)


def test_system_check_alarm_recovers_the_instance_and_notifies(alarms: dict[str, dict[str, Any]]) -> None:
    actions = alarms[_ec2("system-check-failed")]["AlarmActions"]
    assert len(actions) == 2
    recover = json.dumps(actions[0])
    assert ":automate:" in recover and ":ec2:recover" in recover
    assert actions[1] == alarms[_ec2("cpu-high")]["AlarmActions"][0]  # the stage topic
    # only that alarm may act on the instance
    assert all(len(p["AlarmActions"]) == 1 for n, p in alarms.items() if not n.endswith("system-check-failed"))


def test_the_cwagent_dimensions_match_the_shipped_agent_config() -> None:
    # docs/cloudwatch-agent.json must publish mem_used_percent by InstanceId and disk_used_percent by
    # (InstanceId, path): the exact dimension sets the alarms use.
    from pathlib import Path

    config = json.loads((Path(__file__).resolve().parents[2] / "docs" / "cloudwatch-agent.json").read_text())
    metrics = config["metrics"]
    assert metrics["namespace"] == "CWAgent"
    assert config["agent"]["omit_hostname"] is True
    assert metrics["append_dimensions"] == {"InstanceId": "${aws:InstanceId}"}
    assert ["InstanceId", "path"] in metrics["aggregation_dimensions"]
    assert "mem_used_percent" in metrics["metrics_collected"]["mem"]["measurement"]
    assert "used_percent" in metrics["metrics_collected"]["disk"]["measurement"]


# -- RDS / Aurora ------------------------------------------------------------------------------------------

RDS_DIMS = {"DBInstanceIdentifier": "orders-db"}
RDS_EXPECTED = {
    "rds-cpu-high": ("AWS/RDS", "CPUUtilization", RDS_DIMS, "Average", 300, GT, 80, 3, 3, "notBreaching"),
    # 15 % of 16 GiB free, 15 % of 200 GiB free
    "rds-freeable-memory-low": ("AWS/RDS", "FreeableMemory", RDS_DIMS, "Minimum", 300, LT, 16 * GIB * 0.15, 3, 3,
                                "notBreaching"),
    "rds-free-storage-low": ("AWS/RDS", "FreeStorageSpace", RDS_DIMS, "Minimum", 300, LT, 200 * GIB * 0.15, 3, 3,
                             "notBreaching"),
    "rds-connections-high": ("AWS/RDS", "DatabaseConnections", RDS_DIMS, "Maximum", 300, GT, 900, 3, 3,
                             "notBreaching"),
    "rds-read-latency-high": ("AWS/RDS", "ReadLatency", RDS_DIMS, "Average", 300, GT, 0.02, 3, 3, "notBreaching"),
    "rds-write-latency-high": ("AWS/RDS", "WriteLatency", RDS_DIMS, "Average", 300, GT, 0.02, 3, 3, "notBreaching"),
    "rds-replica-lag-high": ("AWS/RDS", "ReplicaLag", RDS_DIMS, "Maximum", 300, GT, 60, 3, 3, "notBreaching"),
}


@pytest.mark.parametrize("what", sorted(RDS_EXPECTED))
def test_rds_alarm_watches_the_instance_metric_with_its_threshold(
    alarms: dict[str, dict[str, Any]], what: str
) -> None:
    props = alarms[f"warden-mon-orders-{what}"]
    expected = RDS_EXPECTED[what]
    assert observed(props)[:6] == expected[:6]
    assert observed(props)[6] == pytest.approx(expected[6])
    assert observed(props)[7:] == expected[7:]


def test_aurora_alarms_use_cluster_metrics_and_defaults(alarms: dict[str, dict[str, Any]]) -> None:
    aurora = {n.removeprefix("warden-mon-aurora-"): p for n, p in alarms.items()
              if n.startswith("warden-mon-aurora-rds-")}
    # no max_connections given: CloudWatch cannot know the parameter, so no connections alarm
    assert set(aurora) == set(RDS_EXPECTED) - {"rds-connections-high"}
    for props in aurora.values():
        assert observed(props)[2] == {"DBClusterIdentifier": "aurora-cluster"}
    assert observed(aurora["rds-free-storage-low"])[1:] == (
        "FreeLocalStorage", {"DBClusterIdentifier": "aurora-cluster"}, "Minimum", 300, LT, 10 * GIB, 3, 3,
        "notBreaching")
    assert observed(aurora["rds-freeable-memory-low"])[6] == 256 * MIB
    # AuroraReplicaLag is in milliseconds
    assert observed(aurora["rds-replica-lag-high"])[1] == "AuroraReplicaLag"
    assert observed(aurora["rds-replica-lag-high"])[6] == 60_000


def test_rds_connections_alarm_is_the_one_remediation_answers(alarms: dict[str, dict[str, Any]]) -> None:
    assert ACTIONS["rds-connections-high"].name == "end_idle_in_transaction"
    from warden.remediation import parse_alarm

    event = {"source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change",
             "detail": {"alarmName": "warden-mon-orders-rds-connections-high", "state": {"value": "ALARM"}}}
    alarm, why = parse_alarm(event, "mon")
    assert alarm is not None and (alarm.target, alarm.action) == ("orders", "end_idle_in_transaction"), why
    # the other instance and log alarms have no Warden action: remediation ignores them
    for name in alarms:
        if name.startswith(("warden-mon-graph-ec2-", "warden-mon-aurora-rds-")) or "-log-" in name:
            event["detail"]["alarmName"] = name
            assert parse_alarm(event, "mon")[0] is None, name


def test_targets_naming_no_instance_or_log_group_get_no_such_alarms(alarms: dict[str, dict[str, Any]]) -> None:
    assert not any(n.startswith("warden-mon-plain-") and ("-rds-" in n or "-ec2-" in n or "-log-" in n)
                   for n in alarms)
    assert not any(n.startswith("warden-mon-aurora-log-") for n in alarms)


def test_every_new_alarm_notifies_the_topic_and_says_what_to_do(alarms: dict[str, dict[str, Any]]) -> None:
    new = {n: p for n, p in alarms.items() if "-ec2-" in n or "-rds-" in n or "-log-" in n}
    assert len(new) == 2 * len(EC2_EXPECTED) + len(RDS_EXPECTED) + len(RDS_EXPECTED) - 1 + 2 * 3
    topic = alarms["warden-mon-fleet-unhealthy"]["AlarmActions"]  # the stage's topic, as every alarm
    for name, props in new.items():
        assert props["AlarmActions"][-1:] == topic and props["OKActions"] == topic, name
        assert 80 <= len(props["AlarmDescription"]) <= 1024, name


# -- logs --------------------------------------------------------------------------------------------------

def test_each_log_count_has_its_documented_filters_on_the_targets_group(template: dict[str, Any]) -> None:
    filters = [f["Properties"] for f in resources(template, FILTER).values()]
    for target, group, fmt in (("graph", "/warden/mon/graph/neo4j", "neo4j"),
                               ("orders", "/aws/rds/instance/orders-db/postgresql", "postgres")):
        mine = [f for f in filters if f["MetricTransformations"][0]["MetricNamespace"] == f"Warden/Logs/{target}"]
        assert {f["LogGroupName"] for f in mine} == {group}
        by_metric: dict[str, set[str]] = {}
        for f in mine:
            (transformation,) = f["MetricTransformations"]
            assert transformation["MetricValue"] == "1" and transformation["Unit"] == "Count"
            assert "DefaultValue" not in transformation  # no line, no data: the alarms treat that as OK
            by_metric.setdefault(transformation["MetricName"], set()).add(f["FilterPattern"])
        assert by_metric == {metric: set(patterns) for metric, patterns in PATTERNS[fmt].items()}


@pytest.mark.parametrize(("target", "what", "metric", "threshold"), [
    ("graph", "log-errors", "ErrorLines", 10),
    ("graph", "log-slow-queries", "SlowQueries", 10),
    ("graph", "log-auth-failures", "AuthFailures", 3),
    ("orders", "log-errors", "ErrorLines", 10),
    ("orders", "log-slow-queries", "SlowQueries", 10),
    ("orders", "log-auth-failures", "AuthFailures", 5),
])
def test_log_alarm_counts_matching_lines_per_period(
    alarms: dict[str, dict[str, Any]], target: str, what: str, metric: str, threshold: int
) -> None:
    assert observed(alarms[f"warden-mon-{target}-{what}"]) == (
        f"Warden/Logs/{target}", metric, {}, "Sum", 300, GE, threshold, 1, 1, "notBreaching")


# -- dashboard ---------------------------------------------------------------------------------------------

def test_dashboard_graphs_instances_and_log_counts(template: dict[str, Any]) -> None:
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in ("graph: EC2 CPU / memory used (%)", "graph: EC2 disk used (%)", "graph: EC2 network",
                  "orders: RDS CPU (%) and connections", "orders: RDS free memory / storage (bytes)",
                  "orders: RDS latency (s) and replica lag", "aurora: RDS latency (s) and replica lag",
                  "graph: log lines per 5 min", "orders: log lines per 5 min"):
        assert title in body, title
    assert "plain: RDS" not in body and "plain: EC2" not in body


# -- configuration -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("target", "field"), [
    ({"engine": "postgres", "rds": {"instance_id": "db"}, "instances": {"ec2_instance_ids": [EC2_ID]}},
     "ec2_instance_ids is for self-hosted targets"),
    ({"engine": "neo4j", "instances": {}}, "instances names no instance"),
    ({"engine": "neo4j", "instances": {"ec2_instance_ids": ["i-xyz"]}}, "ec2_instance_ids"),
    ({"engine": "neo4j", "instances": {"ec2_instance_ids": [EC2_ID, EC2_ID]}}, "repeated"),
    ({"engine": "neo4j", "instances": {"ec2_instance_ids": [EC2_ID], "cpu_percent": 120}}, "cpu_percent"),
    ({"engine": "neo4j", "instances": {"ec2_instance_ids": [EC2_ID], "disk_percent": 0}}, "disk_percent"),
    ({"engine": "neo4j", "instances": {"ec2_instance_ids": [EC2_ID], "disk_paths": ["var"]}}, "disk_paths"),
    ({"engine": "neo4j", "instances": {"ec2_instance_ids": [EC2_ID], "disk_paths": []}}, "disk_paths"),
    ({"engine": "neo4j", "instances": {"ec2_instance_ids": [EC2_ID],
                                       "evaluation": {"datapoints": 4, "periods": 3}}}, "datapoints"),
    ({"engine": "neo4j", "instances": {"ec2_instance_ids": [EC2_ID],
                                       "evaluation": {"period_minutes": 30, "periods": 60, "datapoints": 1}}},
     "span more than the day"),
    ({"engine": "postgres", "rds": {"instance_id": "db"}, "instances": {"max_connections": 0}}, "max_connections"),
    ({"engine": "postgres", "logs": {"log_group": "bad group!"}}, "log_group"),
    ({"engine": "postgres", "logs": {"log_group": "/x", "format": "neo4j"}}, "does not match engine"),
    ({"engine": "postgres", "logs": {"log_group": "/x", "errors": 0}}, "errors"),
    ({"engine": "postgres", "logs": {"log_group": "/x", "slow_query_ms": 5}}, "slow_query_ms"),
])
def test_monitoring_configuration_that_cannot_work_is_refused_naming_the_field(
    target: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        Target.model_validate({"name": "t", "secret_name": "s/t", **target})


def test_instance_defaults_are_the_documented_ones() -> None:
    defaults = InstanceMonitoring()
    assert (defaults.cpu_percent, defaults.memory_percent, defaults.disk_percent) == (80, 85, 85)
    assert path_slug("/") == "root" and path_slug("/var/lib/neo4j") == "var-lib-neo4j"


def test_prod_stage_monitors_orders_pg_on_rds_and_graph_main_on_ec2(synthesized: Synthesized) -> None:
    prod = synthesized.template(synthesized.stacks["prod"])
    names = {r["Properties"]["AlarmName"] for r in resources(prod, ALARM).values()}
    assert {"warden-prod-orders-pg-rds-connections-high", "warden-prod-orders-pg-rds-free-storage-low",
            "warden-prod-orders-pg-log-auth-failures"} <= names
    assert "warden-prod-graph-main-ec2-i-0a1b2c3d4e5f60718-disk-var-lib-neo4j-high" in names
    assert "warden-prod-graph-main-ec2-i-0a1b2c3d4e5f60718-network-out-high" in names
    groups = {f["Properties"]["LogGroupName"] for f in resources(prod, FILTER).values()}
    assert groups == {"/warden/prod/graph-main/neo4j", "/aws/rds/instance/orders-prod/postgresql"}
