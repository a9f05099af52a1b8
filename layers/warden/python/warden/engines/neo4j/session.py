"""Small helpers every Neo4j capability shares: sessions on the target's driver, server errors
translated into Warden's own, identifier quoting and version-dependent syntax.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import neo4j
from neo4j import exceptions as neo4j_errors

from warden.config.credentials import Neo4jSecret
from warden.engines.neo4j.connection import driver
from warden.errors import DatabaseUnavailable, WardenError


@contextlib.contextmanager
def _translated(secret: Neo4jSecret, doing: str, failure: type[WardenError]) -> Iterator[None]:
    """Driver exceptions → Warden's: unreachable / transient → DatabaseUnavailable, the rest → `failure`."""
    try:
        yield
    except neo4j_errors.AuthError:
        raise DatabaseUnavailable(f"Neo4j at {secret.uri} rejected the credentials") from None
    except (neo4j_errors.ServiceUnavailable, neo4j_errors.SessionExpired) as err:
        raise DatabaseUnavailable(f"Neo4j at {secret.uri} became unavailable while {doing}: {err}") from None
    except neo4j_errors.TransientError as err:
        raise DatabaseUnavailable(f"Neo4j failed transiently while {doing}: {err.code}: {_first_line(err)}") from None
    except neo4j_errors.Neo4jError as err:
        raise failure(f"Neo4j failed while {doing}: {err.code}: {_first_line(err)}") from None
    except neo4j_errors.DriverError as err:
        raise failure(f"the Neo4j driver failed while {doing}: {type(err).__name__}: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    text = str(getattr(err, "message", None) or err).strip()
    return text.splitlines()[0][:500] if text else type(err).__name__


def _q(name: str) -> str:
    """A label, type, property or index name as a Cypher identifier (backticks, doubled inside)."""
    return "`" + name.replace("`", "``") + "`"


def _version(text: str) -> tuple[int, int]:
    major, minor, *_ = [*(int(p) for p in text.split("-")[0].split(".")[:2] if p.isdigit()), 0, 0]
    return major, minor


def _call(server_version: str, variable: str) -> str:
    """Opening of a CALL subquery importing `variable`: scoped (5.23+) or importing WITH (older)."""
    if _version(server_version) >= (5, 23):
        return f"CALL ({variable}) {{"
    return f"CALL {{ WITH {variable}"


def _session(secret: Neo4jSecret, mode: str, **config: Any) -> neo4j.Session:
    # Notifications off: `id()` is deprecated but the cheapest identity over Bolt; nobody reads them.
    return driver(secret).session(database=secret.database, default_access_mode=mode,
                                  notifications_min_severity="OFF", **config)


def _single(tx: Any, query: str, **params: Any) -> Any:
    record = tx.run(query, params).single(strict=True)
    return record[0]
