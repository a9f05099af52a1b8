"""PostgreSQL adapter: connections from a target's secret, errors translated to Warden's."""

from __future__ import annotations

import psycopg

from warden.config.credentials import PostgresSecret
from warden.config.target import Engine
from warden.engines.base import ServerInfo
from warden.errors import DatabaseError, DatabaseUnavailable
from warden.tls import postgres_root_cert, warn_postgres

APPLICATION_NAME = "warden"


def connect(secret: PostgresSecret, *, timeout: float = 5.0, dbname: str | None = None) -> psycopg.Connection:
    """A new autocommit connection, tagged `application_name=warden` so Warden can recognise (and
    never terminate) its own sessions. `timeout` bounds both the connect and each statement.
    Verified TLS by default (warden.tls): `sslrootcert` is the secret's or the RDS CA bundle."""
    warn_postgres(secret)
    root_cert = postgres_root_cert(secret)
    try:
        return psycopg.connect(
            host=secret.host,
            port=secret.port,
            user=secret.username,
            password=secret.password.get_secret_value(),
            dbname=dbname or secret.dbname,
            sslmode=secret.sslmode,
            sslrootcert=root_cert,  # None (left out) unless sslmode is verify-ca / verify-full
            connect_timeout=max(1, int(timeout)),
            application_name=APPLICATION_NAME,
            options=f"-c statement_timeout={int(timeout * 1000)}",
            autocommit=True,
        )
    except psycopg.OperationalError as err:
        raise DatabaseUnavailable(
            f"PostgreSQL at {secret.host}:{secret.port} refused or timed out: {_first_line(err)}"
        ) from None


def server_info(secret: PostgresSecret, *, timeout: float = 5.0) -> ServerInfo:
    with connect(secret, timeout=timeout) as conn:
        try:
            row = conn.execute("SELECT current_setting('server_version'), version()").fetchone()
        except psycopg.Error as err:
            raise DatabaseError(f"PostgreSQL query failed: {_first_line(err)}") from None
    assert row is not None
    return ServerInfo(
        engine=Engine.POSTGRES,
        version=str(row[0]).split()[0],
        edition="postgresql",
        address=f"{secret.host}:{secret.port}/{secret.dbname}",
    )


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


CONNECT_TIMEOUT = 10.0
