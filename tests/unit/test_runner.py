"""The runner of a target's backup: Lambda unless the target says Fargate, or its history (or, for a
first run, its size) says a backup would not comfortably fit a Lambda invocation."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from warden.config.target import Target
from warden.errors import ConfigError
from warden.models import BackupRecord, BackupStatus
from warden.runner import LAMBDA_THROUGHPUT_BPS, choose, fargate_available, runner_for, task_input
from warden.settings import Settings
from warden.stores import Stores, Unconfigured
from warden.stores.memory import MemoryCatalog, memory_stores

BUDGET_S = 870.0
PG: dict[str, Any] = {"name": "orders", "engine": "postgres", "secret_name": "warden/dev/orders"}


def target(**fields: Any) -> Target:
    return Target.model_validate({**PG, **fields})


def backed_up(catalog: MemoryCatalog, *records: tuple[BackupStatus, str | None, float]) -> MemoryCatalog:
    """Records oldest first: (status, runner, duration_s)."""
    for i, (status, runner, duration_s) in enumerate(records):
        catalog.create(BackupRecord(target="orders", backup_id=f"2026110{i + 1}T020000Z-0000000{i}",
                                    engine="postgres", method="pg_dump", status=status,
                                    started_at=datetime(2026, 11, i + 1, 2, tzinfo=UTC), runner=runner,
                                    duration_s=duration_s))
    return catalog


@pytest.mark.parametrize("runner", ["lambda", "fargate"])
def test_a_fixed_runner_is_used_whatever_the_history_says(runner: str) -> None:
    catalog = backed_up(MemoryCatalog(), (BackupStatus.COMPLETED, "fargate", 5000.0))
    choice = choose(target(runner=runner), catalog, lambda_budget_s=BUDGET_S, estimate_bytes=10**12)
    assert choice.runner == runner and f"runner is {runner}" in choice.reason


def test_auto_stays_on_fargate_once_the_newest_good_backup_ran_there() -> None:
    catalog = backed_up(MemoryCatalog(), (BackupStatus.COMPLETED, "lambda", 10.0),
                        (BackupStatus.VERIFIED, "fargate", 30.0), (BackupStatus.FAILED, "lambda", 800.0))
    choice = choose(target(), catalog, lambda_budget_s=BUDGET_S)
    assert choice.runner == "fargate" and "ran on Fargate" in choice.reason


def test_auto_goes_to_fargate_when_the_newest_backup_took_more_than_half_the_budget() -> None:
    catalog = backed_up(MemoryCatalog(), (BackupStatus.COMPLETED, "lambda", BUDGET_S / 2 + 1))
    choice = choose(target(), catalog, lambda_budget_s=BUDGET_S)
    assert choice.runner == "fargate" and "more than half the Lambda budget of 870 s" in choice.reason


def test_auto_stays_on_lambda_when_the_newest_backup_took_under_half_the_budget() -> None:
    # An old slow backup does not count: the newest good one does
    catalog = backed_up(MemoryCatalog(), (BackupStatus.COMPLETED, None, 800.0),
                        (BackupStatus.COMPLETED, "lambda", BUDGET_S / 2 - 1))
    assert choose(target(), catalog, lambda_budget_s=BUDGET_S).runner == "lambda"


def test_a_first_backup_goes_by_the_size_estimate_at_the_conservative_lambda_throughput() -> None:
    fits = int(LAMBDA_THROUGHPUT_BPS * BUDGET_S / 2) - 1
    assert choose(target(), MemoryCatalog(), lambda_budget_s=BUDGET_S, estimate_bytes=fits).runner == "lambda"
    choice = choose(target(), MemoryCatalog(), lambda_budget_s=BUDGET_S, estimate_bytes=fits + 2)
    assert choice.runner == "fargate" and "first backup of about 8700 MiB" in choice.reason
    # A failed attempt is no history: the estimate still decides
    failed = backed_up(MemoryCatalog(), (BackupStatus.FAILED, "lambda", 860.0))
    assert choose(target(), failed, lambda_budget_s=BUDGET_S, estimate_bytes=fits + 2).runner == "fargate"


def test_a_first_backup_without_an_estimate_starts_on_lambda() -> None:
    assert choose(target(), MemoryCatalog(), lambda_budget_s=BUDGET_S).runner == "lambda"


def test_an_rds_snapshot_backup_always_runs_on_lambda() -> None:
    snapshot = target(rds={"instance_id": "orders"}, backup={"method": "rds-snapshot"})
    assert choose(snapshot, MemoryCatalog(), lambda_budget_s=1, estimate_bytes=10**15).runner == "lambda"


def test_fargate_is_available_where_the_stage_has_a_task_state_machine() -> None:
    assert not fargate_available(Settings(WARDEN_STAGE="dev"))
    arn = "arn:aws:states:eu-west-1:123456789012:stateMachine:warden-dev-task"
    assert fargate_available(Settings.from_env({"WARDEN_STAGE": "dev", "WARDEN_TASK_STATE_MACHINE_ARN": arn}))


def test_the_task_input_carries_the_command_and_the_targets_fargate_size() -> None:
    sized = target(fargate={"cpu": 2048, "memory_mib": 8192, "ephemeral_gib": 50, "timeout_hours": 2,
                            "heartbeat_s": 120})
    assert task_input(sized, "backup", "schedule", "function:warden-dev-backup") == {
        "job": "backup", "target": "orders",
        "command": ["backup", "--target", "orders", "--trigger", "schedule", "--actor", "function:warden-dev-backup"],
        "cpu": "2048", "memory": "8192", "ephemeral_gib": 50, "heartbeat_s": 120, "timeout_s": 7200,
    }


def stores_for(task_machine: str | None) -> Stores:
    stores = memory_stores()
    arn = {"task_state_machine_arn": task_machine} if task_machine else {}
    return dataclasses.replace(stores, settings=stores.settings.model_copy(update=arn))


def test_without_a_task_state_machine_auto_is_lambda_and_the_catalog_is_not_asked() -> None:
    stores = dataclasses.replace(stores_for(None), catalog=cast(Any, Unconfigured("memory", "catalog")))
    choice = runner_for(stores, target(), requested=None, lambda_budget_s=BUDGET_S)
    assert choice.runner == "lambda" and "has no Task state machine" in choice.reason


@pytest.mark.parametrize(("configured", "requested"), [("fargate", None), ("auto", "fargate")])
def test_fargate_without_a_task_state_machine_is_a_configuration_error(configured: str, requested: Any) -> None:
    with pytest.raises(ConfigError, match="has no Task state machine"):
        runner_for(stores_for(None), target(runner=configured), requested=requested, lambda_budget_s=BUDGET_S)


def test_a_request_names_the_runner_whatever_the_history_says() -> None:
    stores = stores_for("arn:aws:states:eu-west-1:123456789012:stateMachine:warden-memory-task")
    assert isinstance(stores.catalog, MemoryCatalog)
    backed_up(stores.catalog, (BackupStatus.COMPLETED, "fargate", 5000.0))
    assert runner_for(stores, target(), requested="lambda", lambda_budget_s=BUDGET_S).runner == "lambda"
    assert runner_for(stores, target(), requested=None, lambda_budget_s=BUDGET_S).runner == "fargate"


@pytest.mark.parametrize(("error", "name"), [
    ("States.HeartbeatTimeout", "TaskHeartbeatTimeout"), ("States.Timeout", "TaskTimeout"),
    ("States.TaskFailed", "TaskTaskFailed"), ("BackupFailed", "BackupFailed"), (None, "TaskFailed"),
])
def test_the_task_machine_fails_with_a_name_a_fail_state_may_raise(error: str | None, name: str) -> None:
    from warden.runner import failure_name

    assert failure_name(error) == name and not failure_name(error).startswith("States.")
