"""The state logic against the in-memory stores (warden.stores.memory): the backup record's
lifecycle, lease takeover, prune decisions applied, recovery state transitions. No AWS, no database:
the engine is a fake that writes known bytes (or fails)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from warden import backup as backup_module
from warden import recovery
from warden.backup import BACKUP_LEASE_S, run_backup, verify_backup
from warden.config.credentials import PostgresSecret
from warden.config.retention import RetentionPolicy
from warden.config.target import Engine, Target
from warden.engines.base import ExportResult, RestoreResult
from warden.models import BackupRecord, BackupStatus, RecoveryStatus
from warden.prune import run_prune
from warden.stores import Stores
from warden.stores.catalog import new_backup_id, object_prefix
from warden.stores.leases import LeaseHeld
from warden.stores.memory import MemoryArtifacts, MemoryAudit, memory_stores
from warden.stores.recovery_state import NotTheOwner

DATA = b"fake dump " * 1000
COUNTS = {"public.items": 3}
PRODUCTION = PostgresSecret(host="db.example", port=5432, username="u", password="p", dbname="app")
STAGING = PostgresSecret(host="staging.example", port=5432, username="u", password="p", dbname="app")
TARGET = Target(name="pg-main", engine=Engine.POSTGRES, secret_name="warden/test/pg-main", tls={"required": False},
                recovery={"staging_secret_name": "warden/test/pg-main-staging"})


class FakeEngine:
    """A DatabaseEngine that exports DATA (or raises) and remembers what it restored."""

    engine = Engine.POSTGRES
    method = "pg_dump"

    def __init__(self, *, fail_export: Exception | None = None, counts: dict[str, int] | None = None) -> None:
        self.fail_export, self.counts = fail_export, dict(COUNTS if counts is None else counts)
        self.exports = 0
        self.restored: list[tuple[str, bytes]] = []

    def export_backup(self, secret: Any, out: Any, **options: Any) -> ExportResult:
        self.exports += 1
        out.write(DATA[:4000])
        if self.fail_export is not None:
            raise self.fail_export
        out.write(DATA[4000:])
        return ExportResult(method="pg_dump", format_version="pg_dump-custom/1.16", server_version="18.0",
                            extension="dump", counts=dict(COUNTS), schema={}, consistency="snapshot")

    def restore_backup(self, secret: Any, chunks: Iterable[bytes], manifest: Mapping[str, Any], *,
                       replace: bool = False, **options: Any) -> RestoreResult:
        self.restored.append((secret.host, b"".join(chunks)))
        return RestoreResult(counts=dict(manifest["counts"]), duration_s=0.01)

    def check_reachable(self, secret: Any, *, timeout: float = 5.0) -> None:
        return None

    def server_info(self, secret: Any, *, timeout: float = 5.0) -> Any:
        return None

    def count_objects(self, secret: Any) -> dict[str, int]:
        return dict(self.counts)

    def compare_indexes(self, secret: Any, manifest: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        return [], []


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stores(clock: Clock) -> Stores:
    return memory_stores(targets=[TARGET], clock=clock,
                         secrets={TARGET.secret_name: PRODUCTION, "warden/test/pg-main-staging": STAGING})


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    monkeypatch.setattr(backup_module, "engine_for", lambda _: fake)
    monkeypatch.setattr(recovery, "engine_for", lambda _: fake)
    return fake


def artifacts(stores: Stores) -> MemoryArtifacts:
    assert isinstance(stores.artifacts, MemoryArtifacts)
    return stores.artifacts


def steps(stores: Stores) -> list[tuple[str, str, str]]:
    assert isinstance(stores.audit, MemoryAudit)
    return [(e.operation, e.step, e.outcome) for e in stores.audit.entries]


# -- the backup record's lifecycle ----------------------------------------------------------------

def test_a_backup_goes_from_running_to_completed_with_its_object_manifest_and_audit(
        stores: Stores, engine: FakeEngine) -> None:
    # When
    outcome = run_backup(stores, TARGET, actor="test")
    # Then
    record = outcome.record
    assert record is not None and record.status is BackupStatus.COMPLETED
    assert record.sha256 == hashlib.sha256(DATA).hexdigest() and record.size_bytes == len(DATA)
    assert record.upload_id is None and record.counts == COUNTS
    assert artifacts(stores).keys() == sorted([record.data_key, record.manifest_key])
    assert artifacts(stores).get_bytes(record.data_key or "") == DATA
    assert stores.catalog.get(TARGET.name, record.backup_id) == record
    assert steps(stores) == [("backup", "start", "ok"), ("backup", "finish", "ok")]
    assert stores.leases.get(TARGET.name) is None  # released


def test_a_failing_export_leaves_the_record_failed_with_the_reason_and_no_object(
        stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an engine whose export fails after writing some bytes
    fake = FakeEngine(fail_export=RuntimeError("pg_dump exited with 1: connection lost"))
    monkeypatch.setattr(backup_module, "engine_for", lambda _: fake)
    # When
    with pytest.raises(RuntimeError, match="connection lost"):
        run_backup(stores, TARGET, actor="test")
    # Then the record is FAILED with the reason, the upload aborted: nothing stored, nothing uploading
    (record,) = list(stores.catalog.list(TARGET.name))
    assert record.status is BackupStatus.FAILED
    assert record.error == "RuntimeError: pg_dump exited with 1: connection lost"
    assert record.upload_id is None and record.data_key is None
    assert artifacts(stores).keys() == [] and artifacts(stores).uploads == {}
    assert steps(stores) == [("backup", "start", "ok"), ("backup", "fail", "failed")]
    assert stores.leases.get(TARGET.name) is None


def test_a_live_lease_means_already_running_and_changes_nothing(stores: Stores, engine: FakeEngine) -> None:
    # Given another run holding the target's lease
    stores.leases.acquire(TARGET.name, "function:other#1", "backup", 300)
    # When
    outcome = run_backup(stores, TARGET, actor="test")
    # Then
    assert outcome.record is None and outcome.already_running and "function:other#1" in outcome.already_running
    assert list(stores.catalog.list(TARGET.name)) == [] and engine.exports == 0
    assert steps(stores) == [("backup", "start", "skipped")]


def test_a_crashed_runs_expired_lease_is_taken_over_and_its_running_record_and_upload_cleaned_up(
        stores: Stores, engine: FakeEngine, clock: Clock) -> None:
    # Given a run that died mid-upload: its lease, its RUNNING record, its open multipart upload
    started = datetime.now(UTC) - timedelta(hours=1)
    crashed_id = new_backup_id(started)
    key = f"{object_prefix(TARGET.name, crashed_id)}data.dump"
    upload = artifacts(stores).start_upload(key)
    upload.put_part(1, b"half a dump")
    stores.catalog.create(BackupRecord(target=TARGET.name, backup_id=crashed_id, engine=Engine.POSTGRES,
                                       method="pg_dump", status=BackupStatus.RUNNING, started_at=started,
                                       upload_id=upload.upload_id))
    stores.leases.acquire(TARGET.name, "function:dead#1", "backup", BACKUP_LEASE_S, backup_id=crashed_id,
                          upload_key=key, upload_id=upload.upload_id)
    # When its lease has expired and the next backup runs
    clock.now += BACKUP_LEASE_S + 1
    outcome = run_backup(stores, TARGET, actor="test")
    # Then the crashed record is FAILED, its upload gone, and the new backup COMPLETED
    crashed = stores.catalog.get(TARGET.name, crashed_id)
    assert crashed.status is BackupStatus.FAILED and crashed.error and "function:dead#1" in crashed.error
    assert upload.upload_id not in artifacts(stores).uploads
    assert outcome.record is not None and outcome.record.status is BackupStatus.COMPLETED
    assert ("backup", "cleanup", "ok") in steps(stores)


def test_a_lease_not_yet_expired_is_not_taken_over(stores: Stores, clock: Clock) -> None:
    stores.leases.acquire(TARGET.name, "function:dead#1", "backup", 60)
    clock.now += 59
    with pytest.raises(LeaseHeld):
        stores.leases.acquire(TARGET.name, "function:next#1", "backup", 60)
    clock.now += 2
    _, previous = stores.leases.acquire(TARGET.name, "function:next#1", "backup", 60)
    assert previous is not None and previous.owner == "function:dead#1"


# -- prune -----------------------------------------------------------------------------------------

def test_prune_deletes_what_the_policy_drops_and_keeps_the_newest_verified(stores: Stores) -> None:
    # Given six daily backups with objects, the oldest one VERIFIED
    now = datetime.now(UTC)
    ids = []
    for age in range(6):
        started = now - timedelta(days=age, minutes=5)
        backup_id = new_backup_id(started)
        prefix = object_prefix(TARGET.name, backup_id)
        for name in ("data.dump", "manifest.json"):
            artifacts(stores).put_bytes(f"{prefix}{name}", b"x" * 10, content_type="binary/octet-stream")
        stores.catalog.create(BackupRecord(
            target=TARGET.name, backup_id=backup_id, engine=Engine.POSTGRES, method="pg_dump",
            status=BackupStatus.VERIFIED if age == 5 else BackupStatus.COMPLETED, started_at=started,
            finished_at=started + timedelta(minutes=1), size_bytes=20, data_key=f"{prefix}data.dump",
            manifest_key=f"{prefix}manifest.json"))
        ids.append(backup_id)
    target = TARGET.model_copy(update={"retention": RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0,
                                                                    keep_monthly=0)})
    # When prune applies the policy
    report = run_prune(stores, target, apply=True, actor="test", now=now)
    # Then the middle three go (records EXPIRED, objects gone); the newest two and the newest VERIFIED stay
    assert sorted(report.deleted) == sorted(ids[2:5]) and report.failed == {}
    assert report.bytes_freed == 60
    statuses = {r.backup_id: r.status for r in stores.catalog.list(TARGET.name)}
    assert [statuses[i] for i in ids] == [BackupStatus.COMPLETED, BackupStatus.COMPLETED, BackupStatus.EXPIRED,
                                          BackupStatus.EXPIRED, BackupStatus.EXPIRED, BackupStatus.VERIFIED]
    kept = {k.split("/")[4] for k in artifacts(stores).keys()}  # noqa: SIM118 (a method, not a dict)
    assert kept == {ids[0], ids[1], ids[5]}
    assert [s for s in steps(stores) if s[0] == "prune"] == [("prune", "delete", "ok")] * 3
    assert stores.leases.get(TARGET.name) is None


def test_a_dry_run_prune_changes_nothing(stores: Stores, engine: FakeEngine) -> None:
    for _ in range(3):
        run_backup(stores, TARGET, actor="test")
    target = TARGET.model_copy(update={"retention": RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0,
                                                                    keep_monthly=0)})
    before = sorted(artifacts(stores).keys())
    report = run_prune(stores, target, apply=False, actor="test")
    assert sum(1 for d in report.decisions if not d.keep) == 2 and report.deleted == []
    assert sorted(artifacts(stores).keys()) == before
    assert all(r.status is BackupStatus.COMPLETED for r in stores.catalog.list(TARGET.name))


# -- recovery state --------------------------------------------------------------------------------

def _verified_backup(stores: Stores) -> str:
    outcome = run_backup(stores, TARGET, actor="test")
    assert outcome.record is not None
    assert verify_backup(stores, TARGET.name, outcome.record.backup_id, actor="test").status is BackupStatus.VERIFIED
    return outcome.record.backup_id


def test_a_recovery_moves_through_recovering_and_validation_to_promoted(stores: Stores, engine: FakeEngine) -> None:
    backup_id = _verified_backup(stores)
    assert stores.recovery_state.get(TARGET.name).status is RecoveryStatus.NOT_RECOVERING
    seen = []
    # When an in-place recovery runs step by step
    plan = recovery.preflight(stores, {"target": TARGET.name, "backup_id": "latest", "promotion": "in-place"},
                              "exec-1")
    seen.append(stores.recovery_state.get(TARGET.name).status)
    recovery.restore(stores, plan)
    seen.append(stores.recovery_state.get(TARGET.name).status)
    recovery.validate(stores, plan)
    seen.append(stores.recovery_state.get(TARGET.name).status)
    recovery.promote(stores, plan)
    seen.append(stores.recovery_state.get(TARGET.name).status)
    result = recovery.finish(stores, plan)
    # Then
    assert plan.backup_id == backup_id
    assert seen == [RecoveryStatus.RECOVERING, RecoveryStatus.RECOVERING, RecoveryStatus.VALIDATION,
                    RecoveryStatus.PROMOTED]
    state = stores.recovery_state.get(TARGET.name)
    assert result["status"] == "PROMOTED" and state.finished_at is not None
    assert state.progress[:3] == ["preflight", "restore", "validate"] and "finish" in state.progress
    assert state.safety_backup_id is not None  # production was backed up before it was replaced
    assert [host for host, _ in engine.restored] == ["staging.example", "db.example"]
    assert all(data == DATA for _, data in engine.restored)
    assert stores.leases.get(TARGET.name) is None


def test_a_recovery_whose_validation_fails_rolls_back_to_recovery_failed(stores: Stores, engine: FakeEngine) -> None:
    _verified_backup(stores)
    plan = recovery.preflight(stores, {"target": TARGET.name, "promotion": "swap"}, "exec-2")
    recovery.restore(stores, plan)
    engine.counts = {"public.items": 2}  # staging lost a row
    with pytest.raises(recovery.ValidationFailed, match=r"public\.items: backup has 3, staging has 2"):
        recovery.validate(stores, plan)
    result = recovery.rollback(stores, plan, {"Error": "ValidationFailed", "Cause": "counts differ"})
    state = stores.recovery_state.get(TARGET.name)
    assert result["status"] == "RECOVERY_FAILED" and state.status is RecoveryStatus.RECOVERY_FAILED
    assert state.error == "ValidationFailed: counts differ" and state.validation_errors
    assert [host for host, _ in engine.restored] == ["staging.example"]  # production never touched
    assert stores.leases.get(TARGET.name) is None


def test_another_execution_cannot_update_a_recovery_record_it_does_not_own(stores: Stores, engine: FakeEngine) -> None:
    _verified_backup(stores)
    plan = recovery.preflight(stores, {"target": TARGET.name}, "exec-3")
    with pytest.raises(NotTheOwner, match="belongs to exec-3, not exec-other"):
        stores.recovery_state.update(TARGET.name, "exec-other", status=RecoveryStatus.PROMOTED)
    other = recovery.Plan(**{**plan.as_dict(), "execution": "exec-other"})
    with pytest.raises(NotTheOwner):
        recovery.restore(stores, other)
    assert stores.recovery_state.get(TARGET.name).status is RecoveryStatus.RECOVERING
    assert engine.restored == []


def test_a_second_recovery_of_a_busy_target_is_refused(stores: Stores, engine: FakeEngine) -> None:
    _verified_backup(stores)
    recovery.preflight(stores, {"target": TARGET.name}, "exec-4")
    with pytest.raises(recovery.RecoveryRefused, match="busy"):
        recovery.preflight(stores, {"target": TARGET.name}, "exec-5")
    assert stores.recovery_state.get(TARGET.name).execution == "exec-4"
