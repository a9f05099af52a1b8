"""A database server that stops answering mid-backup (SIGSTOP: alive, connected, silent) does not
stall the backup past its deadline: the export stops, the upload is aborted, the record is FAILED
with a reason that says the server stalled. Against a dedicated real PostgreSQL 18 (the session's
shared server is never stopped)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.aws import LocalAws
from local.deploy import Deployment
from local.postgres import LocalPostgres, PostgresEndpoint, create_database
from local.runtime import neo4j_secret, postgres_secret
from tests.conftest import STAGE
from warden.backup import BackupOutOfTime, run_backup
from warden.config.target import Target
from warden.engines.base import ServerStalled
from warden.models import BackupStatus
from warden.stores import Stores
from warden.stores.audit import tail
from warden.stores.catalog import Catalog

pytestmark = pytest.mark.integration
# pg_dump's session (it runs as application "warden", as every Warden connection does)
DUMP_SESSIONS = ("SELECT 1 FROM pg_stat_activity WHERE datname = 'stall_source' AND pid <> pg_backend_pid() "
                 "AND query LIKE 'LOCK TABLE %'")


@pytest.fixture(scope="module")
def stalling_postgres(services_dir: Path) -> Iterator[PostgresEndpoint]:
    """A PostgreSQL of this module's own: the test stops and resumes it."""
    server = LocalPostgres(services_dir / "postgres18-stalling")
    try:
        yield server.start()
    finally:
        server.stop()


def server_pids(endpoint: PostgresEndpoint) -> list[int]:
    """The postmaster and every process it forked (backends, checkpointer, ...)."""
    postmaster = int((endpoint.data_dir / "postmaster.pid").read_text().split()[0])
    pids, parents = [postmaster], {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    pids += [pid for pid, parent in parents.items() if parent == postmaster]
    return pids


def signal_server(endpoint: PostgresEndpoint, sig: int) -> None:
    for pid in server_pids(endpoint):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def test_postgres_backup_stops_at_its_deadline_when_the_server_stalls(
        aws: LocalAws, deployed: Deployment, local_targets: dict[str, Target],
        stalling_postgres: PostgresEndpoint) -> None:
    # Given a target on a server of its own, and pg_dump waiting on that server (behind a lock)
    uri = create_database(stalling_postgres, "stall_source", replace=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
    secret = postgres_secret(stalling_postgres, "stall_source")
    aws.client("secretsmanager").put_secret_value(SecretId=f"warden/{STAGE}/pg-local", SecretString=json.dumps(secret))
    settings, target = deployed.settings("backup"), local_targets["pg-local"]
    locker = psycopg.connect(uri)
    locker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
    outcome: dict[str, object] = {}

    def back_up() -> None:
        try:
            outcome["result"] = run_backup(Stores.from_settings(settings), target, actor="test",
                                           deadline=time.monotonic() + 4)
        except BaseException as err:
            outcome["error"] = err

    started = time.monotonic()
    worker = threading.Thread(target=back_up, daemon=True)
    worker.start()
    try:
        waiting = False
        for _ in range(100):
            with psycopg.connect(uri, autocommit=True) as probe:
                waiting = bool(probe.execute(DUMP_SESSIONS + " AND wait_event_type = 'Lock'").fetchone())
            if waiting:
                break
            time.sleep(0.05)
        assert waiting, ("pg_dump never started waiting", outcome)
        # When the server stops answering (the whole server, alive and connected)
        signal_server(stalling_postgres, signal.SIGSTOP)
        worker.join(15)
        # Then the backup returned soon after its deadline, while the server was still stopped
        took = time.monotonic() - started
        assert not worker.is_alive(), "the backup stayed blocked on the stalled server past its deadline"
    finally:
        signal_server(stalling_postgres, signal.SIGCONT)
        locker.close()
        worker.join(30)
    assert took < 4 + 5, took
    error = outcome.get("error")
    assert isinstance(error, BackupOutOfTime), outcome
    # and the record is FAILED with a reason that says the server stalled, audited, nothing stored
    assert settings.catalog_table
    (record,) = list(Catalog(settings.catalog_table).list(target.name))
    assert record.status is BackupStatus.FAILED
    assert record.error and record.error.startswith("BackupOutOfTime: ") and "the server stalled" in record.error
    assert "no data from the server for" in record.error
    assert record.upload_id is None and record.data_key is None
    assert ("backup", "fail", "failed") in [(e.operation, e.step, e.outcome) for e in tail(settings.audit_table,
                                                                                           target.name)]
    s3 = aws.client("s3")
    assert not s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"{target.name}/").get("Contents")
    assert not s3.list_multipart_uploads(Bucket=settings.bucket).get("Uploads")
    # and pg_dump is gone once the server answers again
    for _ in range(50):
        with psycopg.connect(uri, autocommit=True) as conn:
            if not conn.execute(DUMP_SESSIONS).fetchone():
                break
        time.sleep(0.1)
    else:
        pytest.fail("pg_dump's session outlived the failed backup")


@pytest.fixture(scope="module")
def stalling_neo4j(services_dir: Path) -> Iterator[Any]:
    """A Neo4j of this module's own: the test stops and resumes it."""
    from local.neo4j import LocalNeo4j

    server = LocalNeo4j(services_dir / "neo4j-stalling", heap="512m")
    try:
        yield server.start()
    finally:
        server.stop()


def test_neo4j_export_stops_at_its_deadline_when_the_server_stalls(stalling_neo4j: Any) -> None:
    from warden.config.credentials import Neo4jSecret
    from warden.engines import engine_for
    from warden.engines.neo4j import close_drivers, driver

    # Given a graph, and a server that stops answering once the export has read its schema
    secret = Neo4jSecret.model_validate(neo4j_secret(stalling_neo4j))
    with driver(secret).session() as session:
        session.run("UNWIND range(1, 2000) AS i CREATE (:Stall {i: i})").consume()
    jvm = stalling_neo4j.pid

    def stop_server(section: str, count: int) -> None:
        if section == "schema":
            os.kill(jvm, signal.SIGSTOP)

    # When the export runs with 4 s left
    outcome: dict[str, object] = {}

    def export() -> None:
        try:
            outcome["result"] = engine_for("neo4j").export_backup(secret, io.BytesIO(), deadline=started + 4,
                                                                  on_section=stop_server)
        except BaseException as err:
            outcome["error"] = err

    started = time.monotonic()
    worker = threading.Thread(target=export, daemon=True)
    worker.start()
    try:
        worker.join(15)
        took = time.monotonic() - started
        # Then it gave up at its deadline, while the server was still stopped
        assert not worker.is_alive(), "the export stayed blocked on the stalled server past its deadline"
    finally:
        os.kill(jvm, signal.SIGCONT)
        worker.join(30)
        close_drivers()
    assert took < 4 + 3, took
    assert isinstance(outcome.get("error"), ServerStalled), outcome
    assert "stalled" in str(outcome["error"])
