"""The restore progress probes (warden.restore_progress) against real servers: the PostgreSQL probe
moves while pg_restore loads and indexes a few-MB dump and stands still while pg_restore waits for
another session's lock (PostgreSQL 18, and Debian's 15 where it is installed); the Neo4j probe
moves while a restore loads a graph and builds its index (Neo4j 5.26)."""

from __future__ import annotations

import io
import subprocess
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from itertools import pairwise
from typing import Any

import psycopg
import pytest
from psycopg import sql

from local.postgres import PostgresEndpoint, create_database
from local.runtime import neo4j_secret, postgres_secret
from warden.config.credentials import Neo4jSecret, PostgresSecret
from warden.engines import neo4j as nb
from warden.engines.postgres.inventory import count_objects
from warden.engines.postgres.restore import restore_backup
from warden.restore_progress import Neo4jProgress, PostgresProgress

pytestmark = pytest.mark.integration

SOURCE, RESTORED = "probe_source", "probe_restored"
ROWS = 300_000  # a 7 MB dump: pg_restore spends a second or more in its COPY and its CREATE INDEX
# pg_restore's sessions (application warden, as every Warden connection) waiting for a lock
RESTORE_WAITING = ("SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name = 'warden' "
                   "AND wait_event_type = 'Lock'")


@pytest.fixture(params=["postgres", "postgres15"])
def server(request: pytest.FixtureRequest) -> PostgresEndpoint:
    endpoint: PostgresEndpoint = request.getfixturevalue(request.param)
    return endpoint


@pytest.fixture
def dump(server: PostgresEndpoint) -> tuple[bytes, dict[str, Any]]:
    """A custom-format dump of two tables (a_big: ROWS rows and an index; z_small) and its manifest."""
    uri = create_database(server, SOURCE, replace=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE a_big (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO a_big SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, %s) g",
                     (ROWS,))
        conn.execute("CREATE INDEX a_big_body ON a_big (body)")
        conn.execute("CREATE TABLE z_small (id int PRIMARY KEY)")
        conn.execute("INSERT INTO z_small SELECT generate_series(1, 100)")
    secret = PostgresSecret.model_validate(postgres_secret(server, SOURCE))
    data = subprocess.run([str(server.bin_dir / "pg_dump"), "-Fc", f"--dbname={uri}"], capture_output=True,
                          check=True).stdout
    return data, {"counts": count_objects(secret)}


@pytest.fixture
def restored(server: PostgresEndpoint) -> Iterator[PostgresSecret]:
    """The database the restore fills (dropped before and after)."""
    def drop() -> None:
        with psycopg.connect(server.uri(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(RESTORED)))

    drop()
    yield PostgresSecret.model_validate(postgres_secret(server, RESTORED))
    drop()


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as err:
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def readings_while(thread: threading.Thread, read: Callable[[], Hashable], every_s: float = 0.05) -> list[Any]:
    readings = []
    while thread.is_alive():
        readings.append(read())
        time.sleep(every_s)
    return readings


def changes(readings: list[Any]) -> int:
    return sum(1 for before, after in pairwise(readings) if after != before)


def test_the_postgres_probe_moves_while_pg_restore_loads_and_indexes(
        server: PostgresEndpoint, dump: tuple[bytes, dict[str, Any]], restored: PostgresSecret) -> None:
    # Given a restore of the dump, one pg_restore job
    data, manifest = dump
    probe = PostgresProgress(restored)
    first = probe.read()  # before the database exists: the probe reads on the maintenance database
    worker, outcome = in_thread(lambda: restore_backup(restored, [data], manifest, jobs=1, bin_dir=server.bin_dir))
    # When the probe is read all through it
    try:
        readings = [first, *readings_while(worker, probe.read)]
    finally:
        probe.close()
    # Then the restore succeeded, and the readings moved many times: COPY's counters, CREATE INDEX's
    # phase, the statements pg_restore began and ended
    assert "error" not in outcome, outcome
    copy, _, phases, _, _ = zip(*readings, strict=True)
    assert any(c and c[0] > 0 for c in copy), readings
    assert any(p and "building index" in p for p in phases), readings
    assert changes(readings) >= 5, readings


def test_the_postgres_probe_stands_still_while_pg_restore_waits_for_another_sessions_lock(
        server: PostgresEndpoint, dump: tuple[bytes, dict[str, Any]], restored: PostgresSecret) -> None:
    # Given an empty target database in which another session holds a lock on z_small (it creates
    # the table and has not committed): pg_restore's CREATE TABLE z_small waits for it
    data, manifest = dump
    uri = create_database(server, RESTORED)
    locker = psycopg.connect(uri)
    locker.execute("CREATE TABLE public.z_small (id int)")
    probe = PostgresProgress(restored)
    worker, outcome = in_thread(lambda: restore_backup(restored, [data], manifest, jobs=1, bin_dir=server.bin_dir))
    try:
        with psycopg.connect(server.uri(), autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while not watcher.execute(RESTORE_WAITING, (RESTORED,)).fetchone():
                assert worker.is_alive() and time.monotonic() < deadline, ("pg_restore never waited", outcome)
                time.sleep(0.05)
        # When the probe is read while pg_restore waits (3 s)
        time.sleep(0.5)
        waiting = [probe.read()]
        for _ in range(6):
            time.sleep(0.5)
            waiting.append(probe.read())
        # Then every reading is the same
        assert changes(waiting) == 0, waiting
        # and once the lock goes, pg_restore goes on and the readings move again
        locker.rollback()
        after = readings_while(worker, probe.read)
    finally:
        locker.close()
        worker.join(60)
        probe.close()
    assert "error" not in outcome, outcome
    assert [r for r in after if r != waiting[-1]], after


# -- Neo4j --------------------------------------------------------------------------------------

def test_the_neo4j_probe_moves_while_a_restore_loads_and_builds_its_index(
        neo4j_server: Any, neo4j_staging: Any) -> None:
    from warden.engines.neo4j.restore import COMMITTED_ROWS

    # Given a graph of 20 000 nodes in a chain with an index, exported
    source = Neo4jSecret.model_validate(neo4j_secret(neo4j_server))
    staging = Neo4jSecret.model_validate(neo4j_secret(neo4j_staging))
    with nb.driver(source).session(database="neo4j") as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS").consume()
        for record in list(session.run("SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP'")):
            session.run(f"DROP INDEX `{record['name']}`").consume()
        session.run("UNWIND range(1, 20000) AS i CREATE (:Probe {i: i, name: 'n' + toString(i)})").consume()
        session.run("MATCH (a:Probe), (b:Probe) WHERE b.i = a.i + 1 CREATE (a)-[:NEXT]->(b)").consume()
        session.run("CREATE INDEX probe_name IF NOT EXISTS FOR (n:Probe) ON (n.name)").consume()
        session.run("CALL db.awaitIndexes(60)").consume()
    out = io.BytesIO()
    exported = nb.export_backup(source, out)
    manifest = {"format_version": exported.format_version, "counts": exported.counts, "schema": exported.schema}
    probe = Neo4jProgress(staging)
    committed_before = COMMITTED_ROWS.value
    # When it is restored into the staging server (batches of 500 rows) while the probe is read
    worker, outcome = in_thread(lambda: nb.restore_backup(staging, [out.getvalue()], manifest, replace=True,
                                                           batch_rows=500))
    readings = [probe.read(), *readings_while(worker, probe.read)]
    # Then the restore succeeded, every row it sent was counted as committed, and the readings moved
    assert "error" not in outcome, outcome
    assert COMMITTED_ROWS.value - committed_before == 20000 + 19999
    committed = [r[0] for r in readings]
    assert committed == sorted(committed) and committed[-1] > committed[0], committed
    assert changes(readings) >= 3, readings
    assert probe.read()[1:3] == (20000, 19999)  # the count store: nodes, relationships
