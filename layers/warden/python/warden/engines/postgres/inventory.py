"""What a PostgreSQL database holds, measured in one snapshot: row counts per table and a schema
summary (recorded in the manifest, compared after a restore), whether it is empty, and the
maintenance database used to create or replace it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from warden.config.credentials import PostgresSecret
from warden.engines.postgres.connection import CONNECT_TIMEOUT, connect
from warden.errors import DatabaseError, WardenError

_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


_COUNTED_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname NOT LIKE 'pg\\_toast%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY 1, 2
"""


def _count_rows(conn: psycopg.Connection) -> dict[str, int]:
    """Exact row counts of every user table (partitions counted as themselves, partitioned parents
    and materialized views not at all: their rows are their partitions' / recomputed on restore)."""
    tables = conn.execute(_COUNTED_TABLES, {"system": list(_SYSTEM_SCHEMAS)}).fetchall()
    counts: dict[str, int] = {}
    for schema, table in tables:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        ).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def _schema_summary(conn: psycopg.Connection) -> dict[str, Any]:
    system = {"system": list(_SYSTEM_SCHEMAS)}
    user_ns = ("n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%' "
               "AND n.nspname NOT LIKE 'pg\\_toast%%'")
    schemas = [r[0] for r in conn.execute(
        f"SELECT n.nspname FROM pg_namespace n WHERE {user_ns} ORDER BY 1", system)]
    relations = conn.execute(
        f"""SELECT c.relkind::text, n.nspname || '.' || c.relname
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE {user_ns} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'i', 'I')
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                              AND d.objid = c.oid AND d.deptype = 'e')
            ORDER BY 2""", system).fetchall()
    by_kind: dict[str, list[str]] = {}
    for kind, name in relations:
        by_kind.setdefault(kind, []).append(name)
    extensions: dict[str, str] = {
        str(name): str(version)
        for name, version in conn.execute("SELECT extname, extversion FROM pg_extension ORDER BY 1")}
    functions = conn.execute(
        f"""SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE {user_ns} AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                            AND d.objid = p.oid AND d.deptype = 'e')""", system).fetchone()
    version, encoding = conn.execute(
        "SELECT current_setting('server_version'), pg_encoding_to_char(encoding) "
        "FROM pg_database WHERE datname = current_database()").fetchone() or ("", "")
    return {
        "server_version": str(version).split()[0],
        "encoding": encoding,
        "schemas": schemas,
        "tables": by_kind.get("r", []),
        "partitioned_tables": by_kind.get("p", []),
        "views": by_kind.get("v", []),
        "materialized_views": by_kind.get("m", []),
        "foreign_tables": by_kind.get("f", []),
        "sequences": len(by_kind.get("S", [])),
        "indexes": len(by_kind.get("i", [])) + len(by_kind.get("I", [])),
        "functions": int(functions[0]) if functions else 0,
        "extensions": extensions,
    }


def _snapshot_connection(secret: PostgresSecret, dbname: str | None = None) -> psycopg.Connection:
    conn = connect(secret, timeout=CONNECT_TIMEOUT, dbname=dbname)
    try:
        # Counting a big table takes long, and the exporting transaction sits idle while pg_dump
        # imports its snapshot: neither may be cut short by the session defaults.
        conn.execute("SET statement_timeout = 0")
        conn.execute("SET idle_in_transaction_session_timeout = 0")
        conn.autocommit = False
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
    except psycopg.Error as err:
        conn.close()
        raise DatabaseError(f"cannot prepare the snapshot transaction: {_first_line(err)}") from None
    return conn


def count_objects(secret: PostgresSecret) -> dict[str, int]:
    """Exact row count of every user table, as `"schema.table"` → rows, in one snapshot."""
    with _snapshot_connection(secret) as conn:
        try:
            return _count_rows(conn)
        except psycopg.Error as err:
            raise DatabaseError(f"counting rows failed: {_first_line(err)}") from None


_USER_OBJECTS = """
SELECT
  (SELECT count(*) FROM pg_namespace n
    WHERE n.nspname <> ALL(%(system)s) AND n.nspname <> 'public' AND n.nspname NOT LIKE 'pg\\_%%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                      AND d.objid = n.oid AND d.deptype = 'e'))
+ (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_%%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')
                        AND d.refclassid = 'pg_class'::regclass
                        AND EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                                    AND e.objid = t.oid AND e.deptype = 'e')))
+ (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_%%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e'))
+ (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE t.typtype IN ('e', 'd', 'r', 'm') AND n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_%%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                      AND d.objid = t.oid AND d.deptype = 'e'))
"""


def database_size(secret: PostgresSecret) -> int:
    """pg_database_size of the target's database (bytes on disk; a dump is usually smaller)."""
    with connect(secret, timeout=CONNECT_TIMEOUT) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def is_empty(secret: PostgresSecret) -> bool:
    """True when the database holds nothing of its own: no schema but `public`, and no table, view,
    sequence, function or type outside what installed extensions brought. A database that does not
    exist yet is empty (a restore creates it)."""
    return _database_state(secret)[0] in ("empty", "missing")


def _database_state(secret: PostgresSecret) -> tuple[str, int, int]:
    """("missing" | "empty" | "not-empty", number of user objects, server major version)."""
    try:
        conn = connect(secret, timeout=CONNECT_TIMEOUT)
    except WardenError:
        with connect(secret, timeout=CONNECT_TIMEOUT, dbname=_maintenance_db(secret)) as maintenance:
            exists = maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s", (secret.dbname,)).fetchone()
            if exists is None:
                return "missing", 0, maintenance.info.server_version // 10000
        raise
    with conn:
        try:
            row = conn.execute(_USER_OBJECTS, {"system": list(_SYSTEM_SCHEMAS)}).fetchone()
        except psycopg.Error as err:
            raise DatabaseError(f"cannot inspect {secret.dbname}: {_first_line(err)}") from None
        major = conn.info.server_version // 10000
    objects = int(row[0]) if row else 0
    return ("empty" if objects == 0 else "not-empty"), objects, major


def _maintenance_db(secret: PostgresSecret) -> str:
    return "template1" if secret.dbname == "postgres" else "postgres"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
