"""Promotion of a validated PostgreSQL copy by renaming databases on the target's own server (promotion
`swap`): production's database is renamed aside and the staging database takes its name, and back
again on rollback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from warden.config.credentials import PostgresSecret


def _rename_swap(production: PostgresSecret, staging_db: str) -> str:
    """PostgreSQL on one server: production → `<db>_wp_<time>`, staging → production. Returns the
    name the previous production database now has (rollback swaps back)."""
    from psycopg import sql

    from warden.engines.postgres.connection import connect

    previous = f"{production.dbname[:40]}_wp_{datetime.now(UTC):%Y%m%d%H%M%S}"
    with connect(production, dbname=_maintenance_db(production), timeout=60) as conn:
        _terminate(conn, [production.dbname, staging_db])
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(production.dbname), sql.Identifier(previous)))
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(staging_db), sql.Identifier(production.dbname)))
    return previous


def _swap_back(production: PostgresSecret, previous: str, staging_db: str) -> None:
    from psycopg import sql

    from warden.engines.postgres.connection import connect

    with connect(production, dbname=_maintenance_db(production), timeout=60) as conn:
        _terminate(conn, [production.dbname, previous])
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(production.dbname), sql.Identifier(staging_db)))
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(previous), sql.Identifier(production.dbname)))


def _maintenance_db(production: PostgresSecret) -> str:
    """A database to connect to while renaming or dropping others (never one of those)."""
    return "template1" if production.dbname == "postgres" else "postgres"


def _terminate(conn: Any, databases: list[str]) -> None:
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", (databases,))
