"""The catalog, the leases and the audit trail, on moto's DynamoDB."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from local.aws import LocalAws
from warden.config.target import Engine
from warden.models import BackupRecord, BackupStatus
from warden.stores import audit
from warden.stores.catalog import BackupNotFound, Catalog, StaleRecord, new_backup_id, object_prefix
from warden.stores.leases import LeaseHeld, LeaseLost, Leases


@pytest.fixture
def tables() -> Iterator[LocalAws]:
    with LocalAws() as aws:
        for name in ("catalog", "audit", "state"):
            aws.client("dynamodb").create_table(
                TableName=name, BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                      {"AttributeName": "sk", "AttributeType": "S"}])
        yield aws


def record(backup_id: str, status: BackupStatus = BackupStatus.COMPLETED) -> BackupRecord:
    return BackupRecord(target="pg", backup_id=backup_id, engine=Engine.POSTGRES, method="pg_dump", status=status,
                        started_at=datetime.now(UTC), counts={"public.t": 3}, duration_s=1.25, size_bytes=10)


def test_backup_ids_sort_by_time_and_keys_follow_the_layout() -> None:
    t0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    ids = [new_backup_id(t0 + timedelta(seconds=s)) for s in (5, 0, 3600)]
    assert sorted(ids) == [ids[1], ids[0], ids[2]]
    assert object_prefix("pg", ids[1]) == f"pg/2026/11/23/{ids[1]}/"


def test_catalog_round_trips_records_and_lists_newest_first(tables: LocalAws) -> None:
    catalog = Catalog("catalog")
    older, newer = new_backup_id(datetime(2026, 1, 1, tzinfo=UTC)), new_backup_id(datetime(2026, 2, 1, tzinfo=UTC))
    catalog.create(record(older))
    catalog.create(record(newer, BackupStatus.VERIFIED))
    assert [r.backup_id for r in catalog.list("pg")] == [newer, older]
    got = catalog.get("pg", older)
    assert got.counts == {"public.t": 3} and got.duration_s == 1.25 and got.size_bytes == 10
    assert catalog.latest("pg", frozenset({BackupStatus.VERIFIED})).backup_id == newer
    with pytest.raises(BackupNotFound):
        catalog.get("pg", new_backup_id())


def test_catalog_save_with_expected_status_refuses_a_concurrent_change(tables: LocalAws) -> None:
    catalog = Catalog("catalog")
    rec = catalog.create(record(new_backup_id(), BackupStatus.RUNNING))
    catalog.save(rec.model_copy(update={"status": BackupStatus.FAILED}), expect_status=BackupStatus.RUNNING)
    with pytest.raises(StaleRecord):
        catalog.save(rec.model_copy(update={"status": BackupStatus.COMPLETED}), expect_status=BackupStatus.RUNNING)
    assert catalog.get("pg", rec.backup_id).status is BackupStatus.FAILED


def test_second_lease_is_refused_while_the_first_is_held(tables: LocalAws) -> None:
    leases = Leases("state")
    first, previous = leases.acquire("pg", "run-1", "backup", ttl_s=60)
    assert previous is None
    with pytest.raises(LeaseHeld) as held:
        leases.acquire("pg", "run-2", "backup", ttl_s=60)
    assert held.value.holder.owner == "run-1"
    leases.release(first)
    second, _ = leases.acquire("pg", "run-2", "backup", ttl_s=60)
    assert second.owner == "run-2"


def test_expired_lease_is_taken_over_and_handed_back_for_cleanup(tables: LocalAws) -> None:
    leases = Leases("state")
    crashed, _ = leases.acquire("pg", "run-1", "backup", ttl_s=0.01)
    leases.update(crashed, backup_id="b1", upload_key="k", upload_id="u1")
    time.sleep(0.05)
    _, previous = leases.acquire("pg", "run-2", "backup", ttl_s=60)
    assert previous is not None
    assert (previous.owner, previous.backup_id, previous.upload_id) == ("run-1", "b1", "u1")


def test_release_of_a_lease_taken_over_does_not_free_the_new_holder(tables: LocalAws) -> None:
    leases = Leases("state")
    stale, _ = leases.acquire("pg", "run-1", "backup", ttl_s=0.01)
    time.sleep(0.05)
    leases.acquire("pg", "run-2", "backup", ttl_s=60)
    leases.release(stale)
    assert leases.get("pg").owner == "run-2"


def test_renewing_a_lease_pushes_its_expiry_only_for_its_owner(tables: LocalAws) -> None:
    leases = Leases("state")
    lease, _ = leases.acquire("pg", "task#1", "backup", ttl_s=0.2, runner="fargate", execution="exec-1")
    renewed = leases.renew(lease, ttl_s=60)
    stored = leases.get("pg")
    assert stored is not None and stored.expires_at == pytest.approx(renewed.expires_at, abs=0.01)
    assert stored.runner == "fargate" and stored.execution == "exec-1"
    time.sleep(0.3)  # past the first TTL: still ours, nobody can take it
    with pytest.raises(LeaseHeld):
        leases.acquire("pg", "run-2", "backup", ttl_s=60)
    leases.release(lease)
    with pytest.raises(LeaseLost, match="it is gone"):
        leases.renew(lease, ttl_s=60)
    leases.acquire("pg", "run-2", "backup", ttl_s=60)
    with pytest.raises(LeaseLost, match="backup by run-2 holds it now"):
        leases.renew(lease, ttl_s=60)


def test_audit_appends_and_tails_newest_first(tables: LocalAws) -> None:
    for step in ("start", "finish"):
        audit.audit("audit", target="pg", operation="backup", step=step, outcome="ok", actor="cli:test",
                    backup_id="b1", size_bytes=10)
    entries = audit.tail("audit", "pg")
    assert [e.step for e in entries] == ["finish", "start"]
    assert entries[0].details == {"size_bytes": 10} and entries[0].actor == "cli:test"


def test_stored_bytes_counts_every_record_not_expired(tables: LocalAws) -> None:
    catalog = Catalog("catalog")
    for status, size in ((BackupStatus.COMPLETED, 10), (BackupStatus.VERIFIED, 20), (BackupStatus.FAILED, 5),
                         (BackupStatus.EXPIRED, 1000)):
        catalog.create(record(new_backup_id()).model_copy(update={"status": status, "size_bytes": size}))
    assert catalog.stored_bytes("pg") == 35
