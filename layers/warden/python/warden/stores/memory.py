"""In-memory stores with the interfaces of warden.stores.base: the state logic (record lifecycle,
leases, prune decisions, recovery transitions) runs against them in unit tests, without AWS.

They keep the semantics that matter: the catalog's conditional save (StaleRecord), leases with an
expiry and takeover on an injectable clock, a versioned bucket whose multipart upload becomes one
object on complete and leaves nothing on abort, and a recovery record one execution owns.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from warden.config.credentials import DatabaseSecret
from warden.config.target import Target
from warden.errors import SecretError, TargetNotFound
from warden.models import AuditEntry, BackupRecord, BackupStatus, RecoveryState
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.artifacts import ArtifactError, json_bytes
from warden.stores.catalog import BackupNotFound, CatalogError, StaleRecord
from warden.stores.leases import Lease, LeaseHeld, LeaseLost, lost_message
from warden.stores.recovery_state import updated

Clock = Callable[[], float]


class MemoryCatalog:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], BackupRecord] = {}

    def create(self, record: BackupRecord) -> BackupRecord:
        key = (record.target, record.backup_id)
        if key in self.records:
            raise CatalogError(f"cannot create catalog record {record.backup_id}: it exists")
        self.records[key] = record.model_copy(deep=True)
        return record

    def save(self, record: BackupRecord, *, expect_status: BackupStatus | None = None) -> BackupRecord:
        key = (record.target, record.backup_id)
        stored = self.records.get(key)
        if stored is None or (expect_status is not None and stored.status is not expect_status):
            raise StaleRecord(f"backup {record.backup_id} of {record.target} changed concurrently "
                              f"(expected {expect_status})")
        self.records[key] = record.model_copy(deep=True)
        return record

    def get(self, target: str, backup_id: str) -> BackupRecord:
        try:
            return self.records[(target, backup_id)].model_copy(deep=True)
        except KeyError:
            raise BackupNotFound(f"no backup {backup_id!r} for target {target!r}") from None

    def list(self, target: str, *, newest_first: bool = True) -> Iterator[BackupRecord]:
        ids = sorted((b for t, b in self.records if t == target), reverse=newest_first)
        return iter([self.records[(target, b)].model_copy(deep=True) for b in ids])

    def stored_bytes(self, target: str) -> int:
        return sum(r.size_bytes or 0 for r in self.list(target) if r.status is not BackupStatus.EXPIRED)

    def latest(self, target: str, statuses: frozenset[BackupStatus]) -> BackupRecord | None:
        return next((r for r in self.list(target) if r.status in statuses), None)


class MemoryAudit:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def append(self, entry: AuditEntry) -> AuditEntry:
        self.entries.append(entry)
        return entry

    def audit(self, *, target: str, operation: str, step: str, outcome: str, actor: str,
              backup_id: str | None = None, **details: Any) -> AuditEntry | None:
        # Through JSON, as the DynamoDB trail stores details.
        return self.append(AuditEntry(target=target, at=datetime.now(UTC), operation=operation, step=step,
                                      outcome=outcome, actor=actor, backup_id=backup_id,
                                      details=json.loads(json.dumps(details, default=str, sort_keys=True))))

    def tail(self, target: str, limit: int = 50) -> list[AuditEntry]:
        return [e for e in reversed(self.entries) if e.target == target][:limit]

    def between(self, target: str, start: datetime, end: datetime) -> list[AuditEntry]:
        return sorted((e for e in self.entries if e.target == target and start <= e.at <= end), key=lambda e: e.at)


class MemoryLeases:
    """Leases on `clock` (seconds, like time.time): a lease past its expiry is taken over."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self.leases: dict[str, Lease] = {}

    def acquire(self, target: str, owner: str, operation: str, ttl_s: float,
                **attrs: str) -> tuple[Lease, Lease | None]:
        now = self.clock()
        held = self.leases.get(target)
        if held is not None and held.expires_at >= now and held.owner != owner:
            raise LeaseHeld(f"{target} is busy: {held.operation} by {held.owner} "
                            f"(lease expires in {max(0, held.expires_at - now):.0f} s)", held)
        lease = Lease(target=target, owner=owner, operation=operation, expires_at=now + ttl_s,
                      **{k: v for k, v in attrs.items() if v})
        self.leases[target] = lease
        return lease, held if held is not None and held.owner != owner else None

    def update(self, lease: Lease, **attrs: str) -> Lease:
        held = self.leases.get(lease.target)
        if held is None or held.owner != lease.owner:
            raise LeaseHeld(f"{lease.target}: the lease is no longer {lease.owner}'s", held or lease)
        updated = Lease(**{**held.__dict__, **attrs})
        self.leases[lease.target] = updated
        return Lease(**{**lease.__dict__, **attrs})

    def renew(self, lease: Lease, ttl_s: float) -> Lease:
        held = self.leases.get(lease.target)
        if held is None or held.owner != lease.owner:
            raise LeaseLost(lost_message(lease, held))
        self.leases[lease.target] = Lease(**{**held.__dict__, "expires_at": self.clock() + ttl_s})
        return Lease(**{**lease.__dict__, "expires_at": self.clock() + ttl_s})

    def get(self, target: str) -> Lease | None:
        return self.leases.get(target)

    def release(self, lease: Lease) -> None:
        held = self.leases.get(lease.target)
        if held is not None and held.owner == lease.owner:
            del self.leases[lease.target]


@dataclass
class StoredObject:
    key: str
    version_id: str
    body: bytes | None  # None: a delete marker
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str = "binary/octet-stream"


class MemoryUpload:
    """A multipart upload: parts are kept aside; complete makes one new object version, abort drops them."""

    def __init__(self, store: MemoryArtifacts, key: str, metadata: dict[str, str] | None) -> None:
        self.store, self.key, self.metadata = store, key, dict(metadata or {})
        self.upload_id = f"upload-{next(store._ids)}"
        self.version_id: str | None = None
        self.parts: dict[int, bytes] = {}
        store.uploads[self.upload_id] = self

    def put_part(self, number: int, data: bytes) -> None:
        if self.upload_id not in self.store.uploads:
            raise ArtifactError(f"upload {self.upload_id} of {self.key} is gone", "NoSuchUpload")
        self.parts[number] = bytes(data)

    def complete(self) -> None:
        if self.store.uploads.pop(self.upload_id, None) is None:
            raise ArtifactError(f"cannot complete {self.key}: NoSuchUpload", "NoSuchUpload")
        body = b"".join(self.parts[n] for n in sorted(self.parts))
        self.version_id = self.store._put(self.key, body, self.metadata, "binary/octet-stream")

    def abort(self) -> None:
        self.store.uploads.pop(self.upload_id, None)
        self.parts.clear()


class MemoryArtifacts:
    """A versioned bucket in memory (Object Lock off)."""

    def __init__(self, bucket: str = "memory-bucket") -> None:
        self.bucket, self.pinned = bucket, True
        self.versions: dict[str, list[StoredObject]] = {}  # key -> versions, oldest first
        self.uploads: dict[str, MemoryUpload] = {}
        self._ids = itertools.count(1)

    def _put(self, key: str, body: bytes | None, metadata: dict[str, str], content_type: str) -> str:
        version_id = f"v{next(self._ids):06d}"
        self.versions.setdefault(key, []).append(StoredObject(key, version_id, body, metadata, content_type))
        return version_id

    def _find(self, key: str, version_id: str | None) -> StoredObject:
        versions = self.versions.get(key, [])
        found = (next((v for v in versions if v.version_id == version_id), None) if version_id
                 else (versions[-1] if versions else None))
        if found is None or found.body is None:
            where = f"s3://{self.bucket}/{key}" + (f" version {version_id}" if version_id else "")
            code = "405" if found is not None else ("NoSuchVersion" if version_id else "NoSuchKey")
            raise ArtifactError(f"cannot read {where}: {code}", code)
        return found

    def overwrite(self, key: str, body: bytes) -> str:
        """Write a new current version of `key` (tests: an object written over later)."""
        return self._put(key, body, {}, "binary/octet-stream")

    def start_upload(self, key: str, *, metadata: dict[str, str] | None = None) -> MemoryUpload:
        return MemoryUpload(self, key, metadata)

    def abort_upload(self, key: str, upload_id: str) -> None:
        upload = self.uploads.get(upload_id)
        if upload is not None:
            upload.abort()

    def put_json(self, key: str, document: dict[str, Any]) -> str | None:
        return self._put(key, json_bytes(document), {}, "application/json")

    def put_bytes(self, key: str, body: bytes, *, content_type: str,
                  metadata: dict[str, str] | None = None) -> str | None:
        return self._put(key, bytes(body), dict(metadata or {}), content_type)

    def get_bytes(self, key: str, version_id: str | None = None) -> bytes:
        body = self._find(key, version_id).body
        assert body is not None  # _find never returns a delete marker
        return body

    def get_json(self, key: str, version_id: str | None = None) -> dict[str, Any]:
        return dict(json.loads(self.get_bytes(key, version_id)))

    def iter_object(self, key: str, version_id: str | None = None) -> Iterator[bytes]:
        body = self.get_bytes(key, version_id)
        return iter([body[i:i + 65536] for i in range(0, len(body), 65536)] or [b""])

    def digest(self, key: str, version_id: str | None = None) -> tuple[int, str]:
        body = self.get_bytes(key, version_id)
        return len(body), hashlib.sha256(body).hexdigest()

    def head(self, key: str, version_id: str | None = None) -> dict[str, Any] | None:
        try:
            found = self._find(key, version_id)
        except ArtifactError as err:
            if err.code == "405":
                raise
            return None
        body = found.body or b""
        return {"ContentLength": len(body), "VersionId": found.version_id, "Metadata": dict(found.metadata),
                "ContentType": found.content_type}

    def version_pages(self, prefix: str) -> Iterator[list[dict[str, Any]]]:
        page = []
        for key in sorted(k for k in self.versions if k.startswith(prefix)):
            versions = self.versions[key]
            for i, v in enumerate(versions):
                page.append({"Key": key, "VersionId": v.version_id, "IsLatest": i == len(versions) - 1,
                             "Size": len(v.body or b""), "DeleteMarker": v.body is None})
        return iter([page])

    def delete_versions(self, objects: list[dict[str, str]]) -> list[dict[str, str]]:
        for obj in objects:
            remaining = [v for v in self.versions.get(obj["Key"], []) if v.version_id != obj.get("VersionId")]
            if remaining:
                self.versions[obj["Key"]] = remaining
            else:
                self.versions.pop(obj["Key"], None)
        return []

    def object_lock_enabled(self) -> bool:
        return False

    def keys(self) -> list[str]:
        """The keys that have a current (not deleted) object."""
        return sorted(k for k, v in self.versions.items() if v and v[-1].body is not None)


class MemorySecrets:
    def __init__(self, secrets: dict[str, DatabaseSecret] | None = None) -> None:
        self.secrets = dict(secrets or {})

    def load(self, target: Target) -> DatabaseSecret:
        try:
            return self.secrets[target.secret_name]
        except KeyError:
            raise SecretError(f"cannot read secret {target.secret_name!r} of target {target.name!r}: "
                              "ResourceNotFoundException") from None


class MemoryTargets:
    def __init__(self, targets: list[Target] | None = None, stage: str = "memory") -> None:
        self.targets = {t.name: t for t in targets or []}
        self.stage = stage

    def all(self) -> dict[str, Target]:
        return dict(sorted(self.targets.items()))

    def get(self, name: str) -> Target:
        if name not in self.targets:
            known = ", ".join(sorted(self.targets)) or "none"
            raise TargetNotFound(f"unknown target {name!r} in stage {self.stage!r} (configured: {known})")
        return self.targets[name]

    def select(self, name: str | None) -> list[Target]:
        return [self.get(name)] if name else list(self.all().values())


class MemoryRecoveryState:
    def __init__(self) -> None:
        self.states: dict[str, RecoveryState] = {}

    def get(self, target: str) -> RecoveryState:
        state = self.states.get(target)
        return state.model_copy(deep=True) if state else RecoveryState(target=target)

    def put(self, state: RecoveryState) -> RecoveryState:
        state.updated_at = datetime.now(UTC)
        self.states[state.target] = state.model_copy(deep=True)
        return state

    def update(self, target: str, execution: str, **changes: Any) -> RecoveryState:
        return self.put(updated(self.get(target), execution, changes))


def memory_stores(*, targets: list[Target] | None = None, secrets: dict[str, DatabaseSecret] | None = None,
                  clock: Clock = time.time, stage: str = "memory") -> Stores:
    """A fresh bundle of in-memory stores (every store configured)."""
    settings = Settings(WARDEN_STAGE=stage, WARDEN_CATALOG_TABLE="memory-catalog",
                        WARDEN_AUDIT_TABLE="memory-audit", WARDEN_STATE_TABLE="memory-state",
                        WARDEN_BUCKET="memory-bucket")
    return Stores(settings=settings, catalog=MemoryCatalog(), audit=MemoryAudit(), leases=MemoryLeases(clock),
                  artifacts=MemoryArtifacts(), secrets=MemorySecrets(secrets), targets=MemoryTargets(targets, stage),
                  recovery_state=MemoryRecoveryState())
