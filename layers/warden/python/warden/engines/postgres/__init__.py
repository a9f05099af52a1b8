"""PostgreSQL: connections (`connection`), client tools (`tools`), archives (`archive`), what a
database holds (`inventory`), backup with pg_dump (`backup`), restore with pg_restore (`restore`),
health checks (`health`), credentials (`credentials`) and rename-swap promotion (`promote`).
`ENGINE` is this engine's `warden.engines.base.DatabaseEngine`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from warden.config.target import Engine
from warden.engines.base import ExportResult, RestoreFailed, RestoreRefused, RestoreResult, ServerInfo, Writable
from warden.engines.postgres import credentials, health
from warden.engines.postgres.archive import ARCHIVE_MAGIC, ArchiveHeader, parse_header
from warden.engines.postgres.backup import CONSISTENCY, export_backup
from warden.engines.postgres.connection import APPLICATION_NAME, connect, server_info
from warden.engines.postgres.inventory import count_objects, is_empty
from warden.engines.postgres.restore import restore_backup
from warden.engines.postgres.tools import PgTool, PgToolsError, compression_for, find_tool

if TYPE_CHECKING:
    from warden.checks import Tier
    from warden.config.health import HealthThresholds, RequiredSchema

__all__ = ["APPLICATION_NAME", "ARCHIVE_MAGIC", "CONSISTENCY", "ENGINE", "ArchiveHeader", "PgTool", "PgToolsError",
           "PostgresEngine", "RestoreFailed", "RestoreRefused", "compression_for", "connect", "count_objects",
           "export_backup", "find_tool", "is_empty", "parse_header", "restore_backup", "server_info"]


class PostgresEngine:
    """PostgreSQL behind the `DatabaseEngine` interface."""

    engine = Engine.POSTGRES
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

    def compare_indexes(self, secret: Any, manifest: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        # pg_restore builds every index or fails the restore (--exit-on-error): nothing to compare.
        return [], []

    def health_tiers(self, secret: Any, *, thresholds: HealthThresholds, schema: RequiredSchema) -> list[Tier]:
        return health.tiers(secret, thresholds=thresholds, schema=schema)

    def can_log_in(self, secret: Any, *, timeout: float = 5.0) -> bool:
        return credentials.can_log_in(secret, timeout=timeout)

    def change_own_password(self, current: Any, new_password: str, *, timeout: float = 10.0) -> None:
        credentials.change_own_password(current, new_password, timeout=timeout)

    def set_user_password(self, admin: Any, username: str, new_password: str, *, member_of: str | None,
                          dbname: str | None = None, timeout: float = 10.0) -> bool:
        return credentials.set_user_password(admin, username, new_password, member_of=member_of, dbname=dbname,
                                             timeout=timeout)


ENGINE = PostgresEngine()
