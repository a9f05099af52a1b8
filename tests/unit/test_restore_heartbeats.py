"""A restore on Fargate heartbeats while its progress reading changes (warden.task_recovery,
warden.restore_progress): always the first heartbeat, then one per changed reading; a reading that
stands still, fails or hangs is no progress. In-memory stores, a fake Step Functions client and
scripted readings; the probes themselves read real databases in
tests/integration/test_restore_progress_probes.py."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.unit.test_recovery_runner import ENVIRON, PLAN, FakeStepFunctions
from tests.unit.test_recovery_runner import sfn as sfn  # fixtures
from tests.unit.test_recovery_runner import task_environment as task_environment
from tests.unit.test_recovery_runner import task_stores as task_stores
from warden import recovery, restore_progress, task_recovery
from warden.engines.base import RestoreFailed
from warden.errors import DatabaseUnavailable
from warden.models import RecoveryStatus
from warden.stores import Stores
from warden.task import main

INTERVAL_S = 0.05


class ScriptedProbe:
    """Readings from `values` (the last one repeated), or what `read` does."""

    def __init__(self, values: list[Hashable] | None = None, read: Callable[[], Hashable] | None = None) -> None:
        self.values = list(values or [])
        self._read = read
        self.reads = 0
        self.closed = threading.Event()

    def read(self) -> Hashable:
        self.reads += 1
        if self._read is not None:
            return self._read()
        return self.values[min(self.reads, len(self.values)) - 1]

    def close(self) -> None:
        self.closed.set()


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Callable[[ScriptedProbe], ScriptedProbe]:
    """Installs a scripted probe as the restore's progress (its thread's I/O and its database)."""
    monkeypatch.setattr(task_recovery, "HEARTBEAT_MAX_S", INTERVAL_S)

    def install(scripted: ScriptedProbe) -> ScriptedProbe:
        monkeypatch.setattr(restore_progress, "StepProgress", lambda worker, target: scripted)
        return scripted

    return install


def restoring_until(monkeypatch: pytest.MonkeyPatch, scripted: ScriptedProbe, reads: int) -> None:
    """A restore that lasts until the probe was read `reads` times (however slow the machine), and
    two intervals more."""
    def restore(stores: Stores, plan: recovery.Plan, replica: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while scripted.reads < reads and time.monotonic() < deadline:
            time.sleep(INTERVAL_S / 5)
        time.sleep(2 * INTERVAL_S)
        return {"counts": {"public.items": 3}}

    monkeypatch.setattr(recovery, "restore", restore)


def run_restore() -> int:
    return main(["recovery", "--step", "restore", "--plan", json.dumps(PLAN.as_dict())], environ=ENVIRON)


def heartbeats(sfn: FakeStepFunctions) -> int:
    return [kind for kind, _ in sfn.calls].count("heartbeat")


def test_a_restore_heartbeats_while_its_reading_changes_and_not_while_it_stands_still(
        sfn: FakeStepFunctions, task_stores: Stores, probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a restore whose reading changes twice, then stands still (pg_restore behind a lock)
    scripted = probe(ScriptedProbe([1, 2, 3]))
    restoring_until(monkeypatch, scripted, 10)
    # When it runs
    assert run_restore() == 0
    # Then one heartbeat per distinct reading (the first counted, as the first heartbeat always is),
    # none for the many readings after: a late read can add the first heartbeat to the three
    assert scripted.reads >= 10
    assert 3 <= heartbeats(sfn) <= 4, sfn.calls
    assert sfn.calls[-1][0] == "success"
    assert scripted.closed.wait(2)


def test_the_first_heartbeat_is_sent_while_the_probe_connects(
        sfn: FakeStepFunctions, task_stores: Stores, probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a probe whose first read takes a few intervals (a connection opening), then stands still
    opened = threading.Timer(4 * INTERVAL_S, lambda: None)
    opened.start()

    def connect_then_read() -> Hashable:
        opened.join()
        return 1

    restoring_until(monkeypatch, probe(ScriptedProbe(read=connect_then_read)), 4)
    # When the restore runs
    assert run_restore() == 0
    # Then the first interval's heartbeat went before any reading, the first reading's once it came,
    # and none after
    assert heartbeats(sfn) == 2, sfn.calls


def test_a_probe_that_fails_is_no_progress_and_is_logged_once(
        sfn: FakeStepFunctions, task_stores: Stores, probe: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # Given a staging database that does not answer the probe
    def unreachable() -> Hashable:
        raise DatabaseUnavailable("PostgreSQL at staging.example:5432 refused or timed out: connection refused")

    scripted = probe(ScriptedProbe(read=unreachable))
    restoring_until(monkeypatch, scripted, 5)
    # When the restore runs
    with caplog.at_level(logging.WARNING):
        assert run_restore() == 0
    # Then only the first heartbeat went, and the failure was logged once, by type and message
    assert scripted.reads >= 5 and heartbeats(sfn) == 1
    failed = [r for r in caplog.records if r.getMessage() == "progress probe failed: no progress counted"]
    assert len(failed) == 1
    assert failed[0].__dict__["error"] == ("DatabaseUnavailable: PostgreSQL at staging.example:5432 refused or "
                                           "timed out: connection refused")
    withheld = [r for r in caplog.records if r.getMessage() == "task recovery step made no progress: "
                                                                "heartbeats withheld"]
    assert len(withheld) == 1


def test_a_probe_read_that_hangs_is_no_progress_and_holds_up_nothing(
        sfn: FakeStepFunctions, task_stores: Stores, probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a probe whose second read never returns (a server that stopped answering)
    hung = threading.Event()
    values = iter([1])
    def restore(stores: Stores, plan: recovery.Plan, replica: Any) -> dict[str, Any]:
        time.sleep(12 * INTERVAL_S)
        return {"counts": {}}

    monkeypatch.setattr(recovery, "restore", restore)
    probe(ScriptedProbe(read=lambda: next(values, None) or hung.wait(30)))
    # When the restore runs
    started = time.monotonic()
    try:
        assert run_restore() == 0
        took = time.monotonic() - started
    finally:
        hung.set()
    # Then the step's outcome came when the restore ended, after the first heartbeat only
    assert took < 12 * INTERVAL_S + 1.0
    assert heartbeats(sfn) == 1 and sfn.calls[-1][0] == "success"


def test_a_restore_step_forgets_an_earlier_attempts_error_when_it_starts(
        sfn: FakeStepFunctions, task_stores: Stores, probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an earlier attempt that failed with a retried error
    task_stores.recovery_state.update(PLAN.target, PLAN.execution, error="DatabaseUnavailable: no answer")
    seen: list[str | None] = []

    def restore(stores: Stores, plan: recovery.Plan, replica: Any) -> dict[str, Any]:
        seen.append(stores.recovery_state.get(plan.target).error)
        return {"counts": {}}

    probe(ScriptedProbe([1]))
    monkeypatch.setattr(recovery, "restore", restore)
    # When the retry starts
    assert run_restore() == 0
    # Then the record no longer holds the earlier error while it runs: a heartbeat timeout of this
    # attempt reaches Rollback without a cause, and Rollback describes it by the record's error
    assert seen == [None]


def test_a_restore_that_fails_after_its_rollback_leaves_the_rollbacks_reason_on_the_record(
        sfn: FakeStepFunctions, task_stores: Stores, probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a restore whose state timed out on its heartbeat: Rollback marked the recovery failed and
    # dropped staging, and pg_restore fails with its connection gone
    def restore(stores: Stores, plan: recovery.Plan, replica: Any) -> dict[str, Any]:
        stores.recovery_state.update(plan.target, plan.execution, status=RecoveryStatus.RECOVERY_FAILED,
                                     error="States.HeartbeatTimeout: ", finished_at=datetime.now(UTC))
        raise RestoreFailed("pg_restore into app_staging failed (exit 1): server closed the connection")

    probe(ScriptedProbe([1]))
    monkeypatch.setattr(recovery, "restore", restore)
    # When the task reports the step's failure
    assert run_restore() == 1
    # Then the record still says why the recovery failed
    assert task_stores.recovery_state.get(PLAN.target).error == "States.HeartbeatTimeout: "
    assert sfn.calls[-1][0] == "failure"
