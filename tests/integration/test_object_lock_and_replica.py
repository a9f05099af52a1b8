"""Backups that survive a compromised account, on moto and the real PostgreSQL: prune never asks S3
to delete a version under Object Lock (and deletes it once the lock has expired), verify records
which backups have a replica in the second region, and the Recovery state machine restores from
the replica when the primary copy is gone.

moto neither replicates nor sets ReplicationStatus: where S3 replication would copy a backup into
the replica bucket, the test copies it itself (same keys, same bytes), which is what S3 would do.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import psycopg
import pytest

from local.aws import LocalAws
from local.deploy import Deployment, deploy_template, local_function_environment
from local.postgres import PostgresEndpoint, create_database
from local.runtime import postgres_secret
from tests.conftest import STAGE, invoke
from tests.integration.test_recovery import start, wait
from warden.config.protection import ENV_REPLICA_BUCKET, ENV_REPLICA_KMS_KEY, ENV_REPLICA_REGION
from warden.config.retention import RetentionPolicy
from warden.config.target import Engine, Target
from warden.models import BackupRecord, BackupStatus
from warden.prune import run_prune
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.artifacts import S3Artifacts
from warden.stores.catalog import Catalog, new_backup_id, object_prefix
from warden.stores.clients import reset_clients
from warden.stores.recovery_state import StateStore

pytestmark = pytest.mark.integration
REPLICA_REGION = "eu-central-1"
REPLICA_BUCKET = f"warden-{STAGE}-replica-123456789012-{REPLICA_REGION}"
PROD = "replica_prod"
NOW = datetime.now(UTC)


# -- Object Lock and prune ----------------------------------------------------------------------

class RecordingS3:
    """The real (moto) client, remembering every version DeleteObjects was asked to delete."""

    def __init__(self, client: Any) -> None:
        self._client, self.delete_requests = client, []  # type: ignore[var-annotated]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def delete_objects(self, **kwargs: Any) -> Any:
        self.delete_requests.extend((o["Key"], o.get("VersionId")) for o in kwargs["Delete"]["Objects"])
        return self._client.delete_objects(**kwargs)


@pytest.fixture
def locked_bucket(aws: LocalAws, deployed: Deployment) -> Settings:
    """The prune function's settings, with a bucket that has Object Lock (no default retention:
    each test locks the versions it wants locked)."""
    s3 = aws.client("s3")
    bucket = "warden-local-locked-backups"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
                     ObjectLockEnabledForBucket=True)
    return deployed.settings("prune").model_copy(update={"bucket": bucket})


def backups(aws: LocalAws, settings: Settings, days: int, *, locked_until: dict[int, datetime]) -> list[BackupRecord]:
    """One backup a day (newest first), data + manifest; the backups at the ages in `locked_until`
    are written in governance mode until that date."""
    s3, catalog, records = aws.client("s3"), Catalog(settings.catalog_table), []
    for age in range(days):
        started = NOW - timedelta(days=age, minutes=5)
        backup_id = new_backup_id(started)
        prefix = object_prefix("pg-local", backup_id)
        lock = ({"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": locked_until[age]}
                if age in locked_until else {})
        for name in ("data.dump", "manifest.json"):
            s3.put_object(Bucket=settings.bucket, Key=f"{prefix}{name}", Body=b"x" * 50, **lock)
        records.append(catalog.create(BackupRecord(
            target="pg-local", backup_id=backup_id, engine=Engine.POSTGRES, method="pg_dump",
            status=BackupStatus.COMPLETED, started_at=started, finished_at=started + timedelta(minutes=1),
            size_bytes=100, data_key=f"{prefix}data.dump", manifest_key=f"{prefix}manifest.json")))
    return records


KEEP_TWO = Target(name="pg-local", engine=Engine.POSTGRES, secret_name="s",
                  retention=RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0))


def test_prune_never_asks_to_delete_a_locked_version_and_deletes_it_once_the_lock_expires(
        aws: LocalAws, locked_bucket: Settings) -> None:
    # Given six backups, the policy keeping two; the 4-day-old one locked for a few seconds more,
    # the 5-day-old one for a month
    soon, later = datetime.now(UTC) + timedelta(seconds=3), NOW + timedelta(days=30)
    records = backups(aws, locked_bucket, 6, locked_until={4: soon, 5: later})
    briefly, long_locked = records[4].backup_id, records[5].backup_id
    recording = RecordingS3(aws.client("s3"))
    assert locked_bucket.bucket
    stores = replace(Stores.from_settings(locked_bucket),
                     artifacts=S3Artifacts(locked_bucket.bucket, kms_key_id=locked_bucket.kms_key_id, s3=recording))

    # When prune applies the policy
    first = run_prune(stores, KEEP_TWO, apply=True, actor="test")

    # Then the unlocked doomed backups are deleted, the locked ones reported with their dates
    assert sorted(first.deleted) == sorted(r.backup_id for r in records[2:4])
    assert set(first.locked) == {briefly, long_locked} and first.failed == {}
    assert first.locked[long_locked].startswith(f"locked until {later.date().isoformat()}")
    assert first.locked[long_locked].endswith("(GOVERNANCE)")
    # and no DeleteObjects call named any version of a locked backup
    locked_prefixes = (object_prefix("pg-local", briefly), object_prefix("pg-local", long_locked))
    assert recording.delete_requests and not any(k.startswith(locked_prefixes) for k, _ in recording.delete_requests)
    catalog = Catalog(locked_bucket.catalog_table)
    assert catalog.get("pg-local", briefly).status is BackupStatus.COMPLETED  # not EXPIRED: kept until it can go
    assert first.lock_calls == 1 + 2 * 4  # the bucket's configuration, then each doomed version

    # When the short lock has expired and prune runs again
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 1.1)
    second = run_prune(stores, KEEP_TWO, apply=True, actor="test")

    # Then that backup goes, and the month-long lock still holds the other
    assert second.deleted == [briefly] and set(second.locked) == {long_locked}
    assert catalog.get("pg-local", briefly).status is BackupStatus.EXPIRED
    page = aws.client("s3").list_object_versions(Bucket=locked_bucket.bucket, Prefix=object_prefix("pg-local", briefly))
    assert page.get("Versions", []) == []


def test_a_legal_hold_keeps_a_backup_from_prune_too(aws: LocalAws, locked_bucket: Settings) -> None:
    records = backups(aws, locked_bucket, 3, locked_until={})
    aws.client("s3").put_object_legal_hold(Bucket=locked_bucket.bucket, Key=records[2].data_key,
                                           LegalHold={"Status": "ON"})
    report = run_prune(Stores.from_settings(locked_bucket), KEEP_TWO, apply=True, actor="test")
    assert report.deleted == [] and report.locked[records[2].backup_id].startswith("under a legal hold")


# -- replica: which backups have one, and recovery from it -------------------------------------

@pytest.fixture
def replicated(aws: LocalAws, local_template: dict[str, Any], local_targets: dict[str, Any]) -> Deployment:
    """The local stage deployed with a replica: its bucket in the second region, and the variables
    the stack sets on verify and recovery when `backup_protection.replication` is on."""
    reset_clients()  # the replica region's client too
    boto3.client("s3", region_name=REPLICA_REGION).create_bucket(
        Bucket=REPLICA_BUCKET, CreateBucketConfiguration={"LocationConstraint": REPLICA_REGION})
    boto3.client("s3", region_name=REPLICA_REGION).put_bucket_versioning(
        Bucket=REPLICA_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    environment = {**local_function_environment(), ENV_REPLICA_BUCKET: REPLICA_BUCKET,
                   ENV_REPLICA_REGION: REPLICA_REGION,
                   ENV_REPLICA_KMS_KEY: f"arn:aws:kms:{REPLICA_REGION}:123456789012:alias/warden/{STAGE}/replica"}
    return deploy_template(aws, local_template, STAGE, extra_environment=environment)


def replicate(aws: LocalAws, deployment: Deployment, record: dict[str, Any]) -> None:
    """What S3 replication does for one backup: the same keys and bytes in the replica bucket."""
    primary, bucket = aws.client("s3"), deployment.settings("verify").bucket
    replica = boto3.client("s3", region_name=REPLICA_REGION)
    for key in (record["data_key"], record["manifest_key"]):
        body = primary.get_object(Bucket=bucket, Key=key)["Body"].read()
        replica.put_object(Bucket=REPLICA_BUCKET, Key=key, Body=body, ServerSideEncryption="aws:kms")


@pytest.fixture
def production(aws: LocalAws, postgres: PostgresEndpoint) -> str:
    uri = create_database(postgres, PROD, replace=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1, 500) g")
    aws.client("secretsmanager").put_secret_value(
        SecretId=f"warden/{STAGE}/pg-local", SecretString=json.dumps(postgres_secret(postgres, PROD)))
    return uri


def backup_and_verify(aws: LocalAws, deployment: Deployment, *, replicated_by_s3: bool) -> dict[str, Any]:
    record, error = invoke(aws, deployment.function_named("backup"), {"target": "pg-local"})
    assert error is None, record
    if replicated_by_s3:
        replicate(aws, deployment, record)
    verified, error = invoke(aws, deployment.function_named("verify"),
                             {"target": "pg-local", "backup_id": record["backup_id"]})
    assert error is None and verified["status"] == "VERIFIED", verified
    return verified


def test_verify_records_which_backups_have_a_replica(aws: LocalAws, replicated: Deployment, production: str) -> None:
    copied = backup_and_verify(aws, replicated, replicated_by_s3=True)
    missing = backup_and_verify(aws, replicated, replicated_by_s3=False)
    assert copied["replica"] == "COMPLETED" and copied["replica_checked_at"]
    # no copy, and S3 reports no replication under way (moto sets none): it will not arrive
    assert missing["replica"] == "FAILED"
    catalog = Catalog(replicated.settings("verify").catalog_table)
    assert catalog.get("pg-local", copied["backup_id"]).replica == "COMPLETED"
    # once the copy is there, the next verify run finds it
    replicate(aws, replicated, missing)
    invoke(aws, replicated.function_named("verify"), {"target": "pg-local"})
    assert catalog.get("pg-local", missing["backup_id"]).replica == "COMPLETED"


def test_recovery_from_the_replica_restores_when_the_primary_copy_is_gone(
        aws: LocalAws, replicated: Deployment, production: str, postgres: PostgresEndpoint) -> None:
    # Given a verified backup with a replica, whose objects in the primary bucket are then deleted
    record = backup_and_verify(aws, replicated, replicated_by_s3=True)
    primary, bucket = aws.client("s3"), replicated.settings("recovery").bucket
    for key in (record["data_key"], record["manifest_key"]):
        primary.delete_object(Bucket=bucket, Key=key)
    # When a drill runs from the primary, it fails; from the replica, it succeeds
    from_primary = wait(aws, start(aws, replicated, {"target": "pg-local", "promotion": "none"}))
    assert from_primary["status"] == "FAILED"
    result = wait(aws, start(aws, replicated, {"target": "pg-local", "promotion": "none", "source": "replica"}))
    assert result["status"] == "SUCCEEDED", result
    state = StateStore(replicated.settings("recovery").state_table).get("pg-local")
    assert state.status.value == "RECOVERY_SUCCESS" and state.backup_id == record["backup_id"]
    assert not state.validation_errors


def test_recovery_from_the_replica_is_refused_without_a_completed_replica(
        aws: LocalAws, replicated: Deployment, production: str) -> None:
    backup_and_verify(aws, replicated, replicated_by_s3=False)
    result = wait(aws, start(aws, replicated, {"target": "pg-local", "promotion": "none", "source": "replica"}))
    assert result["status"] == "FAILED"
    assert "COMPLETED replica" in result.get("cause", "") + result.get("error", "")
