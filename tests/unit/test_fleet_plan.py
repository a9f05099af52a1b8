"""Fleet runs (warden.fleet, warden.config.fleet): which targets a run covers, what each job's
function gets, the stable offsets that spread a window, and the ok / failed / skipped summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from warden.config.fleet import FleetConfig, FleetJob, fleet_expression, runs_in_fleet
from warden.config.stage import StageConfig
from warden.config.target import Target
from warden.events import FleetInput
from warden.fleet import delay, offset_s, plan_run, summarise

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


def target(name: str, **fields: object) -> Target:
    return Target.model_validate({"name": name, "engine": "postgres", "secret_name": f"s/{name}", **fields})


def test_stage_fleet_defaults_cap_every_job_and_spread_backups_over_two_to_six() -> None:
    fleet = StageConfig(name="dev").fleet
    assert fleet.health.max_concurrency == 40 and fleet.backup.max_concurrency == 4
    assert fleet.backup.window == "02:00-06:00" and fleet.backup.window_minutes == (120, 240)
    assert fleet_expression("backup", fleet.backup) == "cron(0 2 * * ? *)"
    assert fleet_expression("health", fleet.health) == "rate(5 minutes)"


@pytest.mark.parametrize("bad", [
    {"max_concurrency": 0}, {"max_concurrency": 41}, {"max_concurrency": 2, "window": "2-6"},
    {"max_concurrency": 2, "window": "03:00-03:00"}, {"max_concurrency": 2, "schedule": "daily"},
    {"max_concurrency": 2, "typo": 1}])
def test_a_fleet_job_refuses_a_bad_cap_window_or_schedule(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FleetJob.model_validate(bad)


def test_a_window_may_wrap_midnight() -> None:
    assert FleetJob(max_concurrency=2, window="22:30-01:30").window_minutes == (22 * 60 + 30, 180)


def test_a_target_that_overrides_its_schedule_keeps_it_and_the_plan_skips_it() -> None:
    # Given one target on the default backup schedule and one on its own
    config = FleetConfig().backup
    default, own = target("pg-a"), target("pg-b", schedules={"backup": "cron(0 23 * * ? *)"})
    assert runs_in_fleet(default, "backup", config) and not runs_in_fleet(own, "backup", config)
    # When the plan runs
    plan = plan_run([default, own], "backup", config, FleetInput(), NOW)
    # Then only the default one is an item; the other is skipped, saying why
    assert [i["target"] for i in plan["items"]] == ["pg-a"]
    assert plan["skipped"] == [{"target": "pg-b", "reason": "own schedule"}]


def test_targets_are_selected_by_name_group_and_tags() -> None:
    targets = [target("pg-a", group="payments", tags={"tier": "gold"}),
               target("pg-b", group="payments", tags={"tier": "bronze"}), target("pg-c")]
    config = FleetConfig().health

    def names(**selection: object) -> list[str]:
        return [i["target"] for i in plan_run(targets, "health", config, FleetInput.model_validate(selection),
                                              NOW)["items"]]

    assert names() == ["pg-a", "pg-b", "pg-c"]
    assert names(group="payments") == ["pg-a", "pg-b"]
    assert names(group="payments", tags={"tier": "gold"}) == ["pg-a"]
    assert names(targets=["pg-c", "pg-b"]) == ["pg-b", "pg-c"]


def test_a_scheduled_backup_run_spreads_targets_over_the_window_at_stable_offsets_in_start_order() -> None:
    targets = [target(f"pg-{i:03d}") for i in range(200)]
    config = FleetConfig().backup
    request = FleetInput(trigger="schedule", scheduled_time="2026-12-03T02:00:00Z")
    plan = plan_run(targets, "backup", config, request, NOW)
    starts = [datetime.fromisoformat(i["not_before"]) for i in plan["items"]]
    assert starts == sorted(starts)
    assert all(NOW <= s < NOW + timedelta(hours=4) for s in starts)
    # spread: every hour of the window starts some backups
    assert {int((s - NOW).total_seconds() // 3600) for s in starts} == {0, 1, 2, 3}
    # stable: the same target starts at the same offset every night
    again = plan_run(targets, "backup", config, request.model_copy(update={"scheduled_time": "2026-12-04T02:00:00Z"}),
                     NOW + timedelta(days=1))
    first = {i["target"]: i["not_before"] for i in plan["items"]}
    assert all(datetime.fromisoformat(i["not_before"]) - datetime.fromisoformat(first[i["target"]])
               == timedelta(days=1) for i in again["items"])
    assert offset_s("backup", "pg-001", 14400) == offset_s("backup", "pg-001", 14400)
    # each function gets the scheduled event, so a retried delivery is the same backup
    assert plan["items"][0]["event"] == {"target": plan["items"][0]["target"], "trigger": "schedule",
                                         "scheduled_time": "2026-12-03T02:00:00Z", "requested_by": "fleet:backup"}


def test_an_operators_run_starts_every_item_at_once_and_delay_waits_only_until_due() -> None:
    plan = plan_run([target("pg-a")], "backup", FleetConfig().backup, FleetInput(), NOW)
    assert plan["items"][0]["not_before"] is None and delay(None, NOW) == {"wait_s": 0}
    assert delay((NOW + timedelta(seconds=90.2)).isoformat(), NOW) == {"wait_s": 91}
    assert delay((NOW - timedelta(seconds=5)).isoformat(), NOW) == {"wait_s": 0}


def test_drills_start_the_recovery_machine_without_promotion_and_skip_rds_snapshot_targets() -> None:
    rds = target("pg-rds", rds={"instance_id": "db1"}, backup={"method": "rds-snapshot"})
    plan = plan_run([target("pg-a"), rds], "drill", FleetConfig().drill, FleetInput(trigger="schedule"), NOW)
    assert plan["items"][0]["event"] == {"target": "pg-a", "backup_id": "latest", "promotion": "none",
                                         "approval": "auto", "requested_by": "schedule:drill"}
    assert [s["target"] for s in plan["skipped"]] == ["pg-rds"]


def test_the_summary_counts_ok_failed_and_skipped_per_target() -> None:
    plan = {"skipped": [{"target": "pg-c", "reason": "own schedule"}]}
    results = [{"target": "pg-b", "outcome": "failed", "error": "DatabaseUnavailable"},
               {"target": "pg-a", "outcome": "ok"}]
    assert summarise("health", plan, results) == {
        "job": "health", "counts": {"ok": 1, "failed": 1, "skipped": 1}, "ok": ["pg-a"],
        "failed": [{"target": "pg-b", "error": "DatabaseUnavailable"}],
        "skipped": [{"target": "pg-c", "reason": "own schedule"}]}
