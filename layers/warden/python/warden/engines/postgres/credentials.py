"""PostgreSQL password changes for credential rotation (warden.rotation).

The new password never reaches the server as plain text: libpq computes the SCRAM-SHA-256 verifier
on the client (`PQencryptPasswordConn`), and `ALTER ROLE ... PASSWORD` sends only that verifier, so
even `log_statement = 'all'` logs no password. Role names go through identifier quoting.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from warden.config.credentials import PostgresSecret
from warden.engines.postgres.connection import connect
from warden.errors import DatabaseError, DatabaseUnavailable

# SQLSTATE 28P01 invalid_password, 28000 invalid_authorization_specification (no pg_hba entry, no such role).
_AUTH_STATES = {"28P01", "28000"}
_AUTH_WORDS = ("password authentication failed", "authentication failed", "no pg_hba.conf entry",
               "does not exist")


def can_log_in(secret: PostgresSecret, *, timeout: float = 5.0) -> bool:
    """Whether the server accepts these credentials (True) or refuses them (False).

    Connects the way every Warden function does (warden.engines.postgres.connect: same TLS). A
    server that cannot be reached raises DatabaseUnavailable: that is not a wrong password."""
    try:
        conn = connect(secret, timeout=timeout)
    except DatabaseUnavailable as err:
        cause = err.__context__  # the driver's error (hidden from tracebacks, kept for this test)
        if isinstance(cause, psycopg.OperationalError) and _refused_login(cause):
            return False
        raise
    with conn:
        conn.execute("SELECT 1")
    return True


def _refused_login(err: psycopg.OperationalError) -> bool:
    return getattr(err, "sqlstate", None) in _AUTH_STATES or any(w in str(err) for w in _AUTH_WORDS)


def scram_verifier(conn: psycopg.Connection, username: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of `password`, computed by libpq on this side of the connection."""
    return conn.pgconn.encrypt_password(password.encode(), username.encode(), b"scram-sha-256").decode()


def change_own_password(current: PostgresSecret, new_password: str, *, timeout: float = 10.0) -> None:
    """Single-user rotation: log in as the secret's user and set its own password."""
    with connect(current, timeout=timeout) as conn:
        _alter_password(conn, current.username, new_password)


def set_user_password(admin: PostgresSecret, username: str, new_password: str, *, member_of: str | None,
                      dbname: str | None = None, timeout: float = 10.0) -> bool:
    """Alternating rotation: as `admin`, create `username` when missing (LOGIN, and a member of
    `member_of`, so it has that role's privileges) and set its password. True when it was created."""
    with connect(admin, timeout=timeout, dbname=dbname) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (username,)).fetchone() is not None
        try:
            if not exists:
                verifier = scram_verifier(conn, username, new_password)
                conn.execute(sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(
                    sql.Identifier(username), sql.Literal(verifier)))
            else:
                _alter_password(conn, username, new_password)
            if member_of:  # every time: a clone made by hand may lack it (granting twice is harmless)
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), sql.Identifier(username)))
        except psycopg.Error as err:
            raise DatabaseError(f"PostgreSQL refused to set the password of {username!r}: "
                                f"{_first_line(err)}") from None
    return not exists


def _alter_password(conn: psycopg.Connection, username: str, new_password: str) -> None:
    verifier = scram_verifier(conn, username, new_password)
    try:
        conn.execute(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(sql.Identifier(username),
                                                                     sql.Literal(verifier)))
    except psycopg.Error as err:
        raise DatabaseError(f"PostgreSQL refused to change the password of {username!r}: "
                            f"{_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
