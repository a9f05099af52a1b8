"""What every engine offers, as types, so the backup, verify, health, rotation and recovery code
never branches on engine: `DatabaseEngine` (connect, backup, restore, health, credentials), the
results it returns and the errors it raises. `warden.engines.engine_for` picks the implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from warden.config.target import Engine
from warden.errors import WardenError

if TYPE_CHECKING:
    from warden.checks import Tier
    from warden.config.health import HealthThresholds, RequiredSchema


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class RestoreRefused(WardenError):
    """A restore was refused before anything was touched (not empty, unknown format, corrupt)."""


class RestoreFailed(WardenError):
    """A restore failed part-way, or the restored database does not match the archive / manifest.
    The target database may hold a partial restore: restore again with `replace=True`."""


class BackupFailed(WardenError):
    """The engine could not produce a complete backup."""


class DeadlinePassed(BackupFailed):
    """The export's deadline passed: the server stopped the export's transaction at the timeout the
    deadline set, or the export was stopped waiting for the server. The caller reports it as out of time."""


class ServerStalled(DeadlinePassed):
    """The export's deadline passed while it waited for a server that sent nothing (stopped, hung,
    or a network that drops packets): the export was stopped instead of blocking past it."""


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


@dataclass(frozen=True)
class ServerInfo:
    """What a connectivity check learns about a server."""

    engine: Engine
    version: str
    edition: str
    address: str


class DatabaseEngine(Protocol):
    """One engine's capabilities. `secret` is the engine's own secret model (PostgresSecret,
    Neo4jSecret); `options` are engine-specific (e.g. where PostgreSQL's client tools are)."""

    engine: Engine
    method: str  # the backup method of its logical export: "pg_dump", "neo4j-logical"

    def server_info(self, secret: Any, *, timeout: float = 5.0) -> ServerInfo:
        """Connect, and tell the server's version and edition (DatabaseUnavailable when it does not answer)."""
        ...

    def check_reachable(self, secret: Any, *, timeout: float = 5.0) -> None:
        """The server answers (PostgreSQL: the database itself need not exist yet, a restore creates it)."""
        ...

    def export_backup(self, secret: Any, out: Writable, **options: Any) -> ExportResult:
        """Stream a full backup into `out` (which hashes and uploads it); memory flat."""
        ...

    def restore_backup(self, secret: Any, chunks: Iterable[bytes], manifest: Mapping[str, Any], *,
                       replace: bool = False, **options: Any) -> RestoreResult:
        """Load a backup into the database `secret` points at. Refuses (RestoreRefused, nothing
        touched) a database that is not empty unless `replace`, and a format it cannot read."""
        ...

    def count_objects(self, secret: Any) -> dict[str, int]:
        """The counts the manifest records, measured now (validation after a restore)."""
        ...

    def is_empty(self, secret: Any) -> bool: ...

    def estimate_size_bytes(self, secret: Any) -> int | None:
        """What the database takes on disk, cheaply (the runner's guess for a first backup); None
        when the engine cannot tell cheaply."""
        ...

    def compare_indexes(self, secret: Any, manifest: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """(errors, warnings): the database's index states against the source's in the manifest. An
        index ONLINE in the source and not here is an error; one FAILED in both is a warning."""
        ...

    def health_tiers(self, secret: Any, *, thresholds: HealthThresholds, schema: RequiredSchema) -> list[Tier]:
        """The engine's schema, integrity and metrics tiers of health checks."""
        ...

    def can_log_in(self, secret: Any, *, timeout: float = 5.0) -> bool: ...

    def change_own_password(self, current: Any, new_password: str, *, timeout: float = 10.0) -> None: ...

    def set_user_password(self, admin: Any, username: str, new_password: str, *, member_of: str | None,
                          dbname: str | None = None, timeout: float = 10.0) -> bool: ...


class CapabilityModules:
    """The part of a `DatabaseEngine` every engine implements the same way: its health checks and
    credentials live in its `health` and `credentials` modules (functions of the same names)."""

    health_module: ModuleType
    credentials_module: ModuleType

    def health_tiers(self, secret: Any, *, thresholds: HealthThresholds, schema: RequiredSchema) -> list[Tier]:
        tiers: list[Tier] = self.health_module.tiers(secret, thresholds=thresholds, schema=schema)
        return tiers

    def can_log_in(self, secret: Any, *, timeout: float = 5.0) -> bool:
        return bool(self.credentials_module.can_log_in(secret, timeout=timeout))

    def change_own_password(self, current: Any, new_password: str, *, timeout: float = 10.0) -> None:
        self.credentials_module.change_own_password(current, new_password, timeout=timeout)

    def set_user_password(self, admin: Any, username: str, new_password: str, *, member_of: str | None,
                          dbname: str | None = None, timeout: float = 10.0) -> bool:
        return bool(self.credentials_module.set_user_password(admin, username, new_password, member_of=member_of,
                                                              dbname=dbname, timeout=timeout))
