"""Database engines: one subpackage per engine (`postgres/`, `neo4j/`), split by capability, each
offering the typed `warden.engines.base.DatabaseEngine`; `rds_snapshot` is a backup method of
PostgreSQL targets on RDS / Aurora. `engine_for` is the one place that picks an implementation; it
imports the engine on first use, so a PostgreSQL-only function never loads the Neo4j driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from warden.config.target import Engine

if TYPE_CHECKING:
    from warden.engines.base import DatabaseEngine


def engine_for(engine: Engine | str) -> DatabaseEngine:
    """The implementation of `engine` (ValueError for an engine Warden does not know)."""
    module = importlib.import_module(f"warden.engines.{Engine(engine).value}")
    found: DatabaseEngine = module.ENGINE
    return found
