"""`rds-snapshot`: a storage snapshot of an RDS instance or an Aurora cluster, through boto3.

RDS keeps the data (no object of Warden's in S3); Warden records the snapshot's id and ARN on the
backup record. The snapshot id is derived from the target and the backup id, so a retried run finds
the snapshot it already started instead of making a second one. An Aurora member instance is
snapshotted as its cluster (Aurora has no instance snapshots).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from warden.engines.base import BackupFailed, ExportResult
from warden.errors import ConfigError, DatabaseUnavailable
from warden.stores.clients import aws_client

log = logging.getLogger(__name__)

GiB = 1024**3
METHOD = "rds-snapshot"
DEFAULT_WAIT_S = 3600.0
DEFAULT_POLL_S = 30.0
FAILED_STATUSES = ("failed", "incompatible-restore", "deleting")
CONSISTENCY = ("crash-consistent: an RDS storage snapshot of the instance (or of the Aurora cluster volume) "
               "at one point in time")


class SnapshotSourceNotFound(BackupFailed, ConfigError):
    """No RDS instance or Aurora cluster has the configured identifier."""


class SnapshotTimeout(BackupFailed):
    """The snapshot did not become available in time (it may still finish; a retry finds it)."""


@dataclass(frozen=True)
class SnapshotSource:
    kind: str  # "instance" | "cluster"
    identifier: str
    engine: str
    engine_version: str
    allocated_gib: int


def snapshot_id(target: str, backup_id: str) -> str:
    """A valid RDS snapshot identifier (letters, digits, single hyphens, starts with a letter)."""
    raw = f"warden-{target}-{backup_id}".lower()
    clean = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", raw)).strip("-")
    return clean[:255].rstrip("-")


def snapshot_prefix(target: str) -> str:
    """What every snapshot id of `target` starts with (`warden-<target>-`): IAM scopes snapshot
    actions to `<prefix>*`. Backup ids start with a digit, so the prefix ends where they begin."""
    return snapshot_id(target, "0")[:-1]


def create_snapshot(
    identifier: str,
    *,
    target: str,
    backup_id: str,
    kind: str | None = None,
    wait_s: float = DEFAULT_WAIT_S,
    poll_s: float = DEFAULT_POLL_S,
    tags: dict[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rds: Any | None = None,
) -> ExportResult:
    """Snapshot the RDS instance (or Aurora cluster) `identifier` and wait, at most `wait_s`, until
    the snapshot is available. Idempotent per (`target`, `backup_id`). `kind` ("instance" /
    "cluster") skips finding out which `identifier` is. `rds` defaults to Warden's cached client."""
    rds = rds or aws_client("rds")
    source = resolve_source(identifier, kind=kind, rds=rds)
    started = clock()
    snapshot = start_snapshot(source, target=target, backup_id=backup_id, tags=tags, rds=rds)
    snapshot = wait_available(source, snapshot, wait_s=wait_s, poll_s=poll_s, sleep=sleep, clock=clock,
                              started=started, rds=rds)
    log.info("rds snapshot available", extra={"snapshot": snapshot_of(source, snapshot)["snapshot_id"],
                                              "source": identifier, "kind": source.kind})
    return export_result(source, snapshot, duration_s=clock() - started)


def resolve_source(identifier: str, *, kind: str | None = None, rds: Any | None = None) -> SnapshotSource:
    """The instance or cluster `identifier` names. With `kind` "cluster" only the cluster is
    described (an IAM policy scoped to the cluster need not allow describing instances)."""
    rds = rds or aws_client("rds")
    if kind == "cluster":
        return _cluster(rds, identifier)
    return _find_source(rds, identifier)


def start_snapshot(source: SnapshotSource, *, target: str, backup_id: str, tags: dict[str, str] | None = None,
                   rds: Any | None = None) -> dict[str, Any]:
    """Start the snapshot of (`target`, `backup_id`), or find the one a previous try started;
    returns RDS's description of it (usually still "creating")."""
    rds = rds or aws_client("rds")
    snap_id = snapshot_id(target, backup_id)
    all_tags = [{"Key": k, "Value": v} for k, v in
                {"warden:target": target, "warden:backup-id": backup_id, **(tags or {})}.items()]
    return _existing(rds, source, snap_id) or _start(rds, source, snap_id, all_tags)


def wait_available(source: SnapshotSource, snapshot: dict[str, Any], *, wait_s: float,
                   poll_s: float = DEFAULT_POLL_S, sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic, started: float | None = None,
                   rds: Any | None = None) -> dict[str, Any]:
    """Poll until the snapshot is available; `SnapshotTimeout` when `wait_s` (from `started`) runs
    out first, `BackupFailed` when it fails or disappears."""
    rds = rds or aws_client("rds")
    snap_id = snapshot_of(source, snapshot)["snapshot_id"]
    deadline = (clock() if started is None else started) + wait_s
    while snapshot.get("Status") != "available":
        status = snapshot.get("Status", "unknown")
        if status in FAILED_STATUSES:
            raise BackupFailed(f"RDS snapshot {snap_id} of {source.identifier} ended in status {status!r}")
        if clock() + poll_s > deadline:
            raise SnapshotTimeout(
                f"RDS snapshot {snap_id} of {source.identifier} still {status!r} after {wait_s:.0f} s "
                f"({snapshot.get('PercentProgress', '?')}% done)")
        sleep(poll_s)
        snapshot = _existing(rds, source, snap_id) or {"Status": "missing"}
        if snapshot["Status"] == "missing":
            raise BackupFailed(f"RDS snapshot {snap_id} of {source.identifier} disappeared while it was being made")
    return snapshot


def describe_snapshot(snap_id: str, kind: str, *, rds: Any | None = None) -> dict[str, Any] | None:
    """RDS's description of snapshot `snap_id` ("db-snapshot" / "db-cluster-snapshot"); None if gone."""
    rds = rds or aws_client("rds")
    source = SnapshotSource("cluster" if kind == "db-cluster-snapshot" else "instance", "", "", "", 0)
    return _existing(rds, source, snap_id)


def snapshot_of(source: SnapshotSource, snapshot: dict[str, Any]) -> dict[str, Any]:
    """The fields Warden records about a snapshot (see `warden.config.backup.SnapshotRef`)."""
    created: Any = snapshot.get("SnapshotCreateTime")
    progress = snapshot.get("PercentProgress")
    return {
        "snapshot_id": snapshot.get("DBClusterSnapshotIdentifier") or snapshot.get("DBSnapshotIdentifier"),
        "snapshot_arn": snapshot.get("DBClusterSnapshotArn") or snapshot.get("DBSnapshotArn"),
        "kind": "db-cluster-snapshot" if source.kind == "cluster" else "db-snapshot",
        "source_identifier": source.identifier,
        "engine": str(snapshot.get("Engine") or source.engine),
        "engine_version": str(snapshot.get("EngineVersion") or source.engine_version),
        "allocated_storage_gib": int(snapshot.get("AllocatedStorage") or source.allocated_gib or 0),
        "encrypted": bool(snapshot.get("Encrypted") or snapshot.get("StorageEncrypted")),  # instance | cluster
        "kms_key_id": snapshot.get("KmsKeyId"),
        "status": snapshot.get("Status"),
        "percent_progress": int(progress) if progress is not None else None,
        "created_at": created.isoformat() if hasattr(created, "isoformat") else created,
    }


def export_result(source: SnapshotSource, snapshot: dict[str, Any], *, duration_s: float) -> ExportResult:
    """An available snapshot as an `ExportResult` (what the engines' exports return)."""
    ref = snapshot_of(source, snapshot)
    allocated = ref["allocated_storage_gib"]
    return ExportResult(
        method=METHOD,
        format_version=f"{METHOD}/{source.kind}",
        server_version=ref["engine_version"],
        extension="",
        counts={},
        schema={"engine": source.engine, "engine_version": source.engine_version},
        consistency=CONSISTENCY,
        details={
            "snapshot_id": ref["snapshot_id"],
            "snapshot_arn": ref["snapshot_arn"],
            "snapshot_kind": ref["kind"],
            "source_identifier": source.identifier,
            "allocated_storage_gib": allocated,
            "size_bytes": allocated * GiB,
            "encrypted": ref["encrypted"],
            "kms_key_id": ref["kms_key_id"],
            "created_at": ref["created_at"],
            "duration_s": round(duration_s, 3),
        },
    )


def delete_snapshot(details: dict[str, Any], *, rds: Any | None = None) -> None:
    """Delete the snapshot a `create_snapshot` result describes; one already gone is fine."""
    rds = rds or aws_client("rds")
    snap_id = details["snapshot_id"]
    try:
        if details.get("snapshot_kind") == "db-cluster-snapshot":
            rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=snap_id)
        else:
            rds.delete_db_snapshot(DBSnapshotIdentifier=snap_id)
    except ClientError as err:
        if _code(err) not in ("DBSnapshotNotFound", "DBSnapshotNotFoundFault", "DBClusterSnapshotNotFoundFault"):
            raise _translate(err, f"cannot delete RDS snapshot {snap_id}") from err


def _find_source(rds: Any, identifier: str) -> SnapshotSource:
    try:
        instances = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
    except ClientError as err:
        if _code(err) not in ("DBInstanceNotFound", "DBInstanceNotFoundFault"):
            raise _translate(err, f"cannot describe RDS instance {identifier}") from err
        instances = []
    if instances:
        inst = instances[0]
        if inst.get("DBClusterIdentifier"):  # Aurora: the data lives in the cluster volume
            return _cluster(rds, inst["DBClusterIdentifier"])
        return SnapshotSource("instance", identifier, inst.get("Engine", ""), inst.get("EngineVersion", ""),
                       int(inst.get("AllocatedStorage") or 0))
    return _cluster(rds, identifier)


def _cluster(rds: Any, identifier: str) -> SnapshotSource:
    try:
        cluster = rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]
    except ClientError as err:
        if _code(err) in ("DBClusterNotFoundFault", "DBClusterNotFound"):
            raise SnapshotSourceNotFound(f"no RDS instance or Aurora cluster named {identifier!r}") from None
        raise _translate(err, f"cannot describe RDS cluster {identifier}") from err
    return SnapshotSource("cluster", identifier, cluster.get("Engine", ""), cluster.get("EngineVersion", ""),
                   int(cluster.get("AllocatedStorage") or 0))


def _existing(rds: Any, source: SnapshotSource, snap_id: str) -> dict[str, Any] | None:
    try:
        if source.kind == "cluster":
            found = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=snap_id)["DBClusterSnapshots"]
        else:
            found = rds.describe_db_snapshots(DBSnapshotIdentifier=snap_id)["DBSnapshots"]
    except ClientError as err:
        if _code(err) in ("DBSnapshotNotFound", "DBSnapshotNotFoundFault", "DBClusterSnapshotNotFoundFault"):
            return None
        raise _translate(err, f"cannot describe RDS snapshot {snap_id}") from err
    return dict(found[0]) if found else None


def _start(rds: Any, source: SnapshotSource, snap_id: str, tags: list[dict[str, str]]) -> dict[str, Any]:
    try:
        if source.kind == "cluster":
            return dict(rds.create_db_cluster_snapshot(
                DBClusterSnapshotIdentifier=snap_id, DBClusterIdentifier=source.identifier, Tags=tags,
            )["DBClusterSnapshot"])
        return dict(rds.create_db_snapshot(
            DBSnapshotIdentifier=snap_id, DBInstanceIdentifier=source.identifier, Tags=tags,
        )["DBSnapshot"])
    except ClientError as err:
        raise _translate(err, f"cannot start RDS snapshot {snap_id} of {source.identifier}") from err


def _translate(err: ClientError, what: str) -> Exception:
    code = _code(err)
    message = f"{what}: {code}: {err.response.get('Error', {}).get('Message', '')}".rstrip(": ")
    if code in ("InvalidDBInstanceState", "InvalidDBInstanceStateFault", "InvalidDBClusterStateFault",
                "Throttling", "ThrottlingException", "RequestLimitExceeded"):
        return DatabaseUnavailable(message)  # transient: the instance is busy (backing up, modifying...)
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        return ConfigError(message)
    return BackupFailed(message)


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", "ClientError"))
