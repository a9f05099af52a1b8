"""Prune: apply a target's retention policy (warden.retention) to its catalog and its objects.

Dry-run shows every decision with its reasons and changes nothing. Apply deletes the objects of
every backup the policy deletes — every version of every key under the backup's prefix, in
DeleteObjects batches of 1000 keys — and only then marks its record EXPIRED; a record whose objects
did not all go stays as it was, so a deletion that fails part-way leaves the catalog true and the
next run finishes the job. Each deleted backup is audited.

Object Lock: when the bucket has Object Lock on, every version of a doomed backup is looked at
(HeadObject: its retain-until date and legal hold) before anything is deleted. A backup with any
version still locked is not touched at all (no DeleteObjects names any of its versions), is
reported in `locked` with the latest retain-until date, audited ("locked"), and keeps its record as
it was, so the first run after the lock expires deletes it. Those look-ups are counted in
`lock_calls`, apart from the list and delete calls in `s3_calls`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from warden.config.target import Target
from warden.errors import ConfigError, WardenError
from warden.models import BackupRecord, BackupStatus
from warden.retention import Decision, decide
from warden.snapshot_backup import delete_snapshots
from warden.stores import ArtifactStore, Stores
from warden.stores.artifacts import ArtifactError
from warden.stores.catalog import object_prefix
from warden.stores.leases import LeaseHeld

BATCH = 1000  # DeleteObjects takes at most 1000 keys a call
PRUNE_LEASE_S = 15 * 60


@dataclass
class PruneReport:
    target: str
    applied: bool
    decisions: list[Decision]
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes_freed: int = 0
    s3_calls: int = 0
    already_running: str | None = None
    locked: dict[str, str] = field(default_factory=dict)  # backup id -> "locked until ..." (Object Lock)
    lock_calls: int = 0

    @property
    def kept(self) -> int:
        return sum(1 for d in self.decisions if d.keep)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "applied": self.applied, "kept": self.kept,
            "to_delete": sum(1 for d in self.decisions if not d.keep), "deleted": self.deleted,
            "failed": self.failed, "bytes_freed": self.bytes_freed, "s3_calls": self.s3_calls,
            "already_running": self.already_running, "locked": self.locked, "lock_calls": self.lock_calls,
            "decisions": [{"backup_id": d.backup_id, "keep": d.keep, "status": str(d.status),
                           "reasons": list(d.reasons)} for d in self.decisions],
        }


def run_prune(stores: Stores, target: Target, *, apply: bool, actor: str,
              now: datetime | None = None) -> PruneReport:
    """Decide, and with `apply` delete. Takes the target's lease to apply (never beside a backup)."""
    if stores.missing("catalog", "artifacts", "leases"):
        raise ConfigError(f"stage {stores.settings.stage!r} lacks the catalog, state table or bucket")
    catalog = stores.catalog
    now = now or datetime.now(UTC)
    records = {r.backup_id: r for r in catalog.list(target.name)}
    decisions = decide(records.values(), target.retention, now)
    report = PruneReport(target=target.name, applied=apply, decisions=decisions)
    doomed = [records[d.backup_id] for d in decisions if not d.keep]
    if not apply or not doomed:
        return report
    leases = stores.leases
    try:
        lease, _ = leases.acquire(target.name, f"{actor}#{uuid.uuid4().hex[:8]}", "prune", PRUNE_LEASE_S)
    except LeaseHeld as held:
        report.already_running = str(held)
        return report
    try:
        _delete(stores, target, doomed, {d.backup_id: d for d in decisions}, report, actor, now)
    finally:
        leases.release(lease)
    return report


def _delete(stores: Stores, target: Target, doomed: list[BackupRecord],
            decisions: dict[str, Decision], report: PruneReport, actor: str, now: datetime) -> None:
    catalog, artifacts = stores.catalog, stores.artifacts
    # rds-snapshot backups: the snapshot goes first; its record (and manifest) stay until RDS no longer has it.
    errors: dict[str, str] = delete_snapshots(doomed)
    versions, sizes, calls = _versions_by_backup(artifacts, target.name,
                                                 {r.backup_id for r in doomed if r.backup_id not in errors})
    report.s3_calls += calls
    report.locked = _locked_backups(artifacts, versions, now, report)
    objects: list[tuple[str, dict[str, str]]] = [
        (backup_id, obj) for record in doomed for backup_id in [record.backup_id] if backup_id not in report.locked
        for obj in versions[backup_id]]
    for start in range(0, len(objects), BATCH):
        batch = objects[start:start + BATCH]
        owner = {(o["Key"], o.get("VersionId")): backup_id for backup_id, o in batch}
        try:
            failures = artifacts.delete_versions([o for _, o in batch])
        except ArtifactError as err:
            for backup_id, _ in batch:
                errors.setdefault(backup_id, f"DeleteObjects failed: {err.code}")
            continue
        finally:
            report.s3_calls += 1
        for failure in failures:
            backup_id = owner.get((failure["Key"], failure.get("VersionId")), "?")
            errors.setdefault(backup_id, f"{failure['Key']}: {failure.get('Code')} {failure.get('Message', '')}")
    for record in doomed:
        if record.backup_id in report.locked:  # kept as it is: a later run deletes it once the lock expires
            stores.audit.audit(target=target.name, operation="prune", step="delete",
                            outcome="locked", actor=actor, backup_id=record.backup_id,
                            reason=report.locked[record.backup_id])
            continue
        if record.backup_id in errors:
            report.failed[record.backup_id] = errors[record.backup_id]
            stores.audit.audit(target=target.name, operation="prune", step="delete",
                            outcome="failed", actor=actor, backup_id=record.backup_id, error=errors[record.backup_id])
            continue
        catalog.save(record.model_copy(update={"status": BackupStatus.EXPIRED}), expect_status=record.status)
        report.deleted.append(record.backup_id)
        report.bytes_freed += sizes[record.backup_id]
        stores.audit.audit(target=target.name, operation="prune", step="delete", outcome="ok",
                        actor=actor, backup_id=record.backup_id, was=str(record.status),
                        reasons=list(decisions[record.backup_id].reasons), bytes=sizes[record.backup_id])


def _locked_backups(artifacts: ArtifactStore, versions: dict[str, list[dict[str, str]]], now: datetime,
                    report: PruneReport) -> dict[str, str]:
    """The doomed backups with a version under Object Lock now: {backup id: "locked until <date> (<mode>)"}."""
    report.lock_calls += 1
    try:
        enabled = artifacts.object_lock_enabled()
    except ArtifactError as err:
        raise WardenError(f"cannot read the Object Lock configuration of {artifacts.bucket}: {err.code}") from err
    if not enabled:
        return {}
    locked: dict[str, str] = {}
    for backup_id, objects in versions.items():
        holds: list[str] = []
        latest: tuple[datetime, str] | None = None
        for obj in objects:
            report.lock_calls += 1
            try:
                head = artifacts.head(obj["Key"], obj["VersionId"])
            except ArtifactError as err:
                if err.code in ("405", "MethodNotAllowed"):  # a delete marker: no lock
                    continue
                raise WardenError(f"cannot read the lock of {obj['Key']}: {err.code}") from err
            if head is None:
                raise WardenError(f"cannot read the lock of {obj['Key']}: 404")
            if head.get("ObjectLockLegalHoldStatus") == "ON":
                holds.append(obj["Key"])
            until = head.get("ObjectLockRetainUntilDate")
            if until is not None and until > now and (latest is None or until > latest[0]):
                latest = (until, str(head.get("ObjectLockMode", "")))
        if latest is not None:
            locked[backup_id] = f"locked until {latest[0].astimezone(UTC).isoformat()} ({latest[1]})"
        elif holds:
            locked[backup_id] = f"under a legal hold ({', '.join(sorted(holds))})"
    return locked


def _versions_by_backup(artifacts: ArtifactStore, target: str,
                        backup_ids: set[str]) -> tuple[dict[str, list[dict[str, str]]], dict[str, int], int]:
    """Every version and delete marker under the doomed backups' prefixes, found by listing the
    target's prefix once (pages of 1000), so S3 calls stay at list pages + deletions / 1000."""
    prefixes = {object_prefix(target, b): b for b in backup_ids}
    versions: dict[str, list[dict[str, str]]] = defaultdict(list)
    sizes: dict[str, int] = defaultdict(int)
    calls = 0
    try:
        for page in artifacts.version_pages(f"{target}/"):
            calls += 1
            for obj in page:
                backup_id = prefixes.get(_prefix_of(obj["Key"]))
                if backup_id is None:
                    continue
                versions[backup_id].append({"Key": obj["Key"], "VersionId": obj["VersionId"]})
                if not obj.get("DeleteMarker") and obj.get("IsLatest"):
                    sizes[backup_id] += int(obj.get("Size", 0))
    except ArtifactError as err:
        raise WardenError(f"cannot list backups of {target}: {err.code}") from err
    return versions, sizes, calls


def _prefix_of(key: str) -> str:
    return key.rsplit("/", 1)[0] + "/"

