"""Issue 18 items 6-8 against the in-memory stores: a backup with no time left is refused before
anything is touched; the manifest's own SHA-256 is on the record and checked; a backup is pinned to
the object versions it wrote. (The same flows run against moto and real databases in
tests/integration/test_backup_flow.py and test_backup_time_budget.py.)"""

from __future__ import annotations

import json
import time

import pytest

from tests.unit.test_state_logic import DATA, PRODUCTION, TARGET, Clock, FakeEngine, artifacts, steps
from tests.unit.test_state_logic import clock as clock
from tests.unit.test_state_logic import engine as engine
from tests.unit.test_state_logic import stores as stores
from warden.backup import BackupOutOfTime, restore_backup, run_backup, verify_backup
from warden.engines.base import RestoreRefused
from warden.models import BackupRecord, BackupStatus
from warden.stores import Stores


def _backup(stores: Stores) -> BackupRecord:
    outcome = run_backup(stores, TARGET, actor="test")
    assert outcome.record is not None and outcome.record.status is BackupStatus.COMPLETED
    return outcome.record


# -- 6: no time left ------------------------------------------------------------------------------

def test_a_backup_with_less_time_left_than_its_finish_margin_is_refused_before_anything_is_touched(
        stores: Stores, engine: FakeEngine) -> None:
    # When the invocation has 19 s left and the finish margin is 30 s (the handler's deadline: -11 s)
    with pytest.raises(BackupOutOfTime, match=r"not started: its time budget of -11 s"):
        run_backup(stores, TARGET, actor="test", deadline=time.monotonic() - 11)
    # Then no record, no upload, no export, the lease free; the refusal is audited
    assert list(stores.catalog.list(TARGET.name)) == []
    assert artifacts(stores).keys() == [] and artifacts(stores).uploads == {}
    assert engine.exports == 0
    assert stores.leases.get(TARGET.name) is None
    assert steps(stores) == [("backup", "start", "refused")]


# -- 7: the manifest is protected -----------------------------------------------------------------

def _tamper_manifest(stores: Stores, record: BackupRecord) -> None:
    """Change the counts in the stored manifest's bytes (the recorded version itself)."""
    stored = artifacts(stores).versions[record.manifest_key or ""][-1]
    manifest = json.loads(stored.body or b"{}")
    manifest["counts"] = {"public.items": 999}
    stored.body = json.dumps(manifest, indent=2, sort_keys=True).encode()


def test_the_record_carries_the_manifests_own_sha256(stores: Stores, engine: FakeEngine) -> None:
    import hashlib

    record = _backup(stores)
    stored = artifacts(stores).get_bytes(record.manifest_key or "")
    assert record.manifest_sha256 == hashlib.sha256(stored).hexdigest()


def test_verify_finds_a_backup_whose_manifest_counts_were_changed_corrupt_naming_the_manifest(
        stores: Stores, engine: FakeEngine) -> None:
    record = _backup(stores)
    assert verify_backup(stores, TARGET.name, record.backup_id, actor="test").status is BackupStatus.VERIFIED
    # When someone changes the counts in manifest.json
    _tamper_manifest(stores, record)
    checked = verify_backup(stores, TARGET.name, record.backup_id, actor="test")
    # Then
    assert checked.status is BackupStatus.CORRUPT
    assert checked.error and "manifest" in checked.error and "sha256" in checked.error


def test_restore_refuses_a_verified_backup_whose_manifest_was_changed(stores: Stores, engine: FakeEngine) -> None:
    record = _backup(stores)
    verify_backup(stores, TARGET.name, record.backup_id, actor="test")
    _tamper_manifest(stores, record)
    with pytest.raises(RestoreRefused, match=r"CORRUPT.*manifest"):
        restore_backup(stores, TARGET, record.backup_id, PRODUCTION, actor="test")
    assert engine.restored == []


# -- 8: pinned to object versions -----------------------------------------------------------------

def test_the_record_names_the_object_versions_of_its_data_and_manifest(stores: Stores, engine: FakeEngine) -> None:
    record = _backup(stores)
    assert record.data_version_id == artifacts(stores).versions[record.data_key or ""][-1].version_id
    assert record.manifest_version_id == artifacts(stores).versions[record.manifest_key or ""][-1].version_id


def test_verify_says_corrupt_when_the_current_object_is_not_the_recorded_version(
        stores: Stores, engine: FakeEngine) -> None:
    record = _backup(stores)
    # When the data object is written over later
    artifacts(stores).overwrite(record.data_key or "", b"something else entirely")
    checked = verify_backup(stores, TARGET.name, record.backup_id, actor="test")
    # Then verify says so, naming the recorded version
    assert checked.status is BackupStatus.CORRUPT
    assert checked.error and f"not the recorded version {record.data_version_id}" in checked.error


def test_restore_reads_the_recorded_versions_not_what_was_written_over_them(
        stores: Stores, engine: FakeEngine) -> None:
    record = _backup(stores)
    verify_backup(stores, TARGET.name, record.backup_id, actor="test")
    # Given the data object written over and the manifest tampered with, then both put back as before
    # by a new version each (same bytes, new version ids): the recorded versions still hold
    for key in (record.data_key or "", record.manifest_key or ""):
        artifacts(stores).overwrite(key, b"garbage")
    # When restoring: refused (the current objects are not the recorded ones) - nothing loaded
    with pytest.raises(RestoreRefused, match="not the recorded version"):
        restore_backup(stores, TARGET, record.backup_id, PRODUCTION, actor="test")
    assert engine.restored == []


def test_a_record_written_before_version_pinning_still_verifies_and_restores(
        stores: Stores, engine: FakeEngine) -> None:
    record = _backup(stores)
    legacy = record.model_copy(update={"data_version_id": None, "manifest_version_id": None,
                                       "manifest_sha256": None})
    stores.catalog.save(legacy)
    assert verify_backup(stores, TARGET.name, record.backup_id, actor="test").status is BackupStatus.VERIFIED
    restore_backup(stores, TARGET, record.backup_id, PRODUCTION, actor="test")
    assert engine.restored == [("db.example", DATA)]


def test_clock_fixture_is_shared(clock: Clock) -> None:
    assert clock() == clock.now
