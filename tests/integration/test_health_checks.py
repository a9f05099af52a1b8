"""Health checks against the real local databases, put into the states the checks must catch:
missing properties, a FAILED index, long transactions and queries, blocked sessions, orphans, dead
tuples, bloat, invalid indexes, slow statements, stale backups, and a server that never answers.

Configuration is passed explicitly (thresholds / schema) rather than through Target fields, so
these tests hold before and after Target grows its `health` / `required_schema` fields.
PostgreSQL work happens in a database of its own (`warden_health`), Neo4j work on labels starting
with `Hc`, both removed afterwards: the session's servers are shared with other tests.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from local.aws import LocalAws, create_function
from local.deploy import Deployment
from local.postgres import PostgresEndpoint
from tests.conftest import STAGE, invoke, load_event
from warden.checks import run_tier
from warden.config.credentials import Neo4jSecret, PostgresSecret
from warden.config.health import HealthThresholds, RequiredSchema
from warden.config.target import Engine, Target
from warden.engines.neo4j import health as neo4j_health
from warden.engines.postgres import health as postgres_health
from warden.health import backup_tier, check_target, check_targets, format_text, metric_points
from warden.models import BackupRecord, BackupStatus, CheckResult, CheckStatus, HealthStatus
from warden.stores.catalog import Catalog, new_backup_id

pytestmark = pytest.mark.integration

DB = "warden_health"


# --- helpers -----------------------------------------------------------------------------------


def run_engine(module: Any, secret: Any, thresholds: HealthThresholds | None = None,
               schema: RequiredSchema | None = None) -> dict[str, CheckResult]:
    """Every schema / integrity / metrics check of one engine, by name."""
    tiers = module.tiers(secret, thresholds=thresholds or HealthThresholds(), schema=schema or RequiredSchema())
    return {r.name: r for tier in tiers for r in run_tier(tier)}


def register(aws: LocalAws, name: str, engine: Engine, secret: dict[str, Any]) -> Target:
    """A target whose credentials are in (moto's) Secrets Manager, as deployed targets have them."""
    secret_name = f"warden/{STAGE}/{name}"
    aws.client("secretsmanager").create_secret(Name=secret_name, SecretString=json.dumps(secret))
    # The local servers have no TLS: the explicit opt-out.
    return Target.model_validate({"name": name, "engine": engine.value, "secret_name": secret_name,
                                  "tls": {"required": False}})


def pg_conn(pg: PostgresEndpoint, *, autocommit: bool = True, dbname: str = DB) -> psycopg.Connection:
    return psycopg.connect(host=pg.host, port=pg.port, user=pg.username, password=pg.password, dbname=dbname,
                           autocommit=autocommit)


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def pg_secret(postgres: PostgresEndpoint) -> Iterator[PostgresSecret]:
    with pg_conn(postgres, dbname=postgres.dbname) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DB}")
    yield PostgresSecret(host=postgres.host, port=postgres.port, username=postgres.username,
                         password=postgres.password, dbname=DB, sslmode="disable")
    with pg_conn(postgres, dbname=postgres.dbname) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


@pytest.fixture(scope="module")
def neo4j_secret(neo4j_server: Any) -> Neo4jSecret:
    return Neo4jSecret(uri=neo4j_server.uri, username=neo4j_server.username, password=neo4j_server.password)


@pytest.fixture
def graph(neo4j_driver: Any) -> Iterator[Any]:
    """The test's Neo4j driver; every node labelled Hc* and index named hc_* is removed afterwards."""
    yield neo4j_driver
    with neo4j_driver.session() as session:
        for row in list(session.run("SHOW INDEXES YIELD name WHERE name STARTS WITH 'hc_' RETURN name")):
            session.run(f"DROP INDEX {row['name']} IF EXISTS").consume()
        session.run("MATCH (n) WHERE any(l IN labels(n) WHERE l STARTS WITH 'Hc') DETACH DELETE n").consume()


class Blackhole:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


# --- Neo4j -------------------------------------------------------------------------------------


def test_neo4j_missing_required_property_is_unhealthy_or_degraded_as_configured(
        aws: LocalAws, graph: Any, neo4j_server: Any) -> None:
    # Given three :HcPerson nodes, one of them without the required `name`
    with graph.session() as s:
        s.run("CREATE (:HcPerson {name: 'ada'}), (:HcPerson {name: 'bob'}), (:HcPerson {age: 3})").consume()
        lacking = s.run("MATCH (n:HcPerson) WHERE n.name IS NULL RETURN elementId(n) AS id").single()["id"]
    target = register(aws, "graph-schema", Engine.NEO4J, {
        "engine": "neo4j", "uri": neo4j_server.uri, "username": neo4j_server.username,
        "password": neo4j_server.password})
    schema = RequiredSchema(labels=["HcPerson"], required_properties={"HcPerson": ["name", "age"]})

    # When the target is checked with the default severity (fail), then with "warn"
    strict = check_target(target, schema=schema)
    lenient = check_target(target, schema=schema, thresholds=HealthThresholds(schema_violation="warn"))

    # Then the node is found, and the target's status follows the configured severity
    check = {c.name: c for c in strict.checks}["required_properties"]
    assert check.status is CheckStatus.FAIL
    assert "1 :HcPerson without name" in check.message and "2 :HcPerson without age" in check.message
    assert lacking in check.details["violations"][0]["sample"]
    assert {c.name: c for c in strict.checks}["required_labels"].status is CheckStatus.PASS
    assert strict.status is HealthStatus.UNHEALTHY
    assert {c.name: c for c in lenient.checks}["required_properties"].status is CheckStatus.WARN
    assert lenient.status is HealthStatus.DEGRADED


def test_neo4j_failed_index_fails_the_required_index_and_index_state_checks(graph: Any, neo4j_secret: Any) -> None:
    # Given an index whose population failed: a value past the range index's key size limit
    with graph.session() as s:
        s.run("CREATE (:HcBig {v: reduce(s = '', i IN range(1, 2000) | s + 'abcdefgh')})").consume()
        s.run("CREATE INDEX hc_big FOR (n:HcBig) ON (n.v)").consume()
        wait_for(lambda: s.run("SHOW INDEXES YIELD name, state WHERE name = 'hc_big' RETURN state")
                 .single()["state"] == "FAILED")

    # When the checks run with that index required
    results = run_engine(neo4j_health, neo4j_secret, schema=RequiredSchema(indexes=["hc_big", "hc_absent"]))

    # Then both the schema check and the index state check report it
    required, states = results["required_indexes"], results["index_population"]
    assert required.status is CheckStatus.FAIL
    assert "missing: hc_absent" in required.message and "FAILED: hc_big" in required.message
    assert states.status is CheckStatus.FAIL and "hc_big" in states.message
    assert "too large to index" in states.details["failed"][0]["failure"]
    assert states.details["metrics"]["IndexesNotOnline"] >= 1


def test_neo4j_long_open_transaction_is_reported_and_wardens_own_are_not(graph: Any, neo4j_secret: Any) -> None:
    # Given a write transaction left open for over a second
    with graph.session() as s:
        tx = s.begin_transaction(metadata={"test": "hc-long"})
        try:
            tx.run("CREATE (:HcTx)").consume()
            time.sleep(1.3)
            # When the metrics tier runs with a 1 s warning threshold (and another with a 1 s failure)
            warned = run_engine(neo4j_health, neo4j_secret, HealthThresholds(long_tx_warn_s=1, long_tx_fail_s=600))
            failed = run_engine(neo4j_health, neo4j_secret, HealthThresholds(long_tx_warn_s=0.5, long_tx_fail_s=1))
        finally:
            tx.rollback()

    # Then the open transaction is the one reported, with the status its age deserves
    check = warned["transactions"]
    assert check.status is CheckStatus.WARN, check.message
    assert failed["transactions"].status is CheckStatus.FAIL
    listed = check.details["long"]
    assert [x["metadata"] for x in listed] == [{"test": "hc-long"}]  # and not Warden's own
    assert listed[0]["user"] == "neo4j" and listed[0]["seconds"] >= 1.0
    assert check.details["metrics"]["LongestTransactionSeconds"] >= 1.0


def test_neo4j_orphans_and_wrong_relationship_endpoints_are_found(graph: Any, neo4j_secret: Any) -> None:
    # Given orders placed by customers, two orders placed by nobody, and one "placed" by a product
    with graph.session() as s:
        s.run("CREATE (:HcOrder {n: 1})-[:PLACED_BY]->(:HcCustomer), (:HcOrder {n: 2}), (:HcOrder {n: 3}), "
              "(:HcOrder {n: 4})-[:PLACED_BY]->(:HcProduct)").consume()
    schema = RequiredSchema(must_be_connected=[{"label": "HcOrder", "type": "PLACED_BY"}, "HcCustomer"],
                            relationship_endpoints=[{"type": "PLACED_BY", "from_label": "HcOrder",
                                                     "to_label": "HcCustomer"}])

    # When the integrity tier runs
    results = run_engine(neo4j_health, neo4j_secret, schema=schema)

    # Then the orphans and the wrong endpoint are counted (a warning by default)
    orphans, endpoints = results["orphan_nodes"], results["relationship_endpoints"]
    assert orphans.status is CheckStatus.WARN
    assert orphans.details["metrics"]["OrphanNodes"] == 2
    assert "2 :HcOrder without :PLACED_BY relationships" in orphans.message
    assert endpoints.status is CheckStatus.WARN and endpoints.details["metrics"]["EndpointViolations"] == 1


def test_neo4j_healthy_graph_passes_every_tier_with_heap_and_counts(graph: Any, neo4j_secret: Any) -> None:
    results = run_engine(neo4j_health, neo4j_secret)
    assert {n: r.status for n, r in results.items() if r.status is not CheckStatus.PASS} == {}
    assert 0 < results["heap"].details["metrics"]["HeapUsedPct"] < 100
    assert results["store"].details["status"] == "online"
    assert "needs APOC" in results["store"].message  # Community without plugins: no byte size
    assert {r.details["tier"] for r in results.values()} == {"schema", "integrity", "metrics"}


# --- PostgreSQL --------------------------------------------------------------------------------


def test_postgres_long_query_is_detected_with_the_status_its_age_deserves(
        postgres: PostgresEndpoint, pg_secret: PostgresSecret) -> None:
    # Given a query that has been running for over a second in another session
    sleeper = pg_conn(postgres)
    pid = sleeper.info.backend_pid
    thread = threading.Thread(target=lambda: _swallow(sleeper, "SELECT pg_sleep(30)"), daemon=True)
    thread.start()
    try:
        time.sleep(1.5)
        # When checked against thresholds it exceeds: warn only, then fail too
        warned = run_engine(postgres_health, pg_secret, HealthThresholds(long_query_warn_s=1, long_query_fail_s=60))
        failed = run_engine(postgres_health, pg_secret, HealthThresholds(long_query_warn_s=0.5, long_query_fail_s=1))
    finally:
        with pg_conn(postgres) as admin:
            admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
        thread.join(10)
        sleeper.close()

    # Then that query is the one reported, and Warden's own sessions are not
    check = warned["long_queries"]
    assert check.status is CheckStatus.WARN, check.message
    assert failed["long_queries"].status is CheckStatus.FAIL
    assert [q["pid"] for q in check.details["queries"]] == [pid]
    assert "pg_sleep(30)" in check.details["queries"][0]["query"]
    assert check.details["metrics"]["LongestQuerySeconds"] >= 1.0


def _swallow(conn: psycopg.Connection, query: str) -> None:
    with contextlib.suppress(psycopg.Error):  # cancelled or rolled back by the test
        conn.execute(query)


def test_postgres_connections_near_the_limit_warn_then_fail(postgres: PostgresEndpoint,
                                                            pg_secret: PostgresSecret) -> None:
    # Given ten more client connections (10 % of max_connections=100)
    extra = [pg_conn(postgres) for _ in range(10)]
    try:
        # When checked with low thresholds rather than 95 real connections
        warned = run_engine(postgres_health, pg_secret,
                            HealthThresholds(connections_warn_pct=5, connections_fail_pct=90))
        failed = run_engine(postgres_health, pg_secret,
                            HealthThresholds(connections_warn_pct=5, connections_fail_pct=9))
    finally:
        for conn in extra:
            conn.close()
    # Then
    check = warned["connections"]
    assert check.status is CheckStatus.WARN, check.message
    assert check.details["max"] == 100 and check.details["used"] >= 10
    assert check.details["metrics"]["ConnectionsUsedPct"] >= 10
    assert failed["connections"].status is CheckStatus.FAIL


def test_postgres_blocked_query_and_the_transaction_blocking_it_are_reported(
        postgres: PostgresEndpoint, pg_secret: PostgresSecret) -> None:
    with pg_conn(postgres) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS hc_lock (id int PRIMARY KEY, v int)")
        setup.execute("INSERT INTO hc_lock VALUES (1, 0) ON CONFLICT DO NOTHING")
    # Given a transaction holding a row lock, and another session waiting for it
    holder = pg_conn(postgres, autocommit=False)
    holder.execute("UPDATE hc_lock SET v = v + 1 WHERE id = 1")
    waiter = pg_conn(postgres)
    holder_pid, waiter_pid = holder.info.backend_pid, waiter.info.backend_pid
    thread = threading.Thread(target=lambda: _swallow(waiter, "UPDATE hc_lock SET v = v + 1 WHERE id = 1"),
                              daemon=True)
    thread.start()
    try:
        time.sleep(1.3)
        # When checked with 1 s thresholds
        results = run_engine(postgres_health, pg_secret, HealthThresholds(blocked_warn_s=1, long_tx_warn_s=1))
    finally:
        holder.rollback()
        holder.close()
        thread.join(10)
        waiter.close()
    # Then the waiter is blocked by the holder, whose open transaction is long too
    blocked = results["blocked_queries"]
    assert blocked.status is CheckStatus.WARN, blocked.message
    assert blocked.details["blocked"][0]["pid"] == waiter_pid
    assert blocked.details["blocked"][0]["blocked_by"] == [holder_pid]
    long_tx = results["long_transactions"]
    assert long_tx.status is CheckStatus.WARN
    assert holder_pid in [t["pid"] for t in long_tx.details["transactions"]]


def test_postgres_slow_statements_come_from_pg_stat_statements(postgres: PostgresEndpoint,
                                                               pg_secret: PostgresSecret) -> None:
    # Without the extension in the database there is nothing to judge
    assert run_engine(postgres_health, pg_secret)["slow_queries"].details["installed"] is False
    # Given pg_stat_statements in the database and a statement averaging 250 ms over two calls
    with pg_conn(postgres) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                     "WHERE datname = current_database()), 0)")
        for _ in range(2):
            conn.execute("SELECT pg_sleep(0.25)")
    # When checked with a 200 ms threshold
    slow = run_engine(postgres_health, pg_secret,
                      HealthThresholds(slow_query_warn_ms=200, slow_query_min_calls=2))["slow_queries"]
    # Then that statement is reported
    assert slow.status is CheckStatus.WARN, slow.message
    assert any("pg_sleep" in q["query"] and q["calls"] == 2 and q["mean_ms"] >= 250 for q in slow.details["slow"])
    # And with the default threshold (1 s, 5 calls) it is not
    assert run_engine(postgres_health, pg_secret)["slow_queries"].status is CheckStatus.PASS


def test_postgres_dead_tuples_vacuum_age_bloat_and_unused_indexes(postgres: PostgresEndpoint,
                                                                  pg_secret: PostgresSecret) -> None:
    # Given a table (autovacuum off) with 75 % of its rows deleted and not yet vacuumed
    with pg_conn(postgres) as conn:
        conn.execute("DROP TABLE IF EXISTS hc_dead")
        conn.execute("CREATE TABLE hc_dead (id int, pad text) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO hc_dead SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
        conn.execute("CREATE INDEX hc_dead_id ON hc_dead (id)")
        conn.execute("DELETE FROM hc_dead WHERE id % 4 <> 0")
        conn.execute("SELECT pg_stat_force_next_flush()")
    thresholds = HealthThresholds(dead_tuple_min=1000, index_bloat_min_bytes=64 * 1024, unused_index_min_bytes=0,
                                  unused_index_warn_bytes=1)
    wait_for(lambda: run_engine(postgres_health, pg_secret, thresholds)["dead_tuples"].status is CheckStatus.WARN)

    # When checked before and after VACUUM ANALYZE
    before = run_engine(postgres_health, pg_secret, thresholds)
    with pg_conn(postgres) as conn:
        conn.execute("VACUUM ANALYZE hc_dead")
    after = run_engine(postgres_health, pg_secret, thresholds)

    # Then the dead tuples and the missing vacuum are reported before, the index's bloat after
    dead = before["dead_tuples"]
    assert dead.status is CheckStatus.WARN and dead.details["tables"][0]["table"] == "public.hc_dead"
    assert dead.details["tables"][0]["dead"] == 15000 and dead.details["metrics"]["MaxDeadTupleRatio"] == 0.75
    assert before["vacuum_age"].status is CheckStatus.WARN and "public.hc_dead" in before["vacuum_age"].message
    assert after["dead_tuples"].status is CheckStatus.PASS
    bloat = after["index_bloat"]
    assert bloat.status is CheckStatus.WARN, bloat.message
    assert bloat.details["bloated"][0]["index"] == "public.hc_dead_id"
    assert 0.6 <= bloat.details["bloated"][0]["bloat_ratio"] <= 0.8  # three quarters of its entries are gone
    unused = after["unused_indexes"]
    assert unused.status is CheckStatus.WARN and unused.details["indexes"][0]["index"] == "public.hc_dead_id"


def test_postgres_invalid_index_and_unvalidated_constraint_are_integrity_warnings(
        postgres: PostgresEndpoint, pg_secret: PostgresSecret) -> None:
    # Given a unique index whose concurrent build failed on duplicates, and a NOT VALID check
    with pg_conn(postgres) as conn:
        conn.execute("DROP TABLE IF EXISTS hc_dup")
        conn.execute("CREATE TABLE hc_dup (v int)")
        conn.execute("INSERT INTO hc_dup VALUES (1), (1), (-1)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY hc_dup_v ON hc_dup (v)")
        conn.execute("ALTER TABLE hc_dup ADD CONSTRAINT hc_dup_positive CHECK (v > 0) NOT VALID")
    try:
        results = run_engine(postgres_health, pg_secret)
    finally:
        with pg_conn(postgres) as conn:
            conn.execute("DROP TABLE hc_dup")
    assert results["invalid_indexes"].status is CheckStatus.WARN
    assert results["invalid_indexes"].details["invalid"] == [
        {"index": "public.hc_dup_v", "table": "hc_dup", "unique": True}]
    assert results["unvalidated_constraints"].status is CheckStatus.WARN
    assert "hc_dup.hc_dup_positive" in results["unvalidated_constraints"].message


def test_postgres_schema_wraparound_vector_indexes_and_replication(postgres: PostgresEndpoint,
                                                                   pg_secret: PostgresSecret) -> None:
    # Given pgvector with an HNSW index that has been scanned
    with pg_conn(postgres) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("DROP TABLE IF EXISTS hc_vec")
        conn.execute("CREATE TABLE hc_vec (id int, e vector(3))")
        conn.execute("INSERT INTO hc_vec SELECT g, ARRAY[g, g * 2, g * 3]::vector FROM generate_series(1, 200) g")
        conn.execute("CREATE INDEX hc_vec_e ON hc_vec USING hnsw (e vector_l2_ops)")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SELECT id FROM hc_vec ORDER BY e <-> '[1, 2, 3]' LIMIT 3").fetchall()
        conn.execute("SELECT pg_stat_force_next_flush()")
    schema = RequiredSchema(tables=["public.hc_vec", "hc_nope"], extensions=["vector", "postgis"])

    # When checked (wraparound with a threshold the real age is over)
    results = run_engine(postgres_health, pg_secret, HealthThresholds(wraparound_warn_age=1), schema)

    # Then
    assert results["required_tables"].status is CheckStatus.FAIL
    assert results["required_tables"].details["missing"] == ["hc_nope"]
    assert results["required_extensions"].details["missing"] == ["postgis"]
    vector = results["vector_indexes"]
    assert vector.status is CheckStatus.PASS and vector.details["indexes"][0]["method"] == "hnsw"
    assert vector.details["metrics"]["VectorIndexBytes"] > 0
    wait_for(lambda: run_engine(postgres_health, pg_secret)["vector_indexes"].details["metrics"][
        "VectorIndexScans"] >= 1)
    assert results["wraparound"].status is CheckStatus.WARN
    assert results["wraparound"].details["metrics"]["WraparoundAge"] > 1
    assert results["replication"].details["role"] == "primary"
    assert results["database_size"].details["metrics"]["DatabaseSizeBytes"] > 1_000_000


def test_a_check_blocked_past_its_tier_limit_times_out_and_the_others_still_report(
        postgres: PostgresEndpoint, pg_secret: PostgresSecret) -> None:
    # Given a session holding an exclusive lock on the pg_stat_statements view
    with pg_conn(postgres) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    locker = pg_conn(postgres, autocommit=False)
    locker.execute("LOCK TABLE public.pg_stat_statements IN ACCESS EXCLUSIVE MODE")
    try:
        # When the metrics tier runs with a 2 s limit
        started = time.monotonic()
        tier = postgres_health.tiers(pg_secret, thresholds=HealthThresholds(metrics_timeout_s=2),
                                     schema=RequiredSchema())[2]
        results = {r.name: r for r in run_tier(tier)}
        elapsed = time.monotonic() - started
    finally:
        locker.rollback()
        locker.close()
    # Then the blocked check says it timed out, within the limit, and every other check reported
    slow = results["slow_queries"]
    assert slow.status is CheckStatus.FAIL and "timed out after 2 s (metrics tier limit)" in slow.message
    assert elapsed < 2 + 1.5
    assert {n: r.status for n, r in results.items() if n != "slow_queries"} == dict.fromkeys(
        set(results) - {"slow_queries"}, CheckStatus.PASS)


# --- backups -----------------------------------------------------------------------------------


def _catalog(aws: LocalAws) -> Catalog:
    aws.client("dynamodb").create_table(
        TableName="hc-catalog", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])
    return Catalog("hc-catalog")


def _backup(catalog: Catalog, target: str, hours_ago: float, status: BackupStatus, now: datetime) -> None:
    finished = now - timedelta(hours=hours_ago)
    catalog.create(BackupRecord(target=target, backup_id=new_backup_id(finished - timedelta(minutes=5)),
                                engine=Engine.POSTGRES, method="pg_dump", status=status,
                                started_at=finished - timedelta(minutes=5), finished_at=finished))


@pytest.mark.parametrize(("records", "fresh", "verified"), [
    ([(2, BackupStatus.COMPLETED), (20, BackupStatus.VERIFIED)], CheckStatus.PASS, CheckStatus.PASS),
    ([(30, BackupStatus.COMPLETED), (60, BackupStatus.VERIFIED)], CheckStatus.WARN, CheckStatus.WARN),
    ([(1, BackupStatus.FAILED), (55, BackupStatus.VERIFIED)], CheckStatus.FAIL, CheckStatus.WARN),
    ([(1, BackupStatus.CORRUPT)], CheckStatus.FAIL, CheckStatus.FAIL),
])
def test_backup_freshness_follows_the_catalog(aws: LocalAws, records: list[tuple[float, BackupStatus]],
                                              fresh: CheckStatus, verified: CheckStatus) -> None:
    # Given catalog records of various ages (a failed or corrupt backup is not a good one)
    catalog, now = _catalog(aws), datetime.now(UTC)
    for hours, status in records:
        _backup(catalog, "pg-aged", hours, status, now)
    target = Target.model_validate({"name": "pg-aged", "engine": "postgres", "secret_name": "x"})
    # When the backup tier runs with the daily defaults (warn 26 h / fail 50 h; verified warn 50 h)
    results = {r.name: r for r in run_tier(backup_tier(target, catalog, HealthThresholds(), now))}
    # Then
    assert (results["backup_freshness"].status, results["verified_backup"].status) == (fresh, verified)


def test_health_function_reports_stale_backups_through_lambda(aws: LocalAws, deployed: Deployment) -> None:
    # Given a health function that knows the catalog, and a 30 h old backup of pg-local
    catalog = Catalog(deployed.outputs()["CatalogTable"])
    _backup(catalog, "pg-local", 30, BackupStatus.VERIFIED, datetime.now(UTC))
    name = create_function(aws, "warden-local-health-catalog", "health",
                           {"WARDEN_STAGE": STAGE, "WARDEN_CATALOG_TABLE": catalog.table})
    # When it is invoked for pg-local
    report, error = invoke(aws, name, load_event("health_scheduled"))
    # Then freshness warns (26 h < 30 h < 50 h) and the target is degraded for it
    assert error is None, report
    checks = {c["name"]: c for c in report["targets"][0]["checks"]}
    assert checks["backup_freshness"]["status"] == "warn"
    assert checks["backup_freshness"]["details"]["metrics"]["BackupAgeHours"] == pytest.approx(30, abs=0.1)
    assert checks["verified_backup"]["status"] == "pass"
    assert report["targets"][0]["status"] == "degraded"


# --- isolation and the deployed function -------------------------------------------------------


def test_a_server_that_never_answers_times_out_and_the_other_report_is_complete(
        aws: LocalAws, postgres: PostgresEndpoint, neo4j_server: Any) -> None:
    # Given two targets behind a server that accepts TCP and never answers, and a real one
    hole = Blackhole()
    try:
        hung_pg = register(aws, "pg-hung", Engine.POSTGRES, {
            "engine": "postgres", "host": "127.0.0.1", "port": hole.port, "username": "x", "password": "y",
            "sslmode": "disable"})
        hung_graph = register(aws, "graph-hung", Engine.NEO4J, {
            "engine": "neo4j", "uri": f"bolt://127.0.0.1:{hole.port}", "password": "y"})
        real = register(aws, "pg-real", Engine.POSTGRES, {
            "engine": "postgres", "host": postgres.host, "port": postgres.port, "username": postgres.username,
            "password": postgres.password, "dbname": postgres.dbname, "sslmode": "disable"})
        quick = HealthThresholds(connectivity_timeout_s=2)

        # When all three are checked together
        started = time.monotonic()
        report = check_targets(STAGE, [hung_pg, hung_graph, real],
                               thresholds={"pg-hung": quick, "graph-hung": quick})
        elapsed = time.monotonic() - started
    finally:
        hole.close()

    # Then the hung ones fail their connectivity within its limit, and the real one is complete
    by_target = {t.target: t for t in report.targets}
    for name in ("pg-hung", "graph-hung"):
        (only,) = by_target[name].checks
        assert only.name == "connectivity" and only.status is CheckStatus.FAIL, only
        assert only.duration_ms <= (2 + 1.2) * 1000
        assert by_target[name].status is HealthStatus.UNHEALTHY
    assert by_target["pg-real"].status is HealthStatus.HEALTHY, format_text(report)
    assert len(by_target["pg-real"].checks) == 2 + len(run_engine_names(postgres_health))  # + server_version
    # ... and the whole report came back within the real target's tier limits plus a little
    assert elapsed < HealthThresholds().database_tiers_s + 3
    assert elapsed < 2 + 1.5 + 5  # in practice: the hung targets' limit, the real target being quick
    assert report.status is HealthStatus.UNHEALTHY


def run_engine_names(module: Any) -> list[str]:
    return [n for tier in module.tiers(None, thresholds=HealthThresholds(), schema=RequiredSchema())
            for n in tier.check_names]


def test_deployed_health_function_runs_every_tier_and_emits_metrics_with_documented_dimensions(
        aws: LocalAws, deployed: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    # When the deployed function checks every target
    report, error = invoke(aws, deployed.function_named("health"), load_event("health_all_targets"))

    # Then both targets went through every tier; with the catalog readable the backup checks run too,
    # and since these targets were never backed up, those two fail (and only those)
    assert error is None, report
    by_target = {t["target"]: t for t in report["targets"]}
    for name, module in (("graph-local", neo4j_health), ("pg-local", postgres_health)):
        names = [c["name"] for c in by_target[name]["checks"]]
        assert names[:2 + len(run_engine_names(module))] == ["connectivity", "server_version",
                                                              *run_engine_names(module)]
        failing = {c["name"] for c in by_target[name]["checks"] if c["status"] == "fail"}
        assert failing == {"backup_freshness", "verified_backup"}, json.dumps(by_target[name], indent=1)[:4000]

    # And its EMF lines carry exactly the dimension sets docs/metrics.md documents
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    dims = {m["Name"]: tuple(d) for e in emf for block in e["_aws"]["CloudWatchMetrics"]
            for m in block["Metrics"] for d in block["Dimensions"]}
    # per target: HealthStatus and the value metrics, with Stage; no per-check status or duration
    for name in ("HealthStatus", "HeapUsedPct", "ConnectionsUsedPct"):  # BackupAgeHours: once backed up
        assert set(dims[name]) == {"Stage", "Target", "service"}, name
    # the backup tier fails here (never backed up): it sends TierStatus, with its Tier
    assert set(dims["TierStatus"]) == {"Stage", "Target", "Tier", "service"}
    assert "backup" in {e["Tier"] for e in emf if "TierStatus" in e}
    assert not {"Healthy", "CheckStatus", "CheckDuration", "WraparoundAge", "NodeCount"} & set(dims)
    assert {e["Stage"] for e in emf if "Target" in e} == {"local"}
    assert set(dims["TargetsChecked"]) == {"Stage", "service"}  # a stage's count, never two stages' mixed
    assert {e["Stage"] for e in emf if "TargetsChecked" in e} == {"local"}
    assert {e["_aws"]["CloudWatchMetrics"][0]["Namespace"] for e in emf} == {"Warden"}
    assert {e["service"] for e in emf} == {"warden"}
    points = {(p.name, p.dimensions.get("Tier")) for p in metric_points(_report(report))}
    assert ("TierStatus", "backup") in points and ("ConnectionsUsedPct", None) in points


def test_deployed_health_function_checks_only_the_targets_named_and_refuses_an_unknown_one_untouched(
        aws: LocalAws, deployed: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    from warden.stores.audit import tail

    audit_table = deployed.settings("health").audit_table
    assert audit_table

    def health_entries(target: str) -> int:
        return sum(1 for e in tail(audit_table, target) if e.operation == "health")

    # When an operator's filtered view names one of the stage's two targets
    report, error = invoke(aws, deployed.function_named("health"), {"targets": ["pg-local"], "trigger": "cli"})
    # Then only that target was checked (against the real server) and audited
    assert error is None, report
    assert [t["target"] for t in report["targets"]] == ["pg-local"]
    assert {c["name"] for c in report["targets"][0]["checks"]} >= {"connectivity", "server_version"}
    assert (health_entries("pg-local"), health_entries("graph-local")) == (1, 0)
    # And the sample event naming both checks both
    both, error = invoke(aws, deployed.function_named("health"), load_event("health_targets"))
    assert error is None and [t["target"] for t in both["targets"]] == ["graph-local", "pg-local"]
    assert (health_entries("pg-local"), health_entries("graph-local")) == (2, 1)
    capsys.readouterr()

    # When a selection names a target the stage does not have
    refused, error = invoke(aws, deployed.function_named("health"), {"targets": ["graph-local", "nope", "nix"]})
    # Then the request fails naming each unknown one, and nothing was checked, audited or sent
    assert error == "Unhandled" and refused["errorType"] == "TargetNotFound", refused
    assert "unknown targets 'nope', 'nix' in stage 'local'" in refused["errorMessage"]
    assert "graph-local" in refused["errorMessage"]  # the configured ones, to pick from
    assert (health_entries("pg-local"), health_entries("graph-local")) == (2, 1)
    assert not [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]


def _report(payload: dict[str, Any]) -> Any:
    from warden.models import HealthReport

    return HealthReport.model_validate(payload)
