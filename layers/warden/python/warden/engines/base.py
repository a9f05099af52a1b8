"""What every engine's backup module offers, so the backup, verify and recovery code never
branches on engine.

An engine backup module (`warden.engines.neo4j_backup`, `warden.engines.postgres_backup`) exposes:

    export_backup(secret, out: Writable) -> ExportResult
        Stream a full backup of the target into `out` (which hashes and uploads it); memory flat.
    restore_backup(secret, chunks: Iterable[bytes], manifest: dict, *, replace: bool = False) -> RestoreResult
        Load a backup (the stored bytes, streamed) into the database `secret` points at. Refuses
        (RestoreRefused, nothing touched) a database that is not empty unless `replace`, and a
        format version it cannot read.
    count_objects(secret) -> dict[str, int]
        The same counts the manifest records, measured now (validation after a restore).
    is_empty(secret) -> bool
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from warden.errors import WardenError


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class RestoreRefused(WardenError):
    """A restore was refused before anything was touched (not empty, unknown format, corrupt)."""


class RestoreFailed(WardenError):
    """A restore failed part-way, or the restored database does not match the archive / manifest.
    The target database may hold a partial restore: restore again with `replace=True`."""


class BackupFailed(WardenError):
    """The engine could not produce a complete backup."""


@dataclass(frozen=True)
class ExportResult:
    method: str  # "neo4j-logical" | "pg_dump"
    format_version: str  # e.g. "warden-neo4j/1", "pg_dump-custom/1.16"
    server_version: str
    extension: str  # data object suffix: "wnj.zst", "dump"
    counts: dict[str, int]  # per label and relationship type / per table
    schema: dict[str, Any]  # constraints and indexes / schema summary
    consistency: str  # how consistent the copy is while writes continue
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RestoreResult:
    counts: dict[str, int]
    duration_s: float
    details: dict[str, Any] = field(default_factory=dict)
