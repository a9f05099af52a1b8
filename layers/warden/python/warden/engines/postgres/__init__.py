"""PostgreSQL: connections (`connection`), client tools (`tools`), archives (`archive`), what a
database holds (`inventory`), backup with pg_dump (`backup`), restore with pg_restore (`restore`),
health checks (`health`), credentials (`credentials`) and rename-swap promotion (`promote`).
`ENGINE` is this engine's `warden.engines.base.DatabaseEngine`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from warden.config.target import Engine
from warden.engines.base import (
    CapabilityModules,
    ExportResult,
    RestoreFailed,
    RestoreRefused,
    RestoreResult,
    ServerInfo,
    Writable,
)
from warden.engines.postgres import credentials, health
from warden.engines.postgres.archive import ARCHIVE_MAGIC, ArchiveHeader, parse_header
from warden.engines.postgres.backup import CONSISTENCY, export_backup
from warden.engines.postgres.connection import APPLICATION_NAME, connect, server_info
from warden.engines.postgres.inventory import count_objects, database_size, is_empty
from warden.engines.postgres.restore import restore_backup
from warden.engines.postgres.tools import PgTool, PgToolsError, compression_for, find_tool

__all__ = ["APPLICATION_NAME", "ARCHIVE_MAGIC", "CONSISTENCY", "ENGINE", "ArchiveHeader", "PgTool", "PgToolsError",
           "PostgresEngine", "RestoreFailed", "RestoreRefused", "compression_for", "connect", "count_objects",
           "export_backup", "find_tool", "is_empty", "parse_header", "restore_backup", "server_info"]


class PostgresEngine(CapabilityModules):
    """PostgreSQL behind the `DatabaseEngine` interface."""

    engine = Engine.POSTGRES
    health_module, credentials_module = health, credentials
    method = "pg_dump"

    def server_info(self, secret: Any, *, timeout: float = 5.0) -> ServerInfo:
        return server_info(secret, timeout=timeout)

    def check_reachable(self, secret: Any, *, timeout: float = 5.0) -> None:
        with connect(secret, dbname="postgres", timeout=timeout):  # the database itself may not exist yet
            return

    def export_backup(self, secret: Any, out: Writable, **options: Any) -> ExportResult:
        return export_backup(secret, out, **options)

    def restore_backup(self, secret: Any, chunks: Iterable[bytes], manifest: Mapping[str, Any], *,
                       replace: bool = False, **options: Any) -> RestoreResult:
        return restore_backup(secret, chunks, dict(manifest), replace=replace, **options)

    def count_objects(self, secret: Any) -> dict[str, int]:
        return count_objects(secret)

    def is_empty(self, secret: Any) -> bool:
        return is_empty(secret)

    def estimate_size_bytes(self, secret: Any) -> int | None:
        return database_size(secret)

    def compare_indexes(self, secret: Any, manifest: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        # pg_restore builds every index or fails the restore (--exit-on-error): nothing to compare.
        return [], []


ENGINE = PostgresEngine()
