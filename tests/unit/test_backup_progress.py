"""A long backup tells how far it got and keeps its lease: progress saved on the RUNNING record at
most every interval (with an ETA from the last backup's size), the lease renewed every quarter of
its TTL, and a lease lost mid-run stops the export: FAILED, nothing stored. In-memory stores."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import warden.backup as backup_module
from warden.backup import ProgressRecorder, _Run, run_backup
from warden.config.credentials import PostgresSecret
from warden.config.target import Engine, Target
from warden.engines.base import ExportResult
from warden.models import BackupRecord, BackupStatus
from warden.stores import Stores
from warden.stores.leases import Lease, LeaseHeld, LeaseLost
from warden.stores.memory import MemoryArtifacts, MemoryCatalog, MemoryLeases, memory_stores

SECRET = PostgresSecret(host="db.example", port=5432, username="u", password="p", dbname="app")
TARGET = Target(name="pg-main", engine=Engine.POSTGRES, secret_name="warden/test/pg-main", tls={"required": False})
CHUNK = b"x" * 1000


class SlowEngine:
    """Writes `chunks` chunks, `pause` seconds apart, calling `during(i)` before chunk i."""

    engine = Engine.POSTGRES
    method = "pg_dump"

    def __init__(self, chunks: int, pause: float, during: Callable[[int], None] | None = None) -> None:
        self.chunks, self.pause, self.during = chunks, pause, during

    def export_backup(self, secret: Any, out: Any, **options: Any) -> ExportResult:
        for i in range(self.chunks):
            if self.during is not None:
                self.during(i)
            out.write(CHUNK)
            time.sleep(self.pause)
        return ExportResult(method="pg_dump", format_version="pg_dump-custom/1.16", server_version="18.0",
                            extension="dump", counts={}, schema={}, consistency="snapshot")


def stores_with(interval_s: float) -> Stores:
    stores = memory_stores(targets=[TARGET], secrets={TARGET.secret_name: SECRET})
    return dataclasses.replace(stores, settings=stores.settings.model_copy(update={"progress_interval_s": interval_s}))


def use(monkeypatch: pytest.MonkeyPatch, engine: SlowEngine) -> None:
    monkeypatch.setattr(backup_module, "engine_for", lambda _: engine)


def running(stores: Stores) -> BackupRecord:
    (record,) = [r for r in stores.catalog.list(TARGET.name) if r.status is BackupStatus.RUNNING]
    return record


def test_progress_is_saved_at_most_every_interval_with_an_eta_from_the_last_backups_size() -> None:
    # Given a RUNNING record, and a last good backup of 10 000 bytes
    catalog = MemoryCatalog()
    record = catalog.create(BackupRecord(target="pg-main", backup_id="20261124T020000Z-0000abcd", engine="postgres",
                                         method="pg_dump", status=BackupStatus.RUNNING,
                                         started_at=datetime.now(UTC)))
    now = [100.0]
    seen: list[int] = []
    recorder = ProgressRecorder(catalog, record, interval_s=5, expected_bytes=10_000,
                                run=_Run(on_progress=seen.append), clock=lambda: now[0])
    saved: list[dict[str, Any] | None] = []
    # When writes come every second for 12 seconds, 500 bytes each
    for second in range(1, 13):
        now[0] = 100.0 + second
        recorder(500 * second)
        saved.append(catalog.get("pg-main", record.backup_id).progress)
    # Then every write is told, and the record changed at 5 s and 10 s only
    assert seen == [500 * s for s in range(1, 13)]
    assert [p and p["bytes"] for p in saved] == [None] * 4 + [2500] * 5 + [5000] * 3
    last = catalog.get("pg-main", record.backup_id).progress
    assert last is not None and last["rate_bytes_s"] == 500 and last["eta_s"] == 10.0
    assert datetime.fromisoformat(last["updated_at"]).tzinfo is not None


def test_a_running_backup_records_its_runner_and_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    stores = stores_with(interval_s=0.05)
    progress_seen: list[dict[str, Any] | None] = []
    use(monkeypatch, SlowEngine(chunks=8, pause=0.03, during=lambda i: progress_seen.append(running(stores).progress)))
    told: list[int] = []
    outcome = run_backup(stores, TARGET, actor="task", runner="fargate", on_progress=told.append)
    record = outcome.record
    assert record is not None and record.status is BackupStatus.COMPLETED and record.runner == "fargate"
    # The record said how far the export got while it ran
    recorded = [p["bytes"] for p in progress_seen if p]
    assert recorded and recorded == sorted(recorded) and recorded[-1] < 8 * len(CHUNK)
    assert told == [len(CHUNK) * i for i in range(1, 9)]
    # and ends with the whole size
    assert record.progress is not None and record.progress["bytes"] == record.size_bytes == 8 * len(CHUNK)


def test_a_short_backup_on_lambda_writes_no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    stores = stores_with(interval_s=5)
    use(monkeypatch, SlowEngine(chunks=3, pause=0))
    record = run_backup(stores, TARGET, actor="function:backup").record
    assert record is not None and record.runner == "lambda" and record.progress is None


def test_a_renewed_lease_outlives_its_ttl_and_nobody_else_takes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    stores = stores_with(interval_s=5)
    attempts: list[str] = []

    def try_to_take(i: int) -> None:
        if i == 6:  # 0.6 s in: three TTLs
            try:
                stores.leases.acquire(TARGET.name, "function:other#2", "backup", 60)
                attempts.append("taken")
            except LeaseHeld:
                attempts.append("held")

    use(monkeypatch, SlowEngine(chunks=8, pause=0.1, during=try_to_take))
    record = run_backup(stores, TARGET, actor="task", runner="fargate", lease_ttl_s=0.2, renew_lease=True,
                        execution="exec-1").record
    assert attempts == ["held"]
    assert record is not None and record.status is BackupStatus.COMPLETED
    assert stores.leases.get(TARGET.name) is None  # released at the end


def test_a_lost_lease_stops_the_export_and_the_record_is_failed_with_nothing_stored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stores = stores_with(interval_s=5)
    leases = stores.leases
    assert isinstance(leases, MemoryLeases)
    marks: list[Lease] = []

    def steal(i: int) -> None:
        if i == 0:
            marks.append(leases.leases[TARGET.name])
        if i == 2:  # someone else holds it now (as after an expiry and a takeover)
            leases.leases[TARGET.name] = Lease(target=TARGET.name, owner="function:other#3", operation="backup",
                                               expires_at=time.time() + 60)

    use(monkeypatch, SlowEngine(chunks=20, pause=0.05, during=steal))
    with pytest.raises(LeaseLost, match="lease lost: the lease of pg-main"):
        run_backup(stores, TARGET, actor="task", runner="fargate", lease_ttl_s=0.2, renew_lease=True,
                   execution="exec-2")
    (record,) = list(stores.catalog.list(TARGET.name))
    assert record.status is BackupStatus.FAILED and record.error and record.error.startswith("LeaseLost: lease lost")
    assert isinstance(stores.artifacts, MemoryArtifacts)
    assert stores.artifacts.keys() == [] and stores.artifacts.uploads == {}
    # The lease recorded the runner and execution; the other run's lease was left alone
    assert marks[0].runner == "fargate" and marks[0].execution == "exec-2"
    held = leases.get(TARGET.name)
    assert held is not None and held.owner == "function:other#3"


def test_renew_is_conditional_on_the_owner() -> None:
    leases = MemoryLeases()
    lease, _ = leases.acquire("t", "me#1", "backup", 10)
    renewed = leases.renew(lease, 100)
    assert renewed.expires_at > lease.expires_at
    leases.release(lease)
    with pytest.raises(LeaseLost, match="it is gone"):
        leases.renew(lease, 100)
    leases.acquire("t", "you#2", "backup", 10)
    with pytest.raises(LeaseLost, match="backup by you#2 holds it now"):
        leases.renew(lease, 100)
