"""Neo4j password changes for credential rotation (warden.rotation).

Passwords travel as query parameters, never in the query text; Neo4j obfuscates them in its query
log. Drivers made here are short-lived and never join the adapter's cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import neo4j
from neo4j.exceptions import AuthError, Neo4jError, ServiceUnavailable

from warden.config.credentials import Neo4jSecret
from warden.engines.neo4j.connection import USER_AGENT
from warden.errors import DatabaseError, DatabaseUnavailable

SYSTEM = "system"


@contextmanager
def _driver(secret: Neo4jSecret, timeout: float) -> Iterator[neo4j.Driver]:
    driver = neo4j.GraphDatabase.driver(secret.uri, auth=(secret.username, secret.password.get_secret_value()),
                                        user_agent=USER_AGENT, connection_timeout=timeout,
                                        connection_acquisition_timeout=timeout, max_transaction_retry_time=timeout)
    try:
        yield driver
    finally:
        driver.close()


def can_log_in(secret: Neo4jSecret, *, timeout: float = 5.0) -> bool:
    """Whether the server accepts these credentials (True) or refuses them (False).

    A server that cannot be reached raises DatabaseUnavailable: that is not a wrong password."""
    try:
        with _driver(secret, timeout) as driver, driver.session(database=secret.database) as session:
            session.run("RETURN 1").consume()
    except AuthError:
        return False
    except (ServiceUnavailable, OSError) as err:
        raise DatabaseUnavailable(f"Neo4j at {secret.uri} unavailable: {type(err).__name__}") from None
    except Neo4jError as err:
        if (err.code or "").startswith("Neo.ClientError.Security."):
            return False
        raise DatabaseError(f"Neo4j refused the login check: {err.code}") from None
    return True


def change_own_password(current: Neo4jSecret, new_password: str, *, timeout: float = 10.0) -> None:
    """Single-user rotation: log in as the secret's user and change its own password."""
    _run_system(current, "ALTER CURRENT USER SET PASSWORD FROM $old TO $new",
                {"old": current.password.get_secret_value(), "new": new_password}, timeout, current.username)


def set_user_password(admin: Neo4jSecret, username: str, new_password: str, *, member_of: str | None,
                      dbname: str | None = None, timeout: float = 10.0) -> bool:
    """Alternating rotation: as `admin`, create `username` when missing (with the roles of `member_of`
    where the edition has roles) and set its password. True when it was created."""
    del dbname  # users are server-wide in Neo4j
    rows = _run_system(admin, "SHOW USERS YIELD * WHERE user = $name RETURN *", {"name": username}, timeout,
                       username)
    if rows:
        _run_system(admin, "ALTER USER $name SET PASSWORD $password CHANGE NOT REQUIRED",
                    {"name": username, "password": new_password}, timeout, username)
        return False
    _run_system(admin, "CREATE USER $name SET PASSWORD $password CHANGE NOT REQUIRED",
                {"name": username, "password": new_password}, timeout, username)
    if member_of:
        model = _run_system(admin, "SHOW USERS YIELD * WHERE user = $name RETURN *", {"name": member_of},
                            timeout, username)
        roles = model[0].get("roles") if model else None  # Community has no roles (None)
        for role in roles if isinstance(roles, list) else []:
            if role != "PUBLIC":
                _run_system(admin, "GRANT ROLE $role TO $name", {"role": role, "name": username}, timeout,
                            username)
    return True


def _run_system(secret: Neo4jSecret, query: str, parameters: dict[str, object], timeout: float,
                username: str) -> list[dict[str, object]]:
    try:
        with _driver(secret, timeout) as driver, driver.session(database=SYSTEM) as session:
            return [record.data() for record in session.run(query, parameters)]
    except AuthError:
        raise DatabaseUnavailable(f"Neo4j at {secret.uri} rejected the credentials of "
                                  f"{secret.username!r}") from None
    except (ServiceUnavailable, OSError) as err:
        raise DatabaseUnavailable(f"Neo4j at {secret.uri} unavailable: {type(err).__name__}") from None
    except Neo4jError as err:
        # The code only: a message could quote the statement's parameters.
        raise DatabaseError(f"Neo4j refused the credential change of {username!r}: {err.code}") from None
