"""`rds-snapshot` backups end to end through the deployed functions (the local stage's template in
moto, RDS included): backup, a snapshot that outlives one invocation, verify, prune, the refusals of
restore and recovery, and the CLI. No database server is involved: RDS makes the copy."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.rds import models as moto_rds

from local.aws import LocalAws
from local.deploy import Deployment, deploy_template
from tests.conftest import STAGE, invoke
from warden.backup import clean_up_crashed_run, restore_backup
from warden.config.credentials import PostgresSecret
from warden.config.target import RdsRef, Target
from warden.engines.base import RestoreRefused
from warden.models import BackupRecord, BackupStatus
from warden.recovery import RecoveryRefused, preflight
from warden.stores import Stores
from warden.stores.audit import tail
from warden.stores.catalog import Catalog, object_prefix
from warden.stores.leases import Lease

pytestmark = pytest.mark.integration

TARGET = Target(
    name="pg-rds", engine="postgres", secret_name=f"warden/{STAGE}/pg-rds", rds={"instance_id": "orders-db"},
    backup={"method": "rds-snapshot", "snapshot_wait_s": 0},
    retention={"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0},
)


def register(aws: LocalAws, target: Target) -> None:
    aws.client("ssm").put_parameter(Name=f"/warden/{STAGE}/targets/{target.name}", Type="String", Overwrite=True,
                                    Value=json.dumps(target.model_dump(mode="json")))


def make_instance(aws: LocalAws, name: str = "orders-db", *, encrypted: bool = True) -> None:
    aws.client("rds").create_db_instance(
        DBInstanceIdentifier=name, DBInstanceClass="db.t4g.medium", Engine="postgres", EngineVersion="16.4",
        AllocatedStorage=50, MasterUsername="warden", MasterUserPassword="not-a-real-pw-1",
        StorageEncrypted=encrypted, **({"KmsKeyId": "alias/aws/rds"} if encrypted else {}))


@pytest.fixture
def stage(aws: LocalAws, local_template: dict[str, Any]) -> Deployment:
    """The local stage deployed into moto, plus `pg-rds` (rds-snapshot of the RDS instance orders-db)."""
    deployment = deploy_template(aws, local_template, STAGE)
    register(aws, TARGET)
    make_instance(aws)
    return deployment


def back_up(aws: LocalAws, stage: Deployment, target: str = "pg-rds") -> BackupRecord:
    result, error = invoke(aws, stage.function_named("backup"), {"target": target, "trigger": "manual"})
    assert error is None, result
    return BackupRecord.model_validate(result)


def verify(aws: LocalAws, stage: Deployment, backup_id: str) -> dict[str, Any]:
    result, error = invoke(aws, stage.function_named("verify"), {"target": "pg-rds", "backup_id": backup_id})
    assert error is None, result
    return dict(result)


def manual_snapshots(aws: LocalAws) -> list[dict[str, Any]]:
    return list(aws.client("rds").describe_db_snapshots(DBInstanceIdentifier="orders-db",
                                                       SnapshotType="manual")["DBSnapshots"])


@pytest.fixture
def rds_keeps_creating(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, moto_rds.DBSnapshot]]:
    """moto makes snapshots available at once; here they stay "creating" until the test says."""
    made: dict[str, moto_rds.DBSnapshot] = {}
    original = moto_rds.DBSnapshot.__init__

    def creating(self: moto_rds.DBSnapshot, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.status = "creating"
        made[self.db_snapshot_identifier] = self

    monkeypatch.setattr(moto_rds.DBSnapshot, "__init__", creating)
    yield made


def test_backup_records_the_snapshot_writes_a_manifest_and_verifies(aws: LocalAws, stage: Deployment,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # When the backup function runs for an rds-snapshot target
    record = back_up(aws, stage)
    assert '"BackupSuccess":[1.0]' in capsys.readouterr().out  # the EMF line of a finished backup

    # Then RDS has Warden's snapshot and the record says what it is
    assert record.status is BackupStatus.COMPLETED and record.method == "rds-snapshot"
    snap = record.snapshot
    assert snap is not None and snap.snapshot_id == f"warden-pg-rds-{record.backup_id.lower()}"
    assert snap.kind == "db-snapshot" and str(snap.snapshot_arn).endswith(f":snapshot:{snap.snapshot_id}")
    assert snap.engine_version == "16.4" and record.server_version == "16.4" and snap.allocated_storage_gib == 50
    assert [s["DBSnapshotIdentifier"] for s in manual_snapshots(aws)] == [snap.snapshot_id]
    # and nothing of it sits in S3 but the manifest, which names the snapshot
    settings = stage.settings("backup")
    assert record.data_key is None and record.size_bytes is None
    assert record.manifest_key == f"{object_prefix('pg-rds', record.backup_id)}manifest.json"
    s3 = aws.client("s3")
    manifest = json.loads(s3.get_object(Bucket=settings.bucket, Key=record.manifest_key)["Body"].read())
    assert manifest["method"] == "rds-snapshot" and manifest["snapshot"]["snapshot_arn"] == snap.snapshot_arn
    assert s3.head_object(Bucket=settings.bucket, Key=record.manifest_key)["ServerSideEncryption"] == "aws:kms"
    # and the S3 storage budget counts none of it
    assert Catalog(settings.catalog_table).stored_bytes("pg-rds") == 0
    steps = [(e.operation, e.step, e.outcome) for e in tail(settings.audit_table, "pg-rds")]
    assert ("backup", "start", "ok") in steps and ("backup", "finish", "ok") in steps

    # When it is verified: the snapshot exists, is available and encrypted
    verified = verify(aws, stage, record.backup_id)
    assert verified["status"] == "VERIFIED", verified


def test_a_snapshot_that_is_gone_or_unencrypted_is_corrupt(aws: LocalAws, stage: Deployment) -> None:
    record = back_up(aws, stage)
    aws.client("rds").delete_db_snapshot(DBSnapshotIdentifier=record.snapshot.snapshot_id)
    gone = verify(aws, stage, record.backup_id)
    assert gone["status"] == "CORRUPT" and "does not exist" in gone["error"]

    # Given a target whose instance is not encrypted
    make_instance(aws, "plain-db", encrypted=False)
    register(aws, TARGET.model_copy(update={"name": "pg-plain", "rds": RdsRef(instance_id="plain-db")}))
    plain = back_up(aws, stage, "pg-plain")
    result, _ = invoke(aws, stage.function_named("verify"), {"target": "pg-plain", "backup_id": plain.backup_id})
    assert result["status"] == "CORRUPT" and "is not encrypted" in result["error"]


def test_restore_and_recovery_refuse_a_snapshot_naming_it_and_the_rds_command(aws: LocalAws,
                                                                            stage: Deployment) -> None:
    record = back_up(aws, stage)
    verify(aws, stage, record.backup_id)
    settings = stage.settings("recovery")
    snap_id = record.snapshot.snapshot_id
    into = PostgresSecret(host="127.0.0.1", port=1, username="x", password="x", dbname="never")  # never reached
    with pytest.raises(RestoreRefused, match=rf"{snap_id}.*aws rds restore-db-instance-from-db-snapshot "
                                             rf"--db-snapshot-identifier {snap_id}"):
        restore_backup(Stores.from_settings(settings), TARGET, record.backup_id, into, actor="cli:test")
    for backup_id in ("latest", record.backup_id):
        with pytest.raises(RecoveryRefused, match="restore-db-instance-from-db-snapshot"):
            preflight(Stores.from_settings(settings), {"target": "pg-rds", "backup_id": backup_id}, "execution:test")
    with pytest.raises(RecoveryRefused, match="in-place"):
        preflight(Stores.from_settings(settings), {"target": "pg-rds", "promotion": "in-place"}, "execution:test")
    # and nothing changed: no restore was started, no lease taken, the record as it was
    assert not [e for e in tail(settings.audit_table, "pg-rds") if e.operation in ("restore", "recovery")]
    assert Catalog(settings.catalog_table).get("pg-rds", record.backup_id).status is BackupStatus.VERIFIED
    assert aws.client("dynamodb").get_item(TableName=settings.state_table, Key={
        "pk": {"S": "lease#pg-rds"}, "sk": {"S": "lease"}}).get("Item") is None


def test_a_snapshot_longer_than_one_invocation_stays_running_and_is_finished_later(
        aws: LocalAws, stage: Deployment, rds_keeps_creating: dict[str, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = stage.settings("backup")
    catalog = Catalog(settings.catalog_table)
    # When the backup's wait runs out while RDS is still making the snapshot
    first = back_up(aws, stage)
    # Then the record stays RUNNING with the snapshot id and its progress; the lease is free
    assert first.status is BackupStatus.RUNNING and first.snapshot and first.snapshot.status == "creating"
    assert first.manifest_key and first.error is None
    assert "BackupSuccess" not in capsys.readouterr().out  # not a success (nor a failure) yet
    # and a second run starts no second snapshot while the first is being made
    again = back_up(aws, stage)
    assert again.backup_id == first.backup_id and again.status is BackupStatus.RUNNING
    assert len(manual_snapshots(aws)) == 1
    # and verify says it is still running, changing nothing
    assert verify(aws, stage, first.backup_id)["status"] == "RUNNING"
    # and the crashed-run cleanup (lease expiry) does not mark it FAILED while RDS is still creating it
    crashed = Lease(target="pg-rds", owner="function:dead#1", operation="backup", expires_at=time.time() - 1,
                    backup_id=first.backup_id)
    clean_up_crashed_run(Stores.from_settings(settings), crashed, "function:test")
    assert catalog.get("pg-rds", first.backup_id).status is BackupStatus.RUNNING

    # When RDS finishes it, the next backup run completes the record (and starts its own snapshot)
    rds_keeps_creating[first.snapshot.snapshot_id].status = "available"
    second = back_up(aws, stage)
    done = catalog.get("pg-rds", first.backup_id)
    assert done.status is BackupStatus.COMPLETED and done.finished_at and done.snapshot.status == "available"
    assert second.backup_id != first.backup_id and second.status is BackupStatus.RUNNING

    # When RDS fails the second one, the cleanup records it FAILED with the reason
    rds_keeps_creating[second.snapshot.snapshot_id].status = "failed"
    clean_up_crashed_run(Stores.from_settings(settings),
                         Lease(target="pg-rds", owner="function:dead#2", operation="backup",
                               expires_at=time.time() - 1, backup_id=second.backup_id),
                         "function:test")
    failed = catalog.get("pg-rds", second.backup_id)
    assert failed.status is BackupStatus.FAILED and "ended in status 'failed'" in (failed.error or "")


def test_prune_deletes_the_snapshot_then_expires_the_record(aws: LocalAws, stage: Deployment) -> None:
    # Given two verified snapshot backups and a policy that keeps the last one
    old, new = back_up(aws, stage), back_up(aws, stage)
    for record in (old, new):
        assert verify(aws, stage, record.backup_id)["status"] == "VERIFIED"
    # When prune applies
    report, error = invoke(aws, stage.function_named("prune"), {"target": "pg-rds", "apply": True})
    assert error is None, report
    # Then the old snapshot is gone from RDS, its manifest from S3, and its record is EXPIRED
    assert report["deleted"] == [old.backup_id] and report["failed"] == {}
    assert [s["DBSnapshotIdentifier"] for s in manual_snapshots(aws)] == [new.snapshot.snapshot_id]
    catalog = Catalog(stage.settings("prune").catalog_table)
    assert catalog.get("pg-rds", old.backup_id).status is BackupStatus.EXPIRED
    assert catalog.get("pg-rds", new.backup_id).status is BackupStatus.VERIFIED
    listed = aws.client("s3").list_objects_v2(Bucket=stage.settings("prune").bucket,
                                             Prefix=object_prefix("pg-rds", old.backup_id))
    assert listed.get("KeyCount", 0) == 0


def test_cli_backup_create_list_verify_show_the_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         local_template: dict[str, Any],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from warden_cli import main as cli

    monkeypatch.setenv("WARDEN_LOCAL_HOME", str(tmp_path))
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    with LocalAws(server=True) as aws:
        deployment = deploy_template(aws, local_template, STAGE)
        register(aws, TARGET)
        make_instance(aws)
        (tmp_path / "state.json").write_text(json.dumps({
            "stage": STAGE, "pid": 1, "endpoint_url": aws.endpoint_url, "outputs": deployment.outputs(),
            "function_environment": deployment.extra_environment, "services": {}, "targets": [],
        }))
        assert cli.main(["backup", "create", "--target", "pg-rds", "--wait"]) == 0
        created = capsys.readouterr().out
        backup_id = created.split()[1].rstrip(":")
        snap_id = f"warden-pg-rds-{backup_id.lower()}"
        assert "COMPLETED" in created and snap_id in created, created
        assert cli.main(["backup", "list", "--target", "pg-rds"]) == 0
        listed = capsys.readouterr().out
        assert backup_id in listed and snap_id in listed, listed
        assert cli.main(["backup", "verify", "--target", "pg-rds", "--backup-id", backup_id]) == 0
        verified = capsys.readouterr().out
        assert "VERIFIED" in verified and snap_id in verified, verified
