"""Alarm events → remediation actions: every fleet alarm resolves to its breaching target and that
target's action, a per-target instance alarm maps to its action; malformed, foreign, unknown and
back-to-OK events are ignored (and never reach a target or a database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from warden import fleet_alarms
from warden.config.operations import ActionConfig, RemediationConfig
from warden.config.target import Target
from warden.events import MaintenanceRequest
from warden.remediation import ACTIONS, parse_alarm, remediate, remediate_fleet, remediation_of
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.memory import memory_stores

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def with_alarm(event: dict[str, Any], name: str) -> dict[str, Any]:
    return {**event, "detail": {**event["detail"], "alarmName": name}}


FLEET_CASES = [
    ("remediate_pg_long_running_queries", "pg-long-running-queries", "pg-local", "cancel_long_queries"),
    ("remediate_pg_connections_saturated", "pg-connections-saturated", "pg-local", "end_idle_in_transaction"),
    ("remediate_neo4j_long_running_transactions", "neo4j-long-running-transactions", "graph-local",
     "terminate_long_transactions"),
    ("remediate_backup_too_old", "backup-too-old", "pg-local", "start_backup"),
    ("remediate_backup_failed", "backup-failed", "pg-local", "start_backup"),
    ("remediate_backup_storage_over_budget", "backup-storage-over-budget", "pg-local", "prune"),
    ("remediate_unhealthy", "unhealthy", "pg-local", "recheck_health"),
]


@pytest.mark.parametrize(("event", "condition", "target", "action"), FLEET_CASES)
def test_each_fleet_alarm_resolves_to_its_breaching_target_and_action(
        event: str, condition: str, target: str, action: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # remediate_fleet makes its client (never called)
    # Given the stage's fleet alarm of the condition going into ALARM, and one target breaching it
    name = fleet_alarms.alarm_name("local", condition)
    c = fleet_alarms.CONDITIONS[condition]
    stores = memory_stores(stage="local", targets=[
        Target(name="pg-local", engine="postgres", secret_name="s/pg"),
        Target(name="graph-local", engine="neo4j", secret_name="s/graph")])

    def resolver(_client: Any, alarm: str, stage: str, **_: Any) -> list[fleet_alarms.Breach]:
        assert (alarm, stage) == (name, "local")
        return [fleet_alarms.Breach(target, condition, c.check, (2.0,))]

    # When remediation handles it (every action off by default)
    result = remediate_fleet(stores, fleet_alarms.parse_name(name, "local"), with_alarm(load_event(event), name),
                             actor="test", resolver=resolver)

    # Then it names the target and the failing check, and runs the condition's action for that target
    assert result.outcome == "ok" and target in result.why and c.check in result.summary
    (ran,) = result.details["results"]
    assert (ran["target"], ran["action"], ran["outcome"]) == (target, action, "disabled")
    assert [e.step for e in stores.audit.entries] == [action]


def test_an_instance_alarm_of_a_target_still_maps_to_its_action_and_target() -> None:
    # per target only instance and log alarms remain, e.g. RDS connections
    event = with_alarm(load_event("remediate_pg_connections_saturated"), "warden-local-pg-local-rds-connections-high")
    alarm, why = parse_alarm(event, "local")
    assert alarm is not None, why
    assert (alarm.target, alarm.action, alarm.state) == ("pg-local", "end_idle_in_transaction", "ALARM")
    assert alarm.reason.startswith("Threshold Crossed")


def test_hyphenated_target_names_split_on_the_longest_known_suffix() -> None:
    event = with_alarm(load_event("remediate_backup_failed"), "warden-local-orders-db-backup-failed")
    alarm, _ = parse_alarm(event, "local")
    assert alarm is not None and (alarm.target, alarm.suffix) == ("orders-db", "backup-failed")


@pytest.mark.parametrize(("event", "stage", "expected"), [
    ("remediate_bad_input", "local", "not a CloudWatch alarm state change"),
    ("remediate_unknown_alarm", "local", "has no remediation action"),
    ("remediate_back_to_ok", "local", "went to OK"),
    ("remediate_pg_long_running_queries", "prod", "is not one of stage 'prod'"),
])
def test_malformed_unknown_foreign_and_ok_events_are_ignored(event: str, stage: str, expected: str) -> None:
    alarm, why = parse_alarm(load_event(event), stage)
    assert alarm is None and expected in why


@pytest.mark.parametrize("junk", [None, [], "ALARM", {}, {"detail-type": "EC2 Instance State-change Notification",
                                                            "source": "aws.ec2", "detail": {}}])
def test_junk_never_raises(junk: Any) -> None:
    alarm, why = parse_alarm(junk, "local")
    assert alarm is None and why


def test_an_ignored_event_loads_no_target_and_touches_nothing() -> None:
    # Given a loader that fails the test if called
    def no_loader(*_: Any) -> Any:
        raise AssertionError("an ignored event must not load a target")

    # When
    result = remediate(Stores.from_settings(Settings(WARDEN_STAGE="local")), load_event("remediate_unknown_alarm"),
                       actor="test", target_loader=no_loader, secret_loader=no_loader)

    # Then
    assert result.outcome == "ignored" and result.target is None


def test_every_action_is_off_by_default_and_the_table_names_real_config_fields() -> None:
    config = remediation_of(object())
    assert config == RemediationConfig()
    for action in {a.name for a in ACTIONS.values()}:
        assert getattr(config, action) == ActionConfig(enabled=False, dry_run=False, max_per_hour=2)


def test_config_forbids_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        RemediationConfig.model_validate({"cancel_long_querys": {"enabled": True}})


@pytest.mark.parametrize("path", sorted(EVENTS.glob("maintenance_*.json")), ids=lambda p: p.stem)
def test_sample_maintenance_events_match_the_request_model(path: Path) -> None:
    event = json.loads(path.read_text())
    if "bad_input" in path.stem:
        with pytest.raises(ValidationError):
            MaintenanceRequest.model_validate(event)
    else:
        assert MaintenanceRequest.model_validate(event).target == "pg-local"
