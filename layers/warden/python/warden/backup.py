"""Backup, verify and restore of a target, engine-agnostic.

Backup: lease → catalog record RUNNING → the engine's export streams through SHA-256 into an S3
multipart upload → manifest.json beside the data → record COMPLETED → audit. On any failure the
upload is aborted (no partial object), the record says FAILED with the reason, the failure is
audited, and the error propagates (so the invocation fails and the alarm fires).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warden.config.backup import RDS_SNAPSHOT
from warden.config.credentials import DatabaseSecret
from warden.config.target import Engine, Target
from warden.engines import engine_for
from warden.engines.base import DeadlinePassed, RestoreRefused, RestoreResult
from warden.errors import BackupRefused, WardenError
from warden.models import GOOD_BACKUP, BackupRecord, BackupStatus
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.artifacts import ArtifactWriter, OutOfTime, json_bytes
from warden.stores.base import CatalogStore, LeaseStore
from warden.stores.catalog import StaleRecord, new_backup_id, object_prefix
from warden.stores.leases import Lease, LeaseHeld, LeaseLost

MANIFEST_VERSION = 1
METHODS = {Engine.NEO4J: "neo4j-logical", Engine.POSTGRES: "pg_dump"}
EXTENSIONS = {Engine.NEO4J: "wnj.gz", Engine.POSTGRES: "dump"}
# A backup runs inside one Lambda invocation (15 min at most, the function's timeout); the lease
# outlives it a little. The handler stops a backup FINISH_MARGIN_S before the invocation ends, so that
# aborting the upload and recording FAILED still happen (docs: README "A backup's time budget").
BACKUP_TIMEOUT_S = 15 * 60
BACKUP_LEASE_S = BACKUP_TIMEOUT_S + 60
FINISH_MARGIN_S = 30

log = logging.getLogger(__name__)


class BackupOutOfTime(WardenError):
    """The backup could not finish within its invocation's time budget; it was stopped cleanly.
    `backup_id`: its FAILED record (None when it was not started)."""

    backup_id: str | None = None


class BackupNotStarted(BackupOutOfTime):
    """The invocation had less time left than the finish margin: the backup was refused, nothing touched."""


def _out_of_time(target: Target, written: int, budget_s: float, stalled: str | None = None,
                 backup_id: str | None = None) -> BackupOutOfTime:
    advice = ("backup.method rds-snapshot backs up an RDS / Aurora database of any size; "
              if target.engine is Engine.POSTGRES and target.rds is not None else "")
    err = BackupOutOfTime(
        f"the backup of {target.name} did not finish within its time budget of {budget_s:.0f} s "
        f"({written / 2**20:.1f} MiB written, about {written / 2**20 / max(budget_s, 1e-3):.1f} MiB/s)"
        f"{'; ' + stalled if stalled else ''}: a backup has to finish inside one invocation of the backup "
        f"function (at most "
        f"{BACKUP_TIMEOUT_S // 60} min); {advice}see the README section \"A backup's time budget\"")
    err.backup_id = backup_id
    return err


def engine_options(settings: Settings, engine: Engine) -> dict[str, Any]:
    """Per-engine settings for export and restore (where PostgreSQL's client tools are)."""
    if engine is Engine.POSTGRES and settings.pg_bin_dir:
        return {"configured_bin_dir": Path(settings.pg_bin_dir)}
    return {}


@dataclass(frozen=True)
class BackupOutcome:
    """What a backup request came to: a record, or "already running" with who holds the lease."""

    record: BackupRecord | None
    already_running: str | None = None


def run_backup(stores: Stores, target: Target, *, actor: str, trigger: str = "manual",
               export_options: dict[str, Any] | None = None,
               secret_loader: Callable[[Target], DatabaseSecret] | None = None,
               held_lease: Lease | None = None, deadline: float | None = None, runner: str = "lambda",
               on_progress: Callable[[int], None] | None = None, lease_ttl_s: float = BACKUP_LEASE_S,
               renew_lease: bool = False, execution: str | None = None) -> BackupOutcome:
    """Back up one target. A second trigger while one runs returns "already running" and changes
    nothing; a lease left by a crashed run is taken over and its leftovers cleaned up first.

    `held_lease`: the caller already holds the target's lease (a recovery's safety backup); the
    backup runs under it and leaves it held. `deadline` (`time.monotonic()`): an export still
    writing then is stopped, its upload aborted and the record FAILED with `BackupOutOfTime`.

    `runner` ("lambda", "fargate") is recorded on the record (and the lease, with the task's
    `execution` when known). While the export writes, its progress is saved on the RUNNING record
    every `settings.progress_interval_s`; `on_progress` gets the bytes written after every write.
    `lease_ttl_s`: the lease's TTL; with `renew_lease` a background thread renews it every quarter
    of that (a run with no deadline), and a lease that cannot be renewed stops the export at its
    next write: the record is FAILED with `LeaseLost`.
    """
    stores.require("catalog", "leases", "artifacts")
    if deadline is not None and (budget := deadline - time.monotonic()) <= 0:
        refused = BackupNotStarted(
            f"the backup of {target.name} was not started: its time budget of {budget:.0f} s leaves no time "
            f"to export (the invocation had less than the {FINISH_MARGIN_S} s finish margin left); nothing "
            "was touched; see the README section \"A backup's time budget\"")
        stores.audit.audit(target=target.name, operation="backup", step="start", outcome="refused", actor=actor,
                           trigger=trigger, reason=str(refused))
        raise refused
    load = secret_loader or stores.secrets.load
    run = _Run(runner=runner, on_progress=on_progress)
    if held_lease is not None:
        return BackupOutcome(record=_backup_under_lease(stores, target, held_lease, actor, trigger,
                                                        export_options or {}, load, deadline, run))
    owner = f"{actor}#{uuid.uuid4().hex[:8]}"
    marks = {"runner": runner, **({"execution": execution} if execution else {})}
    try:
        lease, crashed = stores.leases.acquire(target.name, owner, "backup", lease_ttl_s, **marks)
    except LeaseHeld as held:
        stores.audit.audit(target=target.name, operation="backup", step="start",
                           outcome="skipped", actor=actor, reason=str(held))
        return BackupOutcome(record=None, already_running=str(held))
    keeper = LeaseKeeper(stores.leases, lease, lease_ttl_s) if renew_lease else None
    run.keeper = keeper
    try:
        if keeper is not None:
            keeper.start()
        if crashed is not None:
            clean_up_crashed_run(stores, crashed, actor)
        return BackupOutcome(record=_backup_under_lease(stores, target, lease, actor, trigger,
                                                        export_options or {}, load, deadline, run))
    finally:
        if keeper is not None:
            keeper.stop()
        stores.leases.release(lease)


class LeaseKeeper:
    """Renews a lease every quarter of its TTL from a background thread, while a backup with no
    deadline runs (a Fargate task). A lease it could not renew (LeaseLost: gone, or someone else's)
    is kept in `lost`, and `check` raises it in the backup's own thread."""

    def __init__(self, leases: LeaseStore, lease: Lease, ttl_s: float) -> None:
        self._leases, self.lease, self.ttl_s = leases, lease, ttl_s
        self.lost: LeaseLost | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{lease.target}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def check(self) -> None:
        """Raise LeaseLost when the lease was lost."""
        if self.lost is not None:
            raise self.lost

    def _renew_loop(self) -> None:
        while not self._stopped.wait(self.ttl_s / 4):
            try:
                self.lease = self._leases.renew(self.lease, self.ttl_s)
            except LeaseLost as err:
                self.lost = err
                return
            except Exception as err:  # a transient store error: the next renewal (well before expiry) tries again
                log.warning("lease renewal failed", extra={"target": self.lease.target, "error": str(err)})


@dataclass
class _Run:
    """How one backup runs: where, who watches its bytes, who keeps its lease."""

    runner: str = "lambda"
    on_progress: Callable[[int], None] | None = None
    keeper: LeaseKeeper | None = None


class ProgressRecorder:
    """The ArtifactWriter's `on_write` hook: raises a lost lease, tells `on_progress`, and saves
    {bytes, rate_bytes_s, eta_s, updated_at} on the RUNNING record at most every `interval_s`
    (ETA from `expected_bytes`, the size of the target's newest good backup)."""

    def __init__(self, catalog: CatalogStore, record: BackupRecord, *, interval_s: float,
                 expected_bytes: int | None, run: _Run, clock: Callable[[], float] = time.monotonic) -> None:
        self.catalog, self.record, self.interval_s, self.expected_bytes = catalog, record, interval_s, expected_bytes
        self.run, self.clock = run, clock
        self.started = self.last_saved = clock()

    def __call__(self, written: int) -> None:
        if self.run.keeper is not None:
            self.run.keeper.check()
        if self.run.on_progress is not None:
            self.run.on_progress(written)
        now = self.clock()
        if now - self.last_saved >= self.interval_s:
            self.last_saved = now
            self.record = self.catalog.save(self.record.model_copy(update={"progress": self.progress(written, now)}),
                                            expect_status=BackupStatus.RUNNING)  # StaleRecord: settled by another

    def progress(self, written: int, now: float | None = None) -> dict[str, Any]:
        elapsed = max((self.clock() if now is None else now) - self.started, 1e-3)
        rate = written / elapsed
        eta = ((self.expected_bytes - written) / rate if self.expected_bytes and rate > 0
               and self.expected_bytes > written else None)
        return {"bytes": written, "rate_bytes_s": round(rate), "eta_s": None if eta is None else round(eta, 1),
                "updated_at": datetime.now(UTC).isoformat()}


def clean_up_crashed_run(stores: Stores, crashed: Lease, actor: str, reason: str | None = None) -> None:
    """A run died holding the lease: abort its upload and mark its RUNNING record FAILED (with
    `reason`, or "its lease expired")."""
    catalog = stores.catalog
    if crashed.upload_key and crashed.upload_id:
        stores.artifacts.abort_upload(crashed.upload_key, crashed.upload_id)
    if crashed.backup_id:
        record = catalog.get(crashed.target, crashed.backup_id)
        if record.status is BackupStatus.RUNNING and record.method == RDS_SNAPSHOT:  # RDS may still be making it
            from warden.snapshot_backup import settle_snapshot
            settle_snapshot(stores, record, actor)
        elif record.status is BackupStatus.RUNNING:
            record.status = BackupStatus.FAILED
            record.error = reason or f"the run ({crashed.owner}) stopped without finishing; its lease expired"
            record.finished_at = datetime.now(UTC)
            record.upload_id = None
            catalog.save(record, expect_status=BackupStatus.RUNNING)
    stores.audit.audit(target=crashed.target, operation="backup", step="cleanup",
                       outcome="ok", actor=actor, backup_id=crashed.backup_id, crashed_owner=crashed.owner,
                       **({"reason": reason} if reason else {}))


def _backup_under_lease(stores: Stores, target: Target, lease: Lease,
                        actor: str, trigger: str, export_options: dict[str, Any],
                        secret_loader: Callable[[Target], DatabaseSecret],
                        deadline: float | None = None, run: _Run | None = None) -> BackupRecord:
    settings, catalog, artifacts = stores.settings, stores.catalog, stores.artifacts
    run = run or _Run()
    if target.backup.method == RDS_SNAPSHOT:  # RDS makes the copy, nothing streams to S3 (warden.snapshot_backup)
        from warden.snapshot_backup import back_up_snapshot
        return back_up_snapshot(stores, target, lease, actor, trigger)
    started = datetime.now(UTC)
    clock = time.monotonic()
    backup_id = new_backup_id(started)
    previous = catalog.latest(target.name, GOOD_BACKUP)  # its size gives the progress an ETA
    record = catalog.create(BackupRecord(
        target=target.name, backup_id=backup_id, engine=target.engine, method=METHODS[target.engine],
        status=BackupStatus.RUNNING, started_at=started, trigger=trigger, actor=actor, runner=run.runner,
    ))
    stores.audit.audit(target=target.name, operation="backup", step="start", outcome="ok",
                       actor=actor, backup_id=backup_id, trigger=trigger)
    try:
        engine = engine_for(target.engine)
        secret = secret_loader(target)
        prefix = object_prefix(target.name, backup_id)
        data_key = f"{prefix}data.{EXTENSIONS[target.engine]}"
        sink = artifacts.start_upload(data_key, metadata={"warden-target": target.name, "warden-backup-id": backup_id})
        stores.leases.update(lease, backup_id=backup_id, upload_key=data_key, upload_id=sink.upload_id)
        record.upload_id = sink.upload_id
        catalog.save(record)
        recorder = ProgressRecorder(catalog, record, interval_s=settings.progress_interval_s,
                                    expected_bytes=previous.size_bytes if previous else None, run=run)
        try:
            with ArtifactWriter(sink, data_key, deadline=deadline, on_write=recorder) as writer:
                result = engine.export_backup(secret, writer, deadline=deadline,
                                              **{**engine_options(settings, target.engine), **export_options})
                if run.keeper is not None:
                    run.keeper.check()  # a lost lease: abort rather than complete the object
        except (OutOfTime, DeadlinePassed) as err:  # DeadlinePassed: the server stopped or stalled at the deadline
            raise _out_of_time(target, writer.size_bytes, max((deadline or clock) - clock, 0.0),
                               str(err) if isinstance(err, DeadlinePassed) else None, backup_id) from None
        info = writer.close()
        finished = datetime.now(UTC)
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "target": target.name,
            "backup_id": backup_id,
            "engine": target.engine.value,
            "method": result.method,
            "format_version": result.format_version,
            "server_version": result.server_version,
            "data_key": data_key,
            "size_bytes": info.size_bytes,
            "sha256": info.sha256,
            "counts": result.counts,
            "schema": result.schema,
            "consistency": result.consistency,
            "details": result.details,
            "warnings": result.details.get("warnings", []),
            "started_at": started.isoformat(),
            "finished_at": finished.isoformat(),
        }
        manifest_key = f"{prefix}manifest.json"
        manifest_version = artifacts.put_json(manifest_key, manifest)
        record = record.model_copy(update={
            "status": BackupStatus.COMPLETED, "finished_at": finished, "data_key": data_key,
            "manifest_key": manifest_key, "size_bytes": info.size_bytes, "sha256": info.sha256,
            "manifest_sha256": hashlib.sha256(json_bytes(manifest)).hexdigest(),
            "data_version_id": info.version_id, "manifest_version_id": manifest_version,
            "counts": result.counts, "server_version": result.server_version, "method": result.method,
            "format_version": result.format_version, "consistency": result.consistency,
            "warnings": list(result.details.get("warnings", [])),
            "duration_s": round(time.monotonic() - clock, 3), "upload_id": None,
            "progress": (recorder.progress(info.size_bytes) | {"eta_s": 0}) if recorder.record.progress else None,
        })
        catalog.save(record, expect_status=BackupStatus.RUNNING)
    except BaseException as err:
        failed = record.model_copy(update={
            "status": BackupStatus.FAILED, "finished_at": datetime.now(UTC), "error": f"{type(err).__name__}: {err}",
            "duration_s": round(time.monotonic() - clock, 3), "upload_id": None,
        })
        try:
            catalog.save(failed, expect_status=BackupStatus.RUNNING)
        except StaleRecord:  # settled already (an Abandon step, or a run that took over an expired lease)
            log.warning("backup record settled by another run", extra={"target": target.name, "backup_id": backup_id})
        stores.audit.audit(target=target.name, operation="backup", step="fail",
                           outcome="failed", actor=actor, backup_id=backup_id, error=failed.error)
        raise
    stores.audit.audit(target=target.name, operation="backup", step="finish", outcome="ok",
                       actor=actor, backup_id=backup_id, size_bytes=record.size_bytes, sha256=record.sha256,
                    duration_s=record.duration_s, **({"warnings": record.warnings} if record.warnings else {}))
    return record


def verify_backup(stores: Stores, target: str, backup_id: str, *, actor: str) -> BackupRecord:
    """Re-read the stored object, recompute SHA-256 and size, check them against the record and the
    manifest: VERIFIED or CORRUPT. Verifying a CORRUPT backup again can clear it only if it now matches."""
    stores.require("catalog", "artifacts")
    catalog, artifacts = stores.catalog, stores.artifacts
    record = catalog.get(target, backup_id)
    if record.method == RDS_SNAPSHOT:  # the data is an RDS snapshot, not an S3 object
        from warden.snapshot_backup import verify_snapshot
        return verify_snapshot(stores, record, actor=actor)
    if record.status not in (*GOOD_BACKUP, BackupStatus.CORRUPT):
        raise BackupRefused(f"backup {backup_id} of {target} is {record.status}: nothing to verify")
    if not (record.data_key and record.manifest_key):
        raise BackupRefused(f"backup {backup_id} of {target} names no data or manifest object")
    problems: list[str] = []
    try:
        size, sha256 = artifacts.digest(record.data_key, record.data_version_id)
        manifest = _read_manifest(stores, record, problems)
        problems += _version_problems(stores, record)
    except WardenError as err:
        problems.append(str(err))
    else:
        if sha256 != record.sha256:
            problems.append(f"sha256 {sha256} != recorded {record.sha256}")
        if size != record.size_bytes:
            problems.append(f"size {size} != recorded {record.size_bytes}")
        if manifest.get("sha256") != record.sha256 or manifest.get("size_bytes") != record.size_bytes:
            problems.append("manifest disagrees with the catalog record")
    previous = record.status
    record = record.model_copy(update={
        "status": BackupStatus.CORRUPT if problems else BackupStatus.VERIFIED,
        "verified_at": datetime.now(UTC),
        "error": "; ".join(problems) if problems else None,
    })
    catalog.save(record, expect_status=previous)
    stores.audit.audit(target=target, operation="verify", step="finish",
                       outcome="corrupt" if problems else "ok", actor=actor, backup_id=backup_id, problems=problems)
    return record


def _read_manifest(stores: Stores, record: BackupRecord, problems: list[str]) -> dict[str, Any]:
    """The recorded version of the manifest; a SHA-256 that is not the recorded one is a problem."""
    key = record.manifest_key or ""
    raw = stores.artifacts.get_bytes(key, record.manifest_version_id)
    digest = hashlib.sha256(raw).hexdigest()
    if record.manifest_sha256 and digest != record.manifest_sha256:
        problems.append(f"manifest {key}: sha256 {digest} != recorded {record.manifest_sha256} (the manifest "
                        "was changed after the backup)")
    try:
        return dict(json.loads(raw))
    except ValueError:
        problems.append(f"manifest {key} is not JSON")
        return {}


def _version_problems(stores: Stores, record: BackupRecord) -> list[str]:
    """A pinned object written over later: the current version is not the one the backup wrote."""
    problems: list[str] = []
    if not stores.artifacts.pinned:
        return problems  # a copy with its own version ids (the replica): checked by content alone
    for key, version, sha256 in ((record.data_key, record.data_version_id, record.sha256),
                                 (record.manifest_key, record.manifest_version_id, record.manifest_sha256)):
        if not key or not version:
            continue  # written before version pinning
        head = stores.artifacts.head(key)
        current = head.get("VersionId") if head else None
        if current != version:
            problem = (f"s3://{stores.artifacts.bucket}/{key}: the current object (version {current}) is not "
                       f"the recorded version {version}")
            if current is not None and sha256:  # what a reader of the key would get instead
                _, now = stores.artifacts.digest(key, current)
                problem += ("; its content is the same" if now == sha256 else
                            f"; its sha256 {now} != recorded {sha256}")
            problems.append(problem)
    return problems


def restore_backup(stores: Stores, target: Target, backup_id: str, into: DatabaseSecret, *, actor: str,
                   replace: bool = False, restore_options: dict[str, Any] | None = None) -> RestoreResult:
    """Restore a backup of `target` into the database `into` points at.

    Refuses a backup that is not COMPLETED / VERIFIED, and re-verifies the stored bytes before
    loading anything: a CORRUPT backup is never restored. The engine refuses a non-empty database
    unless `replace`.
    """
    stores.require("catalog", "artifacts")
    settings, artifacts = stores.settings, stores.artifacts
    record = stores.catalog.get(target.name, backup_id)
    if record.method == RDS_SNAPSHOT:  # RDS restores snapshots, pg_restore cannot
        from warden.snapshot_backup import restore_refusal
        raise RestoreRefused(restore_refusal(record))
    if record.status not in GOOD_BACKUP:
        raise RestoreRefused(f"backup {backup_id} of {target.name} is {record.status}; only COMPLETED or "
                             "VERIFIED backups are restored")
    if into.engine != target.engine.value:
        raise RestoreRefused(f"cannot restore a {target.engine} backup into a {into.engine} database")
    checked = verify_backup(stores, target.name, backup_id, actor=actor)
    if checked.status is not BackupStatus.VERIFIED:
        raise RestoreRefused(f"backup {backup_id} of {target.name} is CORRUPT: {checked.error}")
    if not (checked.data_key and checked.manifest_key):
        raise RestoreRefused(f"backup {backup_id} of {target.name} names no data or manifest object")
    problems: list[str] = []
    manifest = _read_manifest(stores, checked, problems)  # the bytes loaded now, checked again
    if problems:
        raise RestoreRefused(f"backup {backup_id} of {target.name}: {'; '.join(problems)}")
    stores.audit.audit(target=target.name, operation="restore", step="start", outcome="ok",
                       actor=actor, backup_id=backup_id, replace=replace)
    try:
        result = engine_for(target.engine).restore_backup(
            into, artifacts.iter_object(checked.data_key, checked.data_version_id), manifest, replace=replace,
            **{**engine_options(settings, target.engine), **(restore_options or {})})
    except BaseException as err:
        stores.audit.audit(target=target.name, operation="restore", step="fail",
                           outcome="refused" if isinstance(err, RestoreRefused) else "failed", actor=actor,
                           backup_id=backup_id, error=f"{type(err).__name__}: {err}")
        raise
    stores.audit.audit(target=target.name, operation="restore", step="finish", outcome="ok",
                       actor=actor, backup_id=backup_id, counts=result.counts, duration_s=result.duration_s,
                       **({"warnings": result.details["warnings"]} if result.details.get("warnings") else {}))
    return result
