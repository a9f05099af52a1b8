"""Where a recovery restores and validates (docs/fargate.md): Preflight puts the runner and, for
Fargate, the tasks' sizes on the plan; `python -m warden.task recovery` runs one step, heartbeats
while it runs and reports the step's result or its error by name. In-memory stores, a fake engine,
a fake Step Functions client."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.unit.test_state_logic import PRODUCTION, STAGING, TARGET, Clock, FakeEngine
from warden import backup as backup_module
from warden import recovery, task_recovery
from warden.backup import run_backup, verify_backup
from warden.config.target import Target
from warden.errors import ConfigError, DatabaseUnavailable
from warden.models import BackupRecord, BackupStatus, RecoveryState, RecoveryStatus
from warden.runner import LAMBDA_RESTORE_BPS, RECOVERY_STEP_BUDGET_S, choose_recovery, task_sizes
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.memory import MemoryCatalog, memory_stores
from warden.task import main

TASK_MACHINE = {"task_state_machine_arn": "arn:aws:states:eu-west-1:123456789012:stateMachine:warden-t-task"}


@pytest.fixture(autouse=True)
def task_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Powertools settings a task gets: the task's logger, imported here first, builds
    warden.observability's Metrics with them, as the handler tests expect it built."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "warden")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Warden")


def record(runner: str | None = "lambda", size_bytes: int | None = 1000, day: int = 1) -> BackupRecord:
    return BackupRecord(target=TARGET.name, backup_id=f"202611{day:02d}T020000Z-0000000{day}", engine="postgres",
                        method="pg_dump", status=BackupStatus.VERIFIED, runner=runner, size_bytes=size_bytes,
                        started_at=datetime(2026, 11, day, 2, tzinfo=UTC))


def target(**fields: Any) -> Target:
    return Target.model_validate({**TARGET.model_dump(mode="json"), **fields})


# -- the choice ---------------------------------------------------------------------------------

@pytest.mark.parametrize("runner", ["lambda", "fargate"])
def test_a_fixed_runner_is_used_whatever_the_backup_says(runner: str) -> None:
    choice = choose_recovery(target(runner=runner), MemoryCatalog(), record("fargate", 10**12), available=True)
    assert choice.runner == runner and f"runner is {runner}" in choice.reason


def test_runner_fargate_where_the_stage_cannot_start_tasks_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="runner fargate, but the stage has no Task state machine"):
        choose_recovery(target(runner="fargate"), MemoryCatalog(), record(), available=False)


def test_auto_restores_on_lambda_where_the_stage_cannot_start_tasks_whatever_the_size() -> None:
    choice = choose_recovery(target(), MemoryCatalog(), record("fargate", 10**12), available=False)
    assert choice.runner == "lambda" and "cannot start tasks" in choice.reason


def test_auto_restores_on_fargate_a_backup_that_ran_on_fargate() -> None:
    choice = choose_recovery(target(), MemoryCatalog(), record("fargate", 10), available=True)
    assert choice.runner == "fargate" and "ran on Fargate" in choice.reason


def test_auto_restores_on_fargate_when_the_targets_newest_good_backup_ran_there() -> None:
    catalog = MemoryCatalog()
    old, newest = record("lambda", 10, day=1), record("fargate", 10, day=2)
    catalog.create(old)
    catalog.create(newest)
    choice = choose_recovery(target(), catalog, old, available=True)
    assert choice.runner == "fargate" and newest.backup_id in choice.reason


def test_auto_restores_on_fargate_a_backup_too_big_for_half_the_lambda_budget() -> None:
    half = int(LAMBDA_RESTORE_BPS * RECOVERY_STEP_BUDGET_S / 2)
    big = choose_recovery(target(), MemoryCatalog(), record("lambda", half + LAMBDA_RESTORE_BPS), available=True)
    assert big.runner == "fargate" and "more than half the Lambda budget of 900 s" in big.reason
    small = choose_recovery(target(), MemoryCatalog(), record("lambda", half), available=True)
    assert small.runner == "lambda" and "fits the Lambda budget" in small.reason
    unknown = choose_recovery(target(), MemoryCatalog(), record(None, None), available=True)
    assert unknown.runner == "lambda"


def test_task_sizes_are_what_runtask_takes_and_the_disk_holds_the_spooled_dump() -> None:
    sized = target(fargate={"cpu": 2048, "memory_mib": 8192, "ephemeral_gib": 30, "heartbeat_s": 120})
    sizes = task_sizes(sized)
    assert sizes == {"cpu": "2048", "memory": "8192", "ephemeral_gib": 30, "heartbeat_s": 120, "timeout_s": 43200}
    assert all(type(sizes[k]) is int for k in ("ephemeral_gib", "heartbeat_s", "timeout_s"))
    assert task_sizes(sized, spool_bytes=10 * 2**30)["ephemeral_gib"] == 30  # fits the configured disk
    assert task_sizes(sized, spool_bytes=30 * 2**30)["ephemeral_gib"] == 35  # 33 GiB and the image
    assert task_sizes(sized, spool_bytes=50 * 2**30)["ephemeral_gib"] == 57  # 55 GiB and the image
    assert task_sizes(sized, spool_bytes=500 * 2**30)["ephemeral_gib"] == 200  # Fargate's most


# -- Preflight ----------------------------------------------------------------------------------

@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    monkeypatch.setattr(backup_module, "engine_for", lambda _: fake)
    monkeypatch.setattr(recovery, "engine_for", lambda _: fake)
    return fake


def stores_with(the_target: Target, clock: Clock, **settings: str) -> Stores:
    stores = memory_stores(targets=[the_target], clock=clock,
                           secrets={TARGET.secret_name: PRODUCTION, "warden/test/pg-main-staging": STAGING})
    return dataclasses.replace(stores, settings=stores.settings.model_copy(update=settings))


def backed_up(stores: Stores, the_target: Target) -> str:
    outcome = run_backup(stores, the_target, actor="test")
    assert outcome.record is not None
    verify_backup(stores, the_target.name, outcome.record.backup_id, actor="test")
    return outcome.record.backup_id


def test_preflight_plans_fargate_with_the_task_sizes_and_a_lease_for_both_tasks(clock: Clock,
                                                                              engine: FakeEngine) -> None:
    on_fargate = target(runner="fargate", fargate={"heartbeat_s": 120, "timeout_hours": 2})
    stores = stores_with(on_fargate, clock, **TASK_MACHINE)
    backed_up(stores, on_fargate)
    plan = recovery.preflight(stores, {"target": TARGET.name, "promotion": "swap"}, "arn:x:execution:m:exec-1")
    assert plan.runner == "fargate"
    assert plan.task == task_sizes(on_fargate) and plan.task["timeout_s"] == 7200
    lease = stores.leases.get(TARGET.name)
    assert lease is not None
    assert lease.expires_at - clock.now == on_fargate.recovery.approval_timeout_s + 4 * 3600 + 2 * 7200
    (audited,) = [e for e in stores.audit.tail(TARGET.name) if e.operation == "recovery" and e.step == "preflight"]
    assert audited.details["runner"] == "fargate"
    assert audited.details["runner_reason"] == "the target's runner is fargate"


def test_preflight_plans_lambda_for_a_small_auto_target_and_such_a_plan_reads_back(clock: Clock,
                                                                                  engine: FakeEngine) -> None:
    stores = stores_with(TARGET, clock, **TASK_MACHINE)
    backed_up(stores, TARGET)
    plan = recovery.preflight(stores, {"target": TARGET.name}, "exec-2")
    assert (plan.runner, plan.task) == ("lambda", None)
    assert recovery.Plan.from_event(json.loads(json.dumps(plan.as_dict()))) == plan


def test_a_plan_made_before_runners_is_a_lambda_plan() -> None:
    old = {"target": "pg-main", "backup_id": "b", "promotion": "none", "approval": "auto", "execution": "e",
           "staging": {"kind": "database", "name": "s"}}
    plan = recovery.Plan.from_event(old)
    assert (plan.runner, plan.task, plan.source) == ("lambda", None, "primary")


def test_preflight_refuses_runner_fargate_where_the_stage_cannot_start_tasks_and_takes_no_lease(
        clock: Clock, engine: FakeEngine) -> None:
    on_fargate = target(runner="fargate")
    stores = stores_with(on_fargate, clock)
    backed_up(stores, on_fargate)
    with pytest.raises(recovery.RecoveryRefused, match="runner fargate"):
        recovery.preflight(stores, {"target": TARGET.name}, "exec-3")
    assert stores.leases.get(TARGET.name) is None


def test_rollback_stops_the_executions_task_on_a_stage_that_starts_tasks(
        clock: Clock, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list[tuple[str, str]] = []

    def stop_task_runs(settings: Settings, execution: str, reason: str) -> list[str]:
        stopped.append((execution, reason))
        return ["arn:aws:ecs:eu-west-1:123456789012:task/warden-t/abc"]

    monkeypatch.setattr(recovery, "stop_task_runs", stop_task_runs)
    stores = stores_with(target(runner="fargate"), clock, **TASK_MACHINE, task_cluster="warden-t")
    backed_up(stores, stores.targets.get(TARGET.name))
    plan = recovery.preflight(stores, {"target": TARGET.name}, "arn:aws:states:eu-west-1:1:execution:m:exec-4")
    result = recovery.rollback(stores, plan, {"Error": "States.HeartbeatTimeout", "Cause": ""})
    # the task group is the execution's name; the plan holds its ARN
    assert [execution for execution, _ in stopped] == ["exec-4"]
    assert result["stopped_tasks"] == ["arn:aws:ecs:eu-west-1:123456789012:task/warden-t/abc"]


# -- the task -----------------------------------------------------------------------------------

PLAN = recovery.Plan(target="pg-main", backup_id="20261101T020000Z-00000001", promotion="swap", approval="auto",
                     execution="arn:x:execution:m:exec-5", staging={"kind": "database", "name": "app_staging"},
                     runner="fargate", task={"cpu": "1024", "memory": "4096", "ephemeral_gib": 21,
                                             "heartbeat_s": 60, "timeout_s": 3600})


class FakeStepFunctions:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def send_task_heartbeat(self, **kwargs: Any) -> None:
        self.calls.append(("heartbeat", kwargs))

    def send_task_success(self, **kwargs: Any) -> None:
        self.calls.append(("success", kwargs))

    def send_task_failure(self, **kwargs: Any) -> None:
        self.calls.append(("failure", kwargs))


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> FakeStepFunctions:
    fake = FakeStepFunctions()
    monkeypatch.setattr("warden.stores.clients.aws_client", lambda service, **_: fake)
    return fake


@pytest.fixture
def task_stores(monkeypatch: pytest.MonkeyPatch) -> Stores:
    """What the task's Stores.from_settings gives: in-memory stores holding PLAN's recovery record."""
    stores = memory_stores(targets=[TARGET])
    stores.recovery_state.put(RecoveryState(target=PLAN.target, status=RecoveryStatus.RECOVERING,
                                            execution=PLAN.execution, backup_id=PLAN.backup_id))
    monkeypatch.setattr(Stores, "from_settings", classmethod(lambda cls, settings: stores))
    return stores


ENVIRON = {"WARDEN_STAGE": "t", "WARDEN_TASK_TOKEN": "token-1"}


@pytest.mark.parametrize(("argv", "message"), [
    (["recovery", "--plan", "{}"], "--step"),
    (["recovery", "--step", "promote", "--plan", "{}"], "--step: invalid choice: 'promote'"),
    (["recovery", "--step", "restore"], "--plan"),
    (["recovery", "--step", "restore", "--plan", "{not json"], "--plan: not a recovery plan"),
    (["recovery", "--step", "restore", "--plan", '{"target": "pg-main"}'], "--plan: not a recovery plan"),
])
def test_bad_recovery_arguments_exit_2_with_the_reason(argv: list[str], message: str, sfn: FakeStepFunctions,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv, environ=ENVIRON) == 2
    assert message in capsys.readouterr().err


def test_a_bad_plan_is_reported_to_the_state_machine(sfn: FakeStepFunctions) -> None:
    assert main(["recovery", "--step", "validate", "--plan", "[]"], environ=ENVIRON) == 2
    ((kind, sent),) = sfn.calls
    assert kind == "failure" and sent["error"] == "BadRequest" and sent["taskToken"] == "token-1"


def test_a_step_sends_its_result_as_the_function_returns_it(sfn: FakeStepFunctions, task_stores: Stores,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[recovery.Plan] = []
    # an earlier attempt's error (a retried DatabaseUnavailable) is not the recovery's once the step succeeds
    task_stores.recovery_state.update(PLAN.target, PLAN.execution, error="DatabaseUnavailable: no answer")

    def restore(stores: Stores, plan: recovery.Plan, replica: Any) -> dict[str, Any]:
        assert stores is task_stores
        seen.append(plan)
        return {"counts": {"public.items": 3}, "seconds": 0.5}

    monkeypatch.setattr(recovery, "restore", restore)
    argv = ["recovery", "--step", "restore", "--plan", json.dumps(PLAN.as_dict())]
    assert main(argv, environ=ENVIRON) == 0
    assert seen == [PLAN]
    assert sfn.calls[-1] == ("success", {"taskToken": "token-1",
                                         "output": json.dumps({"counts": {"public.items": 3}, "seconds": 0.5})})
    assert task_stores.recovery_state.get(PLAN.target).error is None


def test_a_failed_step_sends_its_error_type_name_for_the_states_retry_and_catch(
        sfn: FakeStepFunctions, task_stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    def validate(stores: Stores, plan: recovery.Plan, replica: Any) -> dict[str, Any]:
        raise DatabaseUnavailable("staging did not answer")

    monkeypatch.setattr(recovery, "validate", validate)
    assert main(["recovery", "--step", "validate", "--plan", json.dumps(PLAN.as_dict())], environ=ENVIRON) == 1
    assert sfn.calls[-1] == ("failure", {"taskToken": "token-1", "error": "DatabaseUnavailable",
                                         "cause": "staging did not answer"})
    # and on the recovery record, for a Rollback that gets the error without its cause
    assert task_stores.recovery_state.get(PLAN.target).error == "DatabaseUnavailable: staging did not answer"


def test_a_validation_heartbeats_while_it_runs(sfn: FakeStepFunctions, task_stores: Stores,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # (a restore heartbeats while it makes progress: tests/unit/test_restore_heartbeats.py)
    def validate(stores: Stores, plan: recovery.Plan, replica: Any) -> dict[str, Any]:
        time.sleep(0.5)  # bounded and short: no progress reading
        return {"counts": {}}

    monkeypatch.setattr(recovery, "validate", validate)
    monkeypatch.setattr(task_recovery, "HEARTBEAT_MAX_S", 0.05)
    assert main(["recovery", "--step", "validate", "--plan", json.dumps(PLAN.as_dict())], environ=ENVIRON) == 0
    kinds = [kind for kind, _ in sfn.calls]
    assert kinds.count("heartbeat") >= 4 and kinds[-1] == "success"
