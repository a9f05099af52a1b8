"""The cross-region replica of the backups: which backups have one, and reading from it.

S3 replicates every new object version of the backup bucket into the replica bucket (infra/replica.py)
and reports progress on the source object (`ReplicationStatus`: PENDING, COMPLETED, FAILED). A
backup's `replica` on its catalog record is what verify found:

    COMPLETED  its data and manifest are in the replica bucket, each the size of the source;
    PENDING    S3 has not finished (or the copy is not visible yet): verify looks again next run;
    FAILED     S3 reports FAILED, or the source has no replication status and the replica has no
               copy (written before replication was turned on: S3 Batch Replication can copy it).

The replica's own copy is what decides COMPLETED, not the source's status alone: a recovery from
the replica needs the copy to be there.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from warden.config.protection import ReplicaSettings
from warden.errors import ConfigError, WardenError
from warden.models import GOOD_BACKUP, BackupRecord
from warden.settings import Settings
from warden.stores import ArtifactStore, Stores
from warden.stores.artifacts import ArtifactError, S3Artifacts
from warden.stores.catalog import StaleRecord
from warden.stores.clients import aws_client

# How many not-yet-COMPLETED replicas one verify run looks at again (newest first).
RECHECK_LIMIT = 10


def replica_s3(region: str) -> Any:
    """An S3 client in the replica's region (cached; endpoint from AWS_ENDPOINT_URL like every client)."""
    return aws_client("s3", region)


def _head(artifacts: ArtifactStore, key: str) -> dict[str, Any] | None:
    try:
        return artifacts.head(key)
    except ArtifactError as err:
        raise WardenError(f"cannot read s3://{artifacts.bucket}/{key}: {err.code}") from err


def replica_artifacts(replica: ReplicaSettings) -> S3Artifacts:
    """The replica bucket, read through a client in the replica's region."""
    return S3Artifacts(replica.bucket, kms_key_id=replica.kms_key, s3=replica_s3(replica.region))


def replica_status(stores: Stores, replica: ReplicaSettings, record: BackupRecord,
                   replica_store: ArtifactStore | None = None) -> str:
    """COMPLETED, PENDING or FAILED for one backup (see the module docstring)."""
    if stores.missing("artifacts"):
        raise ConfigError(f"stage {stores.settings.stage!r} lacks a bucket")
    keys = [k for k in (record.data_key, record.manifest_key) if k]
    if not keys:
        return "FAILED"
    copies = replica_store or replica_artifacts(replica)
    statuses = []
    for key in keys:
        source = _head(stores.artifacts, key)
        if source is None:
            raise WardenError(f"backup object s3://{stores.artifacts.bucket}/{key} does not exist")
        state = source.get("ReplicationStatus")
        if state == "FAILED":
            return "FAILED"
        copy = _head(copies, key)
        if copy is not None and copy.get("ContentLength") == source.get("ContentLength"):
            statuses.append("COMPLETED")
        elif state in ("PENDING", "COMPLETED"):
            statuses.append("PENDING")
        else:
            statuses.append("FAILED")
    for status in ("FAILED", "PENDING"):
        if status in statuses:
            return status
    return "COMPLETED"


def record_replica(stores: Stores, replica: ReplicaSettings, record: BackupRecord) -> BackupRecord:
    """Check one backup's replica and write the result on its catalog record."""
    if stores.missing("catalog"):
        raise ConfigError(f"stage {stores.settings.stage!r} lacks a catalog table")
    status = replica_status(stores, replica, record)
    updated = record.model_copy(update={"replica": status, "replica_checked_at": datetime.now(UTC)})
    return stores.catalog.save(updated, expect_status=record.status)


def refresh_replicas(stores: Stores, replica: ReplicaSettings, target: str,
                     limit: int = RECHECK_LIMIT) -> list[BackupRecord]:
    """Check the replicas of the target's newest good backups whose replica is not yet COMPLETED
    (at most `limit`): a PENDING one becomes COMPLETED once S3 has copied it."""
    if stores.missing("catalog"):
        raise ConfigError(f"stage {stores.settings.stage!r} lacks a catalog table")
    checked: list[BackupRecord] = []
    for record in stores.catalog.list(target):
        if len(checked) >= limit:
            break
        if record.status not in GOOD_BACKUP or record.replica == "COMPLETED" or record.snapshot is not None:
            continue
        try:
            checked.append(record_replica(stores, replica, record))
        except StaleRecord:  # changed under us (prune, verify): the next run looks again
            continue
    return checked


def source_settings(settings: Settings, replica: ReplicaSettings | None) -> Settings:
    """`settings` reading backups from the replica: its bucket and its key (restore, validation)."""
    if replica is None:
        raise ConfigError(f"stage {settings.stage!r} has no replica (backup_protection.replication is off)")
    return settings.model_copy(update={"bucket": replica.bucket, "kms_key_id": replica.kms_key})


def source_stores(stores: Stores, replica: ReplicaSettings | None) -> Stores:
    """`stores` reading backups from the replica bucket (restore, validation); the catalog, audit and
    leases stay the stage's. Read with the stage's own S3 client, as `source_settings` did."""
    settings = source_settings(stores.settings, replica)
    return replace(stores, settings=settings,  # source_settings set the bucket from the replica
                   artifacts=S3Artifacts(str(settings.bucket), kms_key_id=settings.kms_key_id, pinned=False))
