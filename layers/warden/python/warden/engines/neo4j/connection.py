"""Neo4j adapter: drivers from a target's secret, cached per URI and user, errors translated."""

from __future__ import annotations

import neo4j
from neo4j.exceptions import AuthError, Neo4jError, ServiceUnavailable

from warden.config.credentials import Neo4jSecret
from warden.config.target import Engine
from warden.engines.base import ServerInfo
from warden.errors import DatabaseError, DatabaseUnavailable
from warden.tls import warn_neo4j

USER_AGENT = "warden"


_drivers: dict[tuple[str, str, str, float], neo4j.Driver] = {}


def driver(secret: Neo4jSecret, *, timeout: float = 5.0) -> neo4j.Driver:
    """A cached driver for the target (drivers are pools: one per execution environment).

    Keyed by the password too: callers load the secret for each operation, so after a rotation the
    next operation gets a driver with the new password, and the old one is closed."""
    warn_neo4j(secret)  # a connection without verified TLS (a target that opted out): warned once per process
    key = (secret.uri, secret.username, secret.password.get_secret_value(), timeout)
    if key not in _drivers:
        # A new password for the same user (a rotation): the old driver's pool can only fail now.
        for stale in [k for k in _drivers if k[:2] == key[:2] and k[2] != key[2]]:
            _drivers.pop(stale).close()
        _drivers[key] = neo4j.GraphDatabase.driver(
            secret.uri,
            auth=(secret.username, key[2]),
            user_agent=USER_AGENT,
            connection_timeout=timeout,
            connection_acquisition_timeout=timeout,
            max_transaction_retry_time=timeout,
        )
    return _drivers[key]


def close_drivers() -> None:
    """Close every cached driver (tests, and the CLI on exit)."""
    while _drivers:
        _drivers.popitem()[1].close()


def server_info(secret: Neo4jSecret, *, timeout: float = 5.0) -> ServerInfo:
    try:
        with driver(secret, timeout=timeout).session(database=secret.database) as session:
            records = list(session.run(neo4j.Query(
                "CALL dbms.components() YIELD name, versions, edition RETURN versions[0] AS version, edition",
                timeout=timeout,
            )))
    except (ServiceUnavailable, OSError) as err:
        raise DatabaseUnavailable(f"Neo4j at {secret.uri} unavailable: {err}") from None
    except AuthError:
        raise DatabaseUnavailable(f"Neo4j at {secret.uri} rejected the credentials") from None
    except Neo4jError as err:
        raise DatabaseError(f"Neo4j query failed: {err.code}") from None
    return ServerInfo(
        engine=Engine.NEO4J,
        version=str(records[0]["version"]),
        edition=str(records[0]["edition"]),
        address=f"{secret.uri}/{secret.database}",
    )
