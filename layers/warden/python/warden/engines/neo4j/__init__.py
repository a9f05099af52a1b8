"""Neo4j: drivers (`connection`), shared session helpers (`session`), the archive format
(`format`), what a database holds (`inventory`), the logical export over Bolt (`backup`), restore
(`restore`), health checks (`health`) and credentials (`credentials`).
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
from warden.engines.neo4j import credentials, health
from warden.engines.neo4j.backup import METHOD, NOT_POINT_IN_TIME, POINT_IN_TIME, export_backup
from warden.engines.neo4j.connection import close_drivers, driver, server_info
from warden.engines.neo4j.inventory import compare_indexes, count_objects, is_empty
from warden.engines.neo4j.restore import restore_backup

__all__ = ["ENGINE", "METHOD", "NOT_POINT_IN_TIME", "POINT_IN_TIME", "ExportResult", "Neo4jEngine", "RestoreFailed",
           "RestoreRefused", "close_drivers", "count_objects", "driver", "export_backup", "is_empty",
           "restore_backup", "server_info"]


class Neo4jEngine(CapabilityModules):
    """Neo4j behind the `DatabaseEngine` interface."""

    engine = Engine.NEO4J
    health_module, credentials_module = health, credentials
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

    def estimate_size_bytes(self, secret: Any) -> int | None:
        return None  # Community has no cheap store size over Bolt; a first backup starts on Lambda

    def compare_indexes(self, secret: Any, manifest: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        return compare_indexes(secret, manifest)


ENGINE = Neo4jEngine()
