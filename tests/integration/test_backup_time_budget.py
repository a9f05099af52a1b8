"""A backup that would outlive its Lambda invocation is stopped before the invocation ends: the
upload is aborted (no object, no open multipart upload), the record says FAILED with the reason and
what to do, the failure is audited, the export's pg_dump / Neo4j session is gone, and the next
backup runs normally. Against the real PostgreSQL 18 and Neo4j 5.26."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import psycopg
import pytest

from local.aws import LocalAws
from local.deploy import Deployment
from local.postgres import PostgresEndpoint, create_database
from local.runtime import postgres_secret
from tests.conftest import STAGE, invoke, load_event
from warden.backup import FINISH_MARGIN_S, BackupOutOfTime, run_backup
from warden.config.target import Target
from warden.engines import engine_for
from warden.engines.neo4j.connection import driver as neo4j_driver_of
from warden.models import BackupRecord, BackupStatus
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.audit import tail
from warden.stores.catalog import Catalog
from warden.stores.secrets import load_secret

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def budget_db(postgres: PostgresEndpoint) -> str:
    uri = create_database(postgres, "budget_source", replace=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
    return uri


@pytest.fixture
def settings(deployed: Deployment) -> Settings:
    return deployed.settings("backup")


@pytest.fixture
def pg_target(aws: LocalAws, deployed: Deployment, postgres: PostgresEndpoint, budget_db: str,
              local_targets: dict[str, Target]) -> Target:
    aws.client("secretsmanager").put_secret_value(
        SecretId=f"warden/{STAGE}/pg-local", SecretString=json.dumps(postgres_secret(postgres, "budget_source")))
    return local_targets["pg-local"]


def records(settings: Settings, target: str) -> list[BackupRecord]:
    assert settings.catalog_table
    return list(Catalog(settings.catalog_table).list(target))


def assert_nothing_stored(aws: LocalAws, settings: Settings, target: str) -> None:
    s3 = aws.client("s3")
    listed = s3.list_object_versions(Bucket=settings.bucket, Prefix=f"{target}/")
    assert not listed.get("Versions") and not listed.get("DeleteMarkers"), listed
    assert not s3.list_multipart_uploads(Bucket=settings.bucket).get("Uploads")


def pg_dump_sessions(uri: str) -> list[str]:
    with psycopg.connect(uri, autocommit=True) as conn:
        rows = conn.execute("SELECT application_name FROM pg_stat_activity "
                            "WHERE datname = 'budget_source' AND pid <> pg_backend_pid() "
                            "AND application_name = 'pg_dump'").fetchall()
    return [r[0] for r in rows]


def assert_failed_out_of_time(settings: Settings, target: str) -> BackupRecord:
    (record,) = records(settings, target)
    assert record.status is BackupStatus.FAILED
    assert record.error and record.error.startswith("BackupOutOfTime: ")
    assert "time budget" in record.error and "A backup's time budget" in record.error
    assert record.data_key is None and record.upload_id is None
    steps = [(e.operation, e.step, e.outcome) for e in tail(settings.audit_table, target)]
    assert ("backup", "fail", "failed") in steps
    return record


def test_postgres_backup_past_its_deadline_stops_cleanly(aws: LocalAws, settings: Settings, pg_target: Target,
                                                          budget_db: str) -> None:
    # When a backup starts with 50 ms left (none at all is refused: tests/unit/test_backup_integrity.py)
    with pytest.raises(BackupOutOfTime, match="did not finish within its time budget"):
        run_backup(Stores.from_settings(settings), pg_target, actor="test", deadline=time.monotonic() + 0.05)
    # Then it is FAILED with the reason, audited, and nothing is stored or left uploading
    assert_failed_out_of_time(settings, pg_target.name)
    assert_nothing_stored(aws, settings, pg_target.name)
    # and pg_dump was stopped (its session is gone)
    for _ in range(50):
        if not pg_dump_sessions(budget_db):
            break
        time.sleep(0.1)
    assert pg_dump_sessions(budget_db) == []
    # and the lease is free: the next backup runs to the end
    outcome = run_backup(Stores.from_settings(settings), pg_target, actor="test")
    assert outcome.record is not None and outcome.record.status is BackupStatus.COMPLETED
    assert outcome.record.counts["public.items"] == 20000


def test_neo4j_backup_past_its_deadline_stops_cleanly(aws: LocalAws, settings: Settings, deployed: Deployment,
                                                       local_targets: dict[str, Target], neo4j_driver: Any) -> None:
    with neo4j_driver.session() as session:
        session.run("MATCH (n) DETACH DELETE n").consume()
        session.run("UNWIND range(1, 3000) AS i CREATE (:Budget {i: i, s: 'x' + toString(i)})").consume()
    target = local_targets["graph-local"]
    with pytest.raises(BackupOutOfTime, match="did not finish within its time budget"):
        run_backup(Stores.from_settings(settings), target, actor="test", deadline=time.monotonic() + 0.05)
    assert_failed_out_of_time(settings, target.name)
    assert_nothing_stored(aws, settings, target.name)
    outcome = run_backup(Stores.from_settings(settings), target, actor="test")
    assert outcome.record is not None and outcome.record.counts["nodes"] == 3000


class _RefusingSink:
    def write(self, data: bytes) -> int:
        raise OSError("the sink is full")


def test_an_export_that_fails_gives_its_connection_back_with_its_read_timeout(
        local_targets: dict[str, Target], deployed: Deployment, neo4j_driver: Any) -> None:
    """The export bounds its connection's reads by its deadline; whatever stops it (here the sink
    fails on the first write), the pooled connection gets its own read timeout back, so a later
    query slower than that bound still works on Warden's driver (a health check found one once)."""
    with neo4j_driver.session() as session:
        session.run("MATCH (n) DETACH DELETE n").consume()
        session.run("UNWIND range(1, 100) AS i CREATE (:Budget {i: i})").consume()
    secret = load_secret(local_targets["graph-local"])
    with pytest.raises(OSError, match="the sink is full"):
        engine_for("neo4j").export_backup(secret, _RefusingSink(), deadline=time.monotonic() + 0.3)
    query = "UNWIND range(1, $n) AS i WITH i WHERE i % 7 = 0 RETURN count(*)"
    n = 200_000
    while True:  # a query that takes at least 0.8 s on this machine
        started = time.monotonic()
        neo4j_driver.execute_query(query, n=n)
        if time.monotonic() - started >= 0.8:
            break
        n *= 2
    assert neo4j_driver_of(secret).execute_query(query, n=n).records[0][0] == n // 7


def test_the_backup_function_stops_before_its_timeout(aws: LocalAws, deployed: Deployment, settings: Settings,
                                                      pg_target: Target, budget_db: str) -> None:
    """Through the deployed function: its Timeout leaves 2 s after the finishing margin, and pg_dump
    waits 3 s behind a lock, so the first byte comes after the budget ends."""
    function = deployed.function_named("backup")
    aws.client("lambda").update_function_configuration(FunctionName=function, Timeout=FINISH_MARGIN_S + 2)
    release = threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(budget_db) as conn:
            conn.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            release.wait(3)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        started = time.monotonic()
        # on Lambda, as asked: an `auto` backup out of time would be handed over to Fargate (test_backup_handover)
        result, error = invoke(aws, function, load_event("backup_manual", runner="lambda"))
        took = time.monotonic() - started
    finally:
        release.set()
        holder.join()
    assert error == "Unhandled" and result["errorType"] == "BackupOutOfTime", result
    assert re.search(r"time budget of [12] s \(0\.0 MiB written", result["errorMessage"]), result  # 2 s less cold start
    # It returned well inside the function's timeout, not at it
    assert took < FINISH_MARGIN_S, took
    assert_failed_out_of_time(settings, pg_target.name)
    assert_nothing_stored(aws, settings, pg_target.name)
