"""`rds-snapshot` backups of RDS instances and Aurora clusters, against moto."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import Stubber

from local.aws import LocalAws
from warden.engines import rds_snapshot
from warden.engines.base import BackupFailed
from warden.errors import ConfigError

BACKUP_ID = "20261123T020000Z-1a2b3c4d"


@pytest.fixture
def rds() -> Iterator[Any]:
    with LocalAws() as aws:
        yield aws.client("rds")


def make_instance(rds: Any, name: str = "orders-db", storage: int = 50) -> None:
    rds.create_db_instance(
        DBInstanceIdentifier=name, DBInstanceClass="db.t4g.medium", Engine="postgres", EngineVersion="16.4",
        AllocatedStorage=storage, MasterUsername="warden", MasterUserPassword="not-a-real-pw-1",
        StorageEncrypted=True,
    )


def make_aurora(rds: Any, cluster: str = "graph-aurora", member: str = "graph-aurora-1") -> None:
    rds.create_db_cluster(
        DBClusterIdentifier=cluster, Engine="aurora-postgresql", EngineVersion="16.4",
        MasterUsername="warden", MasterUserPassword="not-a-real-pw-1", StorageEncrypted=True,
    )
    rds.create_db_instance(
        DBInstanceIdentifier=member, DBInstanceClass="db.r6g.large", Engine="aurora-postgresql",
        DBClusterIdentifier=cluster,
    )


def test_snapshot_id_is_a_valid_rds_identifier() -> None:
    assert rds_snapshot.snapshot_id("pg-main", BACKUP_ID) == "warden-pg-main-20261123t020000z-1a2b3c4d"
    assert rds_snapshot.snapshot_id("a--b", "x_y") == "warden-a-b-x-y"
    assert len(rds_snapshot.snapshot_id("t" * 48, "b" * 400)) == 255


def test_instance_snapshot_is_available_with_the_warden_id_and_size(rds: Any) -> None:
    # Given an RDS PostgreSQL instance
    make_instance(rds, storage=50)

    # When Warden snapshots it
    result = rds_snapshot.create_snapshot("orders-db", target="pg-main", backup_id=BACKUP_ID, rds=rds)

    # Then an available snapshot with Warden's id, tags and the instance's size is recorded
    snap_id = "warden-pg-main-20261123t020000z-1a2b3c4d"
    assert result.method == "rds-snapshot"
    assert result.format_version == "rds-snapshot/instance"
    assert result.server_version == "16.4"
    assert result.details["snapshot_id"] == snap_id
    assert result.details["snapshot_kind"] == "db-snapshot"
    assert result.details["snapshot_arn"].endswith(f":snapshot:{snap_id}")
    assert result.details["size_bytes"] == 50 * 1024**3
    assert result.details["encrypted"] is True
    stored = rds.describe_db_snapshots(DBSnapshotIdentifier=snap_id)["DBSnapshots"][0]
    assert stored["Status"] == "available"
    assert stored["DBInstanceIdentifier"] == "orders-db"
    tags = {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=stored["DBSnapshotArn"])["TagList"]}
    assert tags["warden:target"] == "pg-main" and tags["warden:backup-id"] == BACKUP_ID


def test_aurora_member_instance_is_snapshotted_as_its_cluster(rds: Any) -> None:
    make_aurora(rds)
    result = rds_snapshot.create_snapshot("graph-aurora-1", target="pg-aurora", backup_id=BACKUP_ID, rds=rds)
    assert result.format_version == "rds-snapshot/cluster"
    assert result.details["snapshot_kind"] == "db-cluster-snapshot"
    assert result.details["source_identifier"] == "graph-aurora"
    snaps = rds.describe_db_cluster_snapshots(DBClusterIdentifier="graph-aurora")["DBClusterSnapshots"]
    assert [s["DBClusterSnapshotIdentifier"] for s in snaps if s["SnapshotType"] == "manual"] == \
        [result.details["snapshot_id"]]


def test_cluster_identifier_is_snapshotted_directly(rds: Any) -> None:
    make_aurora(rds)
    result = rds_snapshot.create_snapshot("graph-aurora", target="pg-aurora", backup_id=BACKUP_ID, rds=rds)
    assert result.details["snapshot_kind"] == "db-cluster-snapshot"


def test_a_retried_run_reuses_its_snapshot(rds: Any) -> None:
    make_instance(rds)
    first = rds_snapshot.create_snapshot("orders-db", target="pg-main", backup_id=BACKUP_ID, rds=rds)
    second = rds_snapshot.create_snapshot("orders-db", target="pg-main", backup_id=BACKUP_ID, rds=rds)
    assert first.details["snapshot_arn"] == second.details["snapshot_arn"]
    manual = rds.describe_db_snapshots(DBInstanceIdentifier="orders-db", SnapshotType="manual")["DBSnapshots"]
    assert len(manual) == 1


def test_unknown_source_is_a_configuration_error(rds: Any) -> None:
    with pytest.raises(rds_snapshot.SnapshotSourceNotFound, match="no RDS instance or Aurora cluster named 'nope'"):
        rds_snapshot.create_snapshot("nope", target="pg-main", backup_id=BACKUP_ID, rds=rds)
    assert issubclass(rds_snapshot.SnapshotSourceNotFound, ConfigError)
    assert issubclass(rds_snapshot.SnapshotSourceNotFound, BackupFailed)


def test_delete_snapshot_removes_it_and_tolerates_a_second_delete(rds: Any) -> None:
    make_instance(rds)
    result = rds_snapshot.create_snapshot("orders-db", target="pg-main", backup_id=BACKUP_ID, rds=rds)
    rds_snapshot.delete_snapshot(result.details, rds=rds)
    rds_snapshot.delete_snapshot(result.details, rds=rds)
    assert rds.describe_db_snapshots(DBInstanceIdentifier="orders-db", SnapshotType="manual")["DBSnapshots"] == []


def _snapshot(status: str, progress: int = 0) -> dict[str, Any]:
    return {"DBSnapshotIdentifier": "s", "DBInstanceIdentifier": "orders-db", "Status": status,
            "PercentProgress": progress, "AllocatedStorage": 20, "EngineVersion": "16.4",
            "SnapshotCreateTime": datetime(2026, 11, 23, tzinfo=UTC)}


def _stubbed(rds: Any, statuses: list[str], create_error: str | None = None) -> Stubber:
    stub = Stubber(rds)
    stub.add_response("describe_db_instances", {"DBInstances": [
        {"DBInstanceIdentifier": "orders-db", "Engine": "postgres", "EngineVersion": "16.4", "AllocatedStorage": 20}]})
    stub.add_client_error("describe_db_snapshots", "DBSnapshotNotFound", http_status_code=404)
    if create_error:
        stub.add_client_error("create_db_snapshot", create_error, "instance is not available", http_status_code=400)
        return stub
    stub.add_response("create_db_snapshot", {"DBSnapshot": _snapshot(statuses[0])})
    for status in statuses[1:]:
        stub.add_response("describe_db_snapshots", {"DBSnapshots": [_snapshot(status, 40)]})
    return stub


class FakeClock:
    def __init__(self) -> None:
        self.now: float = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_waiting_is_bounded(rds: Any) -> None:
    # Given a snapshot that stays "creating"
    clock = FakeClock()
    # When Warden may wait 100 s, polling every 30 s
    with _stubbed(rds, ["creating", "creating", "creating", "creating"]), \
            pytest.raises(rds_snapshot.SnapshotTimeout, match=r"still 'creating' after 100 s \(40% done\)"):
        rds_snapshot.create_snapshot("orders-db", target="pg-main", backup_id=BACKUP_ID, rds=rds,
                                     wait_s=100, poll_s=30, sleep=clock.sleep, clock=clock)
    # Then it polled a bounded number of times and gave up
    assert clock.slept == [30, 30, 30]


def test_snapshot_waits_until_available(rds: Any) -> None:
    clock = FakeClock()
    with _stubbed(rds, ["creating", "creating", "available"]):
        result = rds_snapshot.create_snapshot("orders-db", target="pg-main", backup_id=BACKUP_ID, rds=rds,
                                              poll_s=5, sleep=clock.sleep, clock=clock)
    assert clock.slept == [5, 5]
    assert result.details["duration_s"] == 10
    assert result.details["size_bytes"] == 20 * 1024**3
    assert result.details["created_at"] == "2026-11-23T00:00:00+00:00"


def test_a_failed_snapshot_is_a_backup_failure(rds: Any) -> None:
    with _stubbed(rds, ["creating", "failed"]), pytest.raises(BackupFailed, match="ended in status 'failed'"):
        rds_snapshot.create_snapshot("orders-db", target="pg-main", backup_id=BACKUP_ID, rds=rds, sleep=lambda s: None)


def test_a_busy_instance_is_a_transient_error(rds: Any) -> None:
    from warden.errors import DatabaseUnavailable

    with _stubbed(rds, [], create_error="InvalidDBInstanceState"), \
            pytest.raises(DatabaseUnavailable, match=r"cannot start RDS snapshot .*InvalidDBInstanceState"):
        rds_snapshot.create_snapshot("orders-db", target="pg-main", backup_id=BACKUP_ID, rds=rds)


# -- configuration, naming and the snapshot_backup helpers ----------------------------------------

def test_rds_snapshot_method_needs_a_postgres_target_on_rds() -> None:
    from pydantic import ValidationError

    from warden.config.target import Target

    ok = Target(name="pg", engine="postgres", secret_name="s", rds={"cluster_id": "aurora-1"},
                backup={"method": "rds-snapshot"})
    assert ok.backup.method_for("postgres") == "rds-snapshot"
    assert Target(name="pg", engine="postgres", secret_name="s").backup.method_for("postgres") == "pg_dump"
    with pytest.raises(ValidationError, match=r"backup\.method rds-snapshot needs `rds`"):
        Target(name="pg", engine="postgres", secret_name="s", backup={"method": "rds-snapshot"})
    with pytest.raises(ValidationError, match="rds-snapshot is for PostgreSQL"):
        Target(name="g", engine="neo4j", secret_name="s", backup={"method": "rds-snapshot"})
    with pytest.raises(ValidationError, match="pg_dump is not a neo4j method"):
        Target(name="g", engine="neo4j", secret_name="s", backup={"method": "pg_dump"})
    with pytest.raises(ValidationError, match="snapshot_wait_s"):
        Target(name="pg", engine="postgres", secret_name="s", rds={"instance_id": "db"},
               backup={"method": "rds-snapshot", "snapshot_wait_s": 15 * 60})


def test_snapshot_prefix_is_what_every_snapshot_id_of_the_target_starts_with() -> None:
    for target in ("pg-main", "a--b", "x"):
        assert rds_snapshot.snapshot_id(target, BACKUP_ID).startswith(rds_snapshot.snapshot_prefix(target))
    assert rds_snapshot.snapshot_prefix("pg-main") == "warden-pg-main-"
    assert not rds_snapshot.snapshot_id("pg", BACKUP_ID).startswith(rds_snapshot.snapshot_prefix("pg-main"))


def test_restore_refusal_names_the_snapshot_and_the_rds_command() -> None:
    from warden.config.backup import SnapshotRef
    from warden.models import BackupRecord
    from warden.snapshot_backup import restore_refusal

    record = BackupRecord(target="pg-aurora", backup_id=BACKUP_ID, engine="postgres",
                          method="rds-snapshot", status="VERIFIED", started_at=datetime(2026, 11, 23, tzinfo=UTC),
                          snapshot=SnapshotRef(snapshot_id="warden-pg-aurora-x", kind="db-cluster-snapshot",
                                               source_identifier="graph-aurora", engine="aurora-postgresql"))
    message = restore_refusal(record)
    assert "warden-pg-aurora-x" in message
    assert ("aws rds restore-db-cluster-from-snapshot --snapshot-identifier warden-pg-aurora-x "
            "--db-cluster-identifier <new-cluster> --engine aurora-postgresql") in message


class _DeletingRds:
    """moto's RDS, except that a deleted snapshot lingers in "deleting" (as RDS's do for a while)."""

    def __init__(self, rds: Any) -> None:
        self._rds, self.deleting = rds, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rds, name)

    def delete_db_snapshot(self, **kwargs: Any) -> Any:
        self.deleting = True
        return {"DBSnapshot": {"Status": "deleting"}}

    def describe_db_snapshots(self, **kwargs: Any) -> Any:
        found = self._rds.describe_db_snapshots(**kwargs)
        if self.deleting:
            found["DBSnapshots"] = [{**s, "Status": "deleting"} for s in found["DBSnapshots"]]
        return found


def test_prune_keeps_the_record_while_rds_is_still_deleting_the_snapshot(rds: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from warden import snapshot_backup
    from warden.config.backup import SnapshotRef
    from warden.models import BackupRecord

    make_instance(rds)
    made = rds_snapshot.create_snapshot("orders-db", target="pg-main", backup_id=BACKUP_ID, rds=rds)
    record = BackupRecord(target="pg-main", backup_id="20261123T020000Z-1a2b3c4d", engine="postgres",
                          method="rds-snapshot", status="VERIFIED", started_at=datetime(2026, 11, 23, tzinfo=UTC),
                          snapshot=SnapshotRef(snapshot_id=made.details["snapshot_id"], kind="db-snapshot",
                                               source_identifier="orders-db"))
    pg_dump = record.model_copy(update={"method": "pg_dump", "snapshot": None,
                                        "backup_id": "20261122T020000Z-00000000"})
    lingering = _DeletingRds(rds)
    monkeypatch.setattr(snapshot_backup, "_rds", lambda: lingering)
    # While RDS is deleting it, the record must not become EXPIRED (and a pg_dump record is not RDS's business)
    errors = snapshot_backup.delete_snapshots([record, pg_dump])
    assert list(errors) == [record.backup_id] and "'deleting'" in errors[record.backup_id]
    # Once RDS no longer has it, it counts as gone
    monkeypatch.setattr(snapshot_backup, "_rds", lambda: rds)
    assert snapshot_backup.delete_snapshots([record]) == {}
    assert snapshot_backup.delete_snapshots([record]) == {}  # already gone is gone
