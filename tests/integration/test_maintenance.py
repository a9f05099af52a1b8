"""Maintenance against the real local PostgreSQL and Neo4j (moto for the state and audit tables):
a bloated table's dead tuples shrink, a bloated index is rebuilt smaller, a locked table is skipped
rather than waited for, a scheduled run does only what is due, every run is audited."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from local.aws import LocalAws, create_function
from local.deploy import Deployment
from local.postgres import PostgresEndpoint
from tests.conftest import invoke, load_event
from warden.config.operations import MaintenanceConfig
from warden.maintenance import run_maintenance
from warden.settings import Settings
from warden.stores import Stores
from warden.stores import audit as audit_log
from warden.stores.leases import Leases

pytestmark = pytest.mark.integration


def env_of(deployed: Deployment, job: str) -> dict[str, str]:
    return deployed.function_environment(job)


@pytest.fixture
def environment(deployed: Deployment) -> dict[str, str]:
    """The maintenance function's environment once the stack has it; until then recovery's."""
    try:
        return env_of(deployed, "maintenance")
    except StopIteration:
        return env_of(deployed, "recovery")


@pytest.fixture
def settings(environment: dict[str, str]) -> Settings:
    return Settings.from_env(environment)


@pytest.fixture
def db(postgres: PostgresEndpoint) -> Iterator[psycopg.Connection]:
    """An autocommit connection; the tables a test makes (maint_*) are dropped after it."""
    conn = psycopg.connect(postgres.uri(), autocommit=True)
    yield conn
    for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'maint\\_%'").fetchall():
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')
    conn.close()


def wait_for(probe: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Statistics reach pg_stat_* asynchronously: poll, never sleep a fixed time."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def dead_tuples(db: psycopg.Connection, table: str) -> int:
    row = db.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s", (table,)).fetchone()
    return int(row[0]) if row else 0


def bloated_table(db: psycopg.Connection, name: str, rows: int = 20_000) -> None:
    """`rows` rows, three quarters of them deleted; autovacuum off so only maintenance cleans up."""
    db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, pad text) WITH (autovacuum_enabled = false)")
    db.execute(f"INSERT INTO {name} SELECT g, repeat('x', 100) FROM generate_series(1, %s) g", (rows,))
    db.execute(f"DELETE FROM {name} WHERE id % 4 <> 0")
    wait_for(lambda: dead_tuples(db, name) >= rows * 3 // 4, f"{name}'s dead tuples in pg_stat_user_tables")


def test_vacuum_shrinks_the_dead_tuples_of_a_bloated_table_and_is_audited(
        db: psycopg.Connection, settings: Settings, local_targets: dict[str, Any]) -> None:
    # Given
    bloated_table(db, "maint_bloat")

    # When
    report = run_maintenance(Stores.from_settings(settings), local_targets["pg-local"], actor="test", tasks=["vacuum"])

    # Then
    assert report.outcome == "ok", report
    [vacuum] = report.tasks
    assert "public.maint_bloat" in vacuum.details["vacuumed"]
    assert vacuum.details["dead_tuples_before"]["public.maint_bloat"] >= 15_000
    wait_for(lambda: dead_tuples(db, "maint_bloat") < 1_000, "the dead tuples to go")
    assert settings.audit_table
    entry = audit_log.tail(settings.audit_table, "pg-local")[0]
    assert (entry.operation, entry.step, entry.outcome) == ("maintenance", "finish", "ok")
    assert entry.details["tasks"][0]["task"] == "vacuum" and entry.details["tasks"][0]["duration_s"] >= 0
    assert entry.details["duration_s"] >= entry.details["tasks"][0]["duration_s"]


def test_a_table_the_application_has_locked_is_skipped_not_waited_for(
        db: psycopg.Connection, postgres: PostgresEndpoint, settings: Settings, local_targets: dict[str, Any]) -> None:
    # Given the application holds an exclusive lock on a table with dead tuples
    bloated_table(db, "maint_locked", rows=4_000)
    app = psycopg.connect(postgres.uri(), application_name="orders-api")
    try:
        app.execute("LOCK TABLE maint_locked IN ACCESS EXCLUSIVE MODE")
        config = MaintenanceConfig(vacuum_min_dead_tuples=0, statement_timeout_s=120)

        # When
        report = run_maintenance(Stores.from_settings(settings), local_targets["pg-local"], actor="test",
                                 tasks=["vacuum", "analyze"],
                                 config=config)

        # Then both tasks finished without it (no lock wait, no error), and the lock is still the application's
        vacuum, analyze = report.tasks
        assert "public.maint_locked" in vacuum.details["skipped_locked"]
        assert "public.maint_locked" not in vacuum.details["vacuumed"]
        assert "public.maint_locked" in analyze.details["skipped_locked"]
        assert vacuum.errors == [] and analyze.errors == []
        assert app.execute("SELECT count(*) FROM maint_locked").fetchone() == (1_000,)
    finally:
        app.close()


def test_a_bloated_index_is_rebuilt_concurrently_and_smaller(db: psycopg.Connection, settings: Settings,
                                                             local_targets: dict[str, Any]) -> None:
    # Given an index whose table lost 90 % of its rows (b-tree pages are not given back by VACUUM)
    db.execute("CREATE TABLE maint_reindex (id int PRIMARY KEY, v int)")
    db.execute("INSERT INTO maint_reindex SELECT g, g FROM generate_series(1, 100000) g")
    db.execute("CREATE INDEX maint_reindex_v ON maint_reindex (v)")
    db.execute("DELETE FROM maint_reindex WHERE id % 10 <> 0")
    db.execute("VACUUM ANALYZE maint_reindex")
    config = MaintenanceConfig(reindex_min_bytes=0, reindex_min_bloat_ratio=0.5, reindex_max_per_run=50)

    # When
    report = run_maintenance(Stores.from_settings(settings), local_targets["pg-local"], actor="test", tasks=["reindex"],
                             config=config)

    # Then
    [reindex] = report.tasks
    rebuilt = {r["index"]: r for r in reindex.details["reindexed"]}
    assert "public.maint_reindex_v" in rebuilt, reindex
    assert rebuilt["public.maint_reindex_v"]["bytes_after"] < rebuilt["public.maint_reindex_v"]["bytes_before"] / 2
    assert db.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'maint_reindex_v'::regclass"
                      ).fetchone() == (True,)


def test_a_scheduled_run_does_what_is_due_and_nothing_again_until_its_interval(
        settings: Settings, local_targets: dict[str, Any]) -> None:
    target = local_targets["pg-local"]
    first = run_maintenance(Stores.from_settings(settings), target, actor="test")
    assert [t.task for t in first.tasks] == ["vacuum", "analyze", "reindex"]
    second = run_maintenance(Stores.from_settings(settings), target, actor="test")
    assert second.tasks == [] and second.outcome == "ok"


def test_never_beside_a_backup(settings: Settings, local_targets: dict[str, Any]) -> None:
    assert settings.state_table
    Leases(settings.state_table).acquire("pg-local", "function:backup#1", "backup", 600)
    report = run_maintenance(Stores.from_settings(settings), local_targets["pg-local"], actor="test", tasks=["vacuum"])
    assert report.outcome == "skipped" and "backup" in (report.skipped or "") and report.tasks == []
    assert settings.audit_table
    assert audit_log.tail(settings.audit_table, "pg-local")[0].outcome == "skipped"


def test_neo4j_reports_index_states_and_resamples_statistics(neo4j_driver: Any, settings: Settings,
                                                             local_targets: dict[str, Any]) -> None:
    neo4j_driver.execute_query("CREATE INDEX maint_person_name IF NOT EXISTS FOR (p:MaintPerson) ON (p.name)")
    neo4j_driver.execute_query("CALL db.awaitIndexes(60)")
    try:
        report = run_maintenance(Stores.from_settings(settings), local_targets["graph-local"], actor="test")
        states, resample = report.tasks
        assert (states.task, resample.task) == ("neo4j_indexes", "resample")
        assert states.details["indexes"] >= 1 and states.details["not_online_indexes"] == []
        assert report.outcome == "ok"
    finally:
        neo4j_driver.execute_query("DROP INDEX maint_person_name IF EXISTS")


def test_handler_runs_the_tasks_asked_for_and_rejects_bad_input(aws: LocalAws, environment: dict[str, str],
                                                                local_targets: dict[str, Any]) -> None:
    function = create_function(aws, "warden-local-maintenance-test", "maintenance", environment)
    payload, error = invoke(aws, function, load_event("maintenance_manual"))
    assert error is None, payload
    assert [t["task"] for t in payload["tasks"]] == ["vacuum", "analyze"] and payload["outcome"] == "ok"
    payload, error = invoke(aws, function, load_event("maintenance_bad_input"))
    assert error is not None and payload["errorType"] == "BadRequest"
