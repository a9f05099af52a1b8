"""`rds-snapshot` backups: the RDS side of warden.backup's one backup flow.

`warden.backup.run_backup` takes the lease (and the backup function its idempotency and metrics)
for every method; for a target with `backup.method` rds-snapshot it hands the run to
`back_up_snapshot`, which keeps the same record lifecycle (RUNNING → COMPLETED / FAILED) and audit
steps as a pg_dump backup. RDS makes and keeps the copy; Warden records it (`BackupRecord.snapshot`:
id, ARN, kind, engine version, allocated size) and writes a small manifest.json where the data of a
logical backup would be, naming the snapshot.

A snapshot may take longer than one 15-minute invocation. The run waits `backup.snapshot_wait_s`
(10 minutes by default) and, if RDS is still making it, leaves the record RUNNING with the snapshot
id and releases the lease. The record is finished from the snapshot's status later, by
`settle_snapshot`: the next backup run of the target (which starts no second snapshot while one is
still being made), `warden backup verify` of that backup, and the crashed-run cleanup (lease expiry)
— which therefore never marks a snapshot FAILED while RDS is still creating it.

Verify: the snapshot exists, is available and is encrypted → VERIFIED; otherwise CORRUPT with the
reason. Prune deletes the snapshot, and the record becomes EXPIRED only once RDS no longer has it.
Restore is RDS's (`restore-db-instance-from-db-snapshot` / `restore-db-cluster-from-snapshot`):
Warden refuses, naming the snapshot and the command.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from warden.config.backup import RDS_SNAPSHOT, SnapshotRef
from warden.config.target import Target
from warden.engines import rds_snapshot
from warden.engines.rds_snapshot import CONSISTENCY, SnapshotSource, SnapshotTimeout
from warden.errors import BackupRefused, ConfigError, WardenError
from warden.models import GOOD_BACKUP, BackupRecord, BackupStatus
from warden.stores import CatalogStore, Stores
from warden.stores.catalog import new_backup_id, object_prefix
from warden.stores.clients import aws_client
from warden.stores.leases import Lease

log = logging.getLogger(__name__)

METHOD = RDS_SNAPSHOT
POLL_S = 15.0
MANIFEST_VERSION = 1


def _rds() -> Any:
    return aws_client("rds")


def is_snapshot(record: BackupRecord) -> bool:
    return record.method == METHOD


# -- backup -------------------------------------------------------------------------------------

def back_up_snapshot(stores: Stores, target: Target, lease: Lease, actor: str, trigger: str) -> BackupRecord:
    """One rds-snapshot backup under the target's lease (see the module docstring). Returns the
    record: COMPLETED, or RUNNING while RDS is still making the snapshot. A snapshot still being made
    by an earlier run is returned instead of starting a second one."""
    if target.rds is None:
        raise ConfigError(f"target {target.name} backs up by rds-snapshot but names no RDS instance or cluster")
    catalog = stores.catalog
    rds = _rds()
    for pending in [r for r in catalog.list(target.name) if r.status is BackupStatus.RUNNING and is_snapshot(r)]:
        settled = settle_snapshot(stores, pending, actor, rds=rds)
        if settled.status is BackupStatus.RUNNING:
            assert settled.snapshot is not None
            stores.audit.audit(target=target.name, operation="backup", step="start",
                            outcome="skipped", actor=actor, backup_id=settled.backup_id,
                            reason=f"RDS snapshot {settled.snapshot.snapshot_id} is still being made")
            return settled

    started = datetime.now(UTC)
    clock = time.monotonic()
    backup_id = new_backup_id(started)
    record = catalog.create(BackupRecord(
        target=target.name, backup_id=backup_id, engine=target.engine, method=METHOD,
        status=BackupStatus.RUNNING, started_at=started, trigger=trigger, actor=actor,
    ))
    stores.audit.audit(target=target.name, operation="backup", step="start", outcome="ok",
                    actor=actor, backup_id=backup_id, trigger=trigger, method=METHOD)
    try:
        stores.leases.update(lease, backup_id=backup_id)  # the crashed-run cleanup settles this record
        identifier, kind = ((target.rds.instance_id, "instance") if target.rds.instance_id
                            else (target.rds.cluster_id, "cluster"))
        assert identifier
        source = rds_snapshot.resolve_source(identifier, kind=kind, rds=rds)
        described = rds_snapshot.start_snapshot(source, target=target.name, backup_id=backup_id, rds=rds)
        ref = SnapshotRef.model_validate(rds_snapshot.snapshot_of(source, described))
        record = record.model_copy(update={
            "snapshot": ref, "manifest_key": _write_manifest(stores, record, ref),
            "server_version": ref.engine_version, "format_version": f"{METHOD}/{source.kind}",
            "consistency": CONSISTENCY,
        })
        catalog.save(record, expect_status=BackupStatus.RUNNING)
        try:
            described = rds_snapshot.wait_available(source, described, wait_s=target.backup.snapshot_wait_s,
                                                    poll_s=POLL_S, started=clock, rds=rds)
        except SnapshotTimeout as waiting:
            latest = rds_snapshot.describe_snapshot(ref.snapshot_id, ref.kind, rds=rds) or described
            record = record.model_copy(update={"snapshot": _refreshed(ref, latest)})
            catalog.save(record, expect_status=BackupStatus.RUNNING)
            stores.audit.audit(target=target.name, operation="backup", step="waiting",
                            outcome="ok", actor=actor, backup_id=backup_id, snapshot_id=ref.snapshot_id,
                            detail=str(waiting))
            log.info("rds snapshot still being made", extra={"target": target.name, "backup_id": backup_id,
                                                             "snapshot": ref.snapshot_id})
            return record
        record = _complete(catalog, record, _refreshed(ref, described))
    except BaseException as err:
        failed = record.model_copy(update={
            "status": BackupStatus.FAILED, "finished_at": datetime.now(UTC), "error": f"{type(err).__name__}: {err}",
            "duration_s": round(time.monotonic() - clock, 3),
        })
        catalog.save(failed)
        stores.audit.audit(target=target.name, operation="backup", step="fail",
                        outcome="failed", actor=actor, backup_id=backup_id, error=failed.error)
        raise
    _audit_finish(stores, record, actor)
    return record


def settle_snapshot(stores: Stores, record: BackupRecord, actor: str, *, rds: Any | None = None) -> BackupRecord:
    """Finish a RUNNING rds-snapshot record from what RDS says now: available → COMPLETED; failed or
    gone → FAILED; still being made → RUNNING (its progress updated). Other records are returned
    as they are. A record whose run stopped before it recorded its snapshot is looked up by the
    snapshot id the run would have used (and its manifest written)."""
    if record.status is not BackupStatus.RUNNING or not is_snapshot(record):
        return record
    catalog = stores.catalog
    rds = rds or _rds()
    ref = record.snapshot
    if ref is None:
        snap_id = rds_snapshot.snapshot_id(record.target, record.backup_id)
        found = _find_any(snap_id, rds)
        if found is None:
            return _fail(stores, record, actor,
                         f"the run stopped before RDS started snapshot {snap_id}; no snapshot was made")
        ref = found
        record = record.model_copy(update={"snapshot": ref, "manifest_key": _write_manifest(stores, record, ref),
                                           "server_version": ref.engine_version})
    described = rds_snapshot.describe_snapshot(ref.snapshot_id, ref.kind, rds=rds)
    if described is None:
        return _fail(stores, record, actor, f"RDS snapshot {ref.snapshot_id} no longer exists")
    ref = _refreshed(ref, described)
    status = described.get("Status")
    if status == "available":
        record = _complete(catalog, record, ref)
        _audit_finish(stores, record, actor)
        return record
    if status in rds_snapshot.FAILED_STATUSES:
        return _fail(stores, record.model_copy(update={"snapshot": ref}), actor,
                     f"RDS snapshot {ref.snapshot_id} ended in status {status!r}")
    return catalog.save(record.model_copy(update={"snapshot": ref}), expect_status=BackupStatus.RUNNING)


# -- verify -------------------------------------------------------------------------------------

def verify_snapshot(stores: Stores, record: BackupRecord, *, actor: str) -> BackupRecord:
    """VERIFIED when the snapshot exists, is available and encrypted, and the manifest names it;
    CORRUPT with the reasons otherwise. A RUNNING record is settled first (and returned RUNNING if
    RDS is still making the snapshot)."""
    if record.status is BackupStatus.RUNNING:
        if record.snapshot is None:
            raise BackupRefused(f"backup {record.backup_id} of {record.target} is RUNNING and has no snapshot "
                                "recorded yet: the next backup run settles it")
        record = settle_snapshot(stores, record, actor)
        if record.status is not BackupStatus.COMPLETED:
            return record
    if record.status not in (*GOOD_BACKUP, BackupStatus.CORRUPT):
        raise BackupRefused(f"backup {record.backup_id} of {record.target} is {record.status}: nothing to verify")
    ref = record.snapshot
    problems: list[str] = []
    if ref is None:
        problems.append("the record names no RDS snapshot")
    else:
        described = rds_snapshot.describe_snapshot(ref.snapshot_id, ref.kind, rds=_rds())
        if described is None:
            problems.append(f"RDS snapshot {ref.snapshot_id} does not exist")
        else:
            ref = _refreshed(ref, described)
            if described.get("Status") != "available":
                problems.append(f"RDS snapshot {ref.snapshot_id} is {described.get('Status')!r}, not available")
            if not ref.encrypted:
                problems.append(f"RDS snapshot {ref.snapshot_id} is not encrypted")
        problems += _manifest_problems(stores, record, ref)
    previous = record.status
    record = record.model_copy(update={
        "status": BackupStatus.CORRUPT if problems else BackupStatus.VERIFIED, "snapshot": ref,
        "verified_at": datetime.now(UTC), "error": "; ".join(problems) if problems else None,
    })
    stores.catalog.save(record, expect_status=previous)
    stores.audit.audit(target=record.target, operation="verify", step="finish",
                    outcome="corrupt" if problems else "ok", actor=actor, backup_id=record.backup_id,
                    problems=problems, snapshot_id=ref.snapshot_id if ref else None)
    return record


def _manifest_problems(stores: Stores, record: BackupRecord, ref: SnapshotRef) -> list[str]:
    if not record.manifest_key or stores.missing("artifacts"):
        return ["the record has no manifest"]
    try:
        manifest = stores.artifacts.get_json(record.manifest_key)
    except WardenError as err:
        return [f"manifest: {err}"]
    named = (manifest.get("snapshot") or {}).get("snapshot_id")
    return [] if named == ref.snapshot_id else [f"manifest names snapshot {named!r}, not {ref.snapshot_id}"]


# -- restore ------------------------------------------------------------------------------------

def restore_refusal(record: BackupRecord) -> str:
    """Why Warden does not restore this backup, and the RDS command that does."""
    ref = record.snapshot or SnapshotRef(snapshot_id=rds_snapshot.snapshot_id(record.target, record.backup_id),
                                         kind="db-snapshot", source_identifier="?")
    return (f"backup {record.backup_id} of {record.target} is the RDS snapshot {ref.snapshot_id} ({ref.kind}); "
            "Warden restores pg_dump backups only. RDS restores snapshots into a new instance or cluster: "
            f"`{ref.restore_command}`")


# -- prune --------------------------------------------------------------------------------------

def delete_snapshots(records: Iterable[BackupRecord]) -> dict[str, str]:
    """Delete the RDS snapshots of the rds-snapshot records among `records`. Returns, by backup id,
    why a record must not become EXPIRED yet (the snapshot is still there, being deleted, or could
    not be deleted). A snapshot already gone counts as deleted. Other records are left alone."""
    errors: dict[str, str] = {}
    snapshots = [r for r in records if is_snapshot(r)]
    if not snapshots:
        return errors
    rds = _rds()
    for record in snapshots:
        ref = record.snapshot
        if ref is None:
            found = _find_any(rds_snapshot.snapshot_id(record.target, record.backup_id), rds)
            if found is None:
                continue
            ref = found
        try:
            described = rds_snapshot.describe_snapshot(ref.snapshot_id, ref.kind, rds=rds)
            if described is not None and described.get("Status") != "deleting":
                rds_snapshot.delete_snapshot({"snapshot_id": ref.snapshot_id, "snapshot_kind": ref.kind}, rds=rds)
                described = rds_snapshot.describe_snapshot(ref.snapshot_id, ref.kind, rds=rds)
        except (WardenError, ClientError) as err:
            errors[record.backup_id] = f"RDS snapshot {ref.snapshot_id}: {err}"
            continue
        if described is not None:
            errors[record.backup_id] = (f"RDS snapshot {ref.snapshot_id} is {described.get('Status')!r}; the "
                                        "record becomes EXPIRED once RDS no longer has it (next prune)")
    return errors


# -- helpers ------------------------------------------------------------------------------------

def _refreshed(ref: SnapshotRef, described: dict[str, Any]) -> SnapshotRef:
    progress = described.get("PercentProgress")
    encrypted = described.get("Encrypted", described.get("StorageEncrypted"))
    return ref.model_copy(update={
        "status": described.get("Status", ref.status),
        "percent_progress": int(progress) if progress is not None else ref.percent_progress,
        "encrypted": bool(encrypted) if encrypted is not None else ref.encrypted,
        "snapshot_arn": ref.snapshot_arn or described.get("DBSnapshotArn") or described.get("DBClusterSnapshotArn"),
    })


def _complete(catalog: CatalogStore, record: BackupRecord, ref: SnapshotRef) -> BackupRecord:
    finished = datetime.now(UTC)
    return catalog.save(record.model_copy(update={
        "status": BackupStatus.COMPLETED, "finished_at": finished, "snapshot": ref,
        "server_version": ref.engine_version or record.server_version,
        "duration_s": round((finished - record.started_at).total_seconds(), 3), "error": None,
    }), expect_status=BackupStatus.RUNNING)


def _fail(stores: Stores, record: BackupRecord, actor: str, reason: str) -> BackupRecord:
    failed = stores.catalog.save(record.model_copy(update={
        "status": BackupStatus.FAILED, "finished_at": datetime.now(UTC), "error": reason,
    }), expect_status=BackupStatus.RUNNING)
    stores.audit.audit(target=record.target, operation="backup", step="fail", outcome="failed",
                    actor=actor, backup_id=record.backup_id, error=reason)
    return failed


def _audit_finish(stores: Stores, record: BackupRecord, actor: str) -> None:
    assert record.snapshot is not None
    stores.audit.audit(target=record.target, operation="backup", step="finish", outcome="ok",
                    actor=actor, backup_id=record.backup_id, snapshot_id=record.snapshot.snapshot_id,
                    snapshot_arn=record.snapshot.snapshot_arn, duration_s=record.duration_s)


def _write_manifest(stores: Stores, record: BackupRecord, ref: SnapshotRef) -> str:
    """manifest.json where a logical backup's data would be, naming the snapshot that holds the data."""
    key = f"{object_prefix(record.target, record.backup_id)}manifest.json"
    stores.artifacts.put_json(key, {
        "manifest_version": MANIFEST_VERSION,
        "target": record.target,
        "backup_id": record.backup_id,
        "engine": record.engine.value,
        "method": METHOD,
        "format_version": f"{METHOD}/{'cluster' if ref.kind == 'db-cluster-snapshot' else 'instance'}",
        "server_version": ref.engine_version,
        "data_key": None,
        "data": f"the RDS snapshot {ref.snapshot_arn or ref.snapshot_id}; RDS keeps and restores it",
        "snapshot": ref.model_dump(mode="json", exclude={"status", "percent_progress"}),
        "consistency": CONSISTENCY,
        "started_at": record.started_at.isoformat(),
    })
    return key


def _find_any(snap_id: str, rds: Any) -> SnapshotRef | None:
    """The snapshot `snap_id`, instance or cluster, as a SnapshotRef; None when RDS has neither."""
    for kind, source_kind, source_key in (("db-snapshot", "instance", "DBInstanceIdentifier"),
                                          ("db-cluster-snapshot", "cluster", "DBClusterIdentifier")):
        described = rds_snapshot.describe_snapshot(snap_id, kind, rds=rds)
        if described is not None:
            source = SnapshotSource(source_kind, str(described.get(source_key, "")), str(described.get("Engine", "")),
                                    str(described.get("EngineVersion", "")),
                                    int(described.get("AllocatedStorage") or 0))
            return SnapshotRef.model_validate(rds_snapshot.snapshot_of(source, described))
    return None
