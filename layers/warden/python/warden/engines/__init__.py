"""Engine adapters: one module per engine, the same small interface for each, imported lazily so a
PostgreSQL-only function never loads the Neo4j driver (and the other way round)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from warden.models import Engine


@dataclass(frozen=True)
class ServerInfo:
    """What a connectivity check learns about a server."""

    engine: Engine
    version: str
    edition: str
    address: str


def adapter_for(engine: Engine) -> ModuleType:
    """The engine's module (`warden.engines.neo4j` or `warden.engines.postgres`)."""
    return importlib.import_module(f"warden.engines.{Engine(engine).value}")
