"""When the PostgreSQL backup takes its exact row counts (`export_backup(row_counts=...)`): during
pg_dump (the default) or after it, always in the dump's own snapshot. Real PostgreSQL 18."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from local.postgres import PostgresEndpoint, create_database
from warden.config.credentials import PostgresSecret
from warden.engines import postgres as pgb

pytestmark = pytest.mark.integration


def secret_for(endpoint: PostgresEndpoint, dbname: str, **overrides: Any) -> PostgresSecret:
    fields = {"host": endpoint.host, "port": endpoint.port, "username": endpoint.username,
              "password": endpoint.password, "dbname": dbname, "sslmode": "disable", **overrides}
    return PostgresSecret(**fields)


def run_sql(endpoint: PostgresEndpoint, dbname: str, statement: str) -> None:
    with psycopg.connect(endpoint.uri(dbname), autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="module")
def counted_db(postgres: PostgresEndpoint) -> Iterator[str]:
    name = f"counts_{uuid.uuid4().hex[:8]}"
    create_database(postgres, name)
    run_sql(postgres, name, """
        CREATE TABLE items AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 30000) g;
        CREATE SCHEMA other;
        CREATE TABLE other.tags AS SELECT g AS id FROM generate_series(1, 77) g;
        CREATE TABLE other.empty (x int);""")
    yield name
    run_sql(postgres, "postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class InsertOnFirstWrite(io.BytesIO):
    """Keeps the archive; commits more rows the first time pg_dump's bytes arrive."""

    def __init__(self, endpoint: PostgresEndpoint, dbname: str) -> None:
        super().__init__()
        self.endpoint, self.dbname, self.inserted = endpoint, dbname, False

    def write(self, data: Any) -> int:
        if not self.inserted:
            self.inserted = True
            run_sql(self.endpoint, self.dbname,
                    "INSERT INTO items SELECT g, 'late' FROM generate_series(30001, 30500) g")
        return super().write(data)


def test_counts_after_the_dump_use_its_snapshot_not_rows_committed_meanwhile(
        postgres: PostgresEndpoint, counted_db: str) -> None:
    # Given rows committed while the dump streams (before the counts of "after" even start)
    secret = secret_for(postgres, counted_db)
    out = InsertOnFirstWrite(postgres, counted_db)
    try:
        # When the backup counts after pg_dump has finished
        result = pgb.export_backup(secret, out, bin_dir=postgres.bin_dir, row_counts="after")

        # Then the counts are the dump's snapshot, and the archive restores to exactly them
        assert out.inserted
        assert result.counts == {"public.items": 30000, "other.tags": 77, "other.empty": 0}
        assert pgb.count_objects(secret)["public.items"] == 30500
        assert result.details["row_counts"] == "after"
        target = f"counts_restore_{uuid.uuid4().hex[:8]}"
        restored = pgb.restore_backup(secret_for(postgres, target), [out.getvalue()], {"counts": result.counts},
                                      bin_dir=postgres.bin_dir)
        assert restored.counts == result.counts
        run_sql(postgres, "postgres", f'DROP DATABASE "{target}" WITH (FORCE)')
    finally:
        run_sql(postgres, counted_db, "DELETE FROM items WHERE id > 30000")


@pytest.mark.parametrize("row_counts", ["during", "after"])
def test_counts_are_exact_whenever_they_are_taken(postgres: PostgresEndpoint, counted_db: str,
                                                  row_counts: Any) -> None:
    secret = secret_for(postgres, counted_db)
    out = io.BytesIO()
    result = pgb.export_backup(secret, out, bin_dir=postgres.bin_dir, row_counts=row_counts)
    assert result.counts == pgb.count_objects(secret) == {"public.items": 30000, "other.tags": 77, "other.empty": 0}
    assert result.details["bytes"] == len(out.getvalue())
    assert out.getvalue().startswith(pgb.ARCHIVE_MAGIC)


def test_a_backup_without_counts_says_so(postgres: PostgresEndpoint, counted_db: str) -> None:
    result = pgb.export_backup(secret_for(postgres, counted_db), io.BytesIO(), bin_dir=postgres.bin_dir,
                               row_counts=None)
    assert result.counts == {}
    assert result.details["row_counts"] == "skipped"


def test_a_failing_writer_propagates_when_counts_come_after(postgres: PostgresEndpoint, counted_db: str) -> None:
    class UploadBroke(Exception):
        pass

    class Broken:
        def write(self, data: Any) -> int:
            raise UploadBroke("S3 said no")

    with pytest.raises(UploadBroke):
        pgb.export_backup(secret_for(postgres, counted_db), Broken(), bin_dir=postgres.bin_dir, row_counts="after")


def test_an_unknown_row_counts_mode_is_refused_before_connecting() -> None:
    nowhere = PostgresSecret(host="127.0.0.1", port=1, username="x", password="y", dbname="z", sslmode="disable")
    with pytest.raises(ValueError, match="row_counts must be 'during', 'after' or None, not 'sometimes'"):
        pgb.export_backup(nowhere, io.BytesIO(), row_counts="sometimes")
