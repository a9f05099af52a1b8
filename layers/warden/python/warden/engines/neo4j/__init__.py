"""Neo4j: drivers (`connection`), shared session helpers (`session`), the archive format
(`format`), what a database holds (`inventory`), the logical export over Bolt (`backup`), restore
(`restore`), health checks (`health`) and credentials (`credentials`).
`ENGINE` is this engine's `warden.engines.base.DatabaseEngine`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from warden.config.target import Engine
from warden.engines.base import ExportResult, RestoreFailed, RestoreRefused, RestoreResult, ServerInfo, Writable
from warden.engines.neo4j import credentials, health
from warden.engines.neo4j.backup import METHOD, NOT_POINT_IN_TIME, POINT_IN_TIME, export_backup
from warden.engines.neo4j.connection import close_drivers, driver, server_info
from warden.engines.neo4j.inventory import compare_indexes, count_objects, is_empty
from warden.engines.neo4j.restore import restore_backup

if TYPE_CHECKING:
    from warden.checks import Tier
    from warden.config.health import HealthThresholds, RequiredSchema

__all__ = ["ENGINE", "METHOD", "NOT_POINT_IN_TIME", "POINT_IN_TIME", "ExportResult", "Neo4jEngine", "RestoreFailed",
           "RestoreRefused", "close_drivers", "count_objects", "driver", "export_backup", "is_empty",
           "restore_backup", "server_info"]


class Neo4jEngine:
    """Neo4j behind the `DatabaseEngine` interface."""

    engine = Engine.NEO4J
    method = METHOD

    def server_info(self, secret: Any, *, timeout: float = 5.0) -> ServerInfo:
        return server_info(secret, timeout=timeout)

    def check_reachable(self, secret: Any, *, timeout: float = 5.0) -> None:
        server_info(secret, timeout=timeout)

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
        return compare_indexes(secret, manifest)

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


ENGINE = Neo4jEngine()
