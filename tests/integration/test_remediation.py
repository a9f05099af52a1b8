"""Remediation against the real local PostgreSQL and Neo4j, moto for DynamoDB / SNS / S3: a long
query or transaction is ended only when enabled, only past the limit, never Warden's own, never twice
within the rate limit, never under another run's lease; dry-run changes nothing; everything is
audited and announced."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from neo4j.exceptions import DriverError, Neo4jError

from local.aws import LocalAws, create_function
from local.deploy import Deployment
from local.postgres import PostgresEndpoint
from tests.conftest import invoke, load_event
from warden.config.operations import ActionConfig, RemediationConfig
from warden.models import BackupStatus
from warden.remediation import remediate
from warden.settings import Settings
from warden.stores import Stores
from warden.stores import audit as audit_log
from warden.stores.catalog import Catalog
from warden.stores.leases import Leases

pytestmark = pytest.mark.integration
ON = ActionConfig(enabled=True)


def env_of(deployed: Deployment, job: str) -> dict[str, str]:
    return deployed.function_environment(job)


@pytest.fixture
def environment(deployed: Deployment) -> dict[str, str]:
    """The remediate function's environment once the stack has it; until then recovery's (which has
    every table, the bucket and the topic)."""
    try:
        return env_of(deployed, "remediate")
    except StopIteration:
        return env_of(deployed, "recovery")


@pytest.fixture
def settings(environment: dict[str, str]) -> Settings:
    return Settings.from_env(environment)


@pytest.fixture
def announcements(aws: LocalAws, settings: Settings) -> Callable[[], list[dict[str, Any]]]:
    """What reached the stage's topic (through an SQS subscription)."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="announcements")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.client("sns").subscribe(TopicArn=settings.topic_arn, Protocol="sqs", Endpoint=arn)

    def read() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [{"subject": json.loads(m["Body"]).get("Subject"), **json.loads(json.loads(m["Body"])["Message"])}
                for m in messages]
    return read


class Sleeper:
    """A query of another application (or Warden's own) sleeping on its own connection, in a thread."""

    def __init__(self, pg: PostgresEndpoint, application: str, seconds: float = 120) -> None:
        self.conn = psycopg.connect(pg.uri(), application_name=application, autocommit=True)
        self.pid = self.conn.info.backend_pid
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(seconds,), daemon=True)
        self.thread.start()

    def _run(self, seconds: float) -> None:
        try:
            self.conn.execute("SELECT pg_sleep(%s)", (seconds,))
        except BaseException as err:  # the test reads it
            self.error = err

    def ended(self, timeout: float = 30) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def admin(pg: PostgresEndpoint) -> psycopg.Connection:
    return psycopg.connect(pg.uri(), autocommit=True)


def wait_until_older_than(pg: PostgresEndpoint, pids: list[int], seconds: float, column: str = "query_start") -> None:
    """Wait until every session in `pids` has been in its current state for `seconds` (no fixed sleeps)."""
    deadline = time.monotonic() + 60
    with admin(pg) as conn:
        while time.monotonic() < deadline:
            ready = conn.execute(
                f"SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) AND state <> 'idle' "
                f"AND {column} < now() - make_interval(secs => %s)", (pids, seconds)).fetchone()
            if ready and ready[0] == len(pids):
                return
            time.sleep(0.1)
    raise AssertionError(f"sessions {pids} never got {seconds} s old")


def active(pg: PostgresEndpoint, pid: int) -> bool:
    with admin(pg) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active'",
                            (pid,)).fetchone() == (1,)


@pytest.fixture
def sleepers(postgres: PostgresEndpoint) -> Iterator[Callable[[str], Sleeper]]:
    made: list[Sleeper] = []

    def make(application: str) -> Sleeper:
        made.append(Sleeper(postgres, application))
        return made[-1]
    yield make
    with admin(postgres) as conn:
        for sleeper in made:
            conn.execute("SELECT pg_terminate_backend(%s)", (sleeper.pid,))
    for sleeper in made:
        sleeper.ended(10)
        sleeper.conn.close()


def long_queries(**action: Any) -> RemediationConfig:
    return RemediationConfig(cancel_long_queries=ActionConfig(**{"enabled": True, **action}), long_query_limit_s=1.0)


def remediation_entries(settings: Settings, target: str = "pg-local") -> list[audit_log.AuditEntry]:
    assert settings.audit_table
    return [e for e in audit_log.tail(settings.audit_table, target) if e.operation == "remediation"]


def test_long_query_is_cancelled_when_enabled_past_the_limit_and_audited_and_announced(
        postgres: PostgresEndpoint, settings: Settings, sleepers: Callable[[str], Sleeper],
        announcements: Callable[[], list[dict[str, Any]]]) -> None:
    # Given an application's query past the limit, and Warden's own just as old
    app, own = sleepers("orders-api"), sleepers("warden")
    wait_until_older_than(postgres, [app.pid, own.pid], 1.0)

    # When
    result = remediate(Stores.from_settings(settings), load_event("remediate_pg_long_running_queries"), actor="test",
                       config=long_queries())

    # Then the application's query is cancelled, Warden's keeps running
    assert result.outcome == "ok", result
    assert app.ended() and isinstance(app.error, psycopg.errors.QueryCanceled)
    assert [q["pid"] for q in result.details["cancelled"]] == [app.pid]
    assert active(postgres, own.pid)
    entry = remediation_entries(settings)[0]
    assert (entry.step, entry.outcome) == ("cancel_long_queries", "ok")
    assert entry.details["alarm"] == "warden-local-pg-local-pg-long-running-queries"
    [message] = announcements()
    assert message["outcome"] == "ok" and message["summary"].startswith("cancelled 1 query")
    assert "pg-long-running-queries" in message["why"] and "cancel_long_queries ok" in message["subject"]


def test_queries_under_the_limit_are_left_alone(postgres: PostgresEndpoint, settings: Settings,
                                                sleepers: Callable[[str], Sleeper]) -> None:
    app = sleepers("orders-api")
    wait_until_older_than(postgres, [app.pid], 0.1)
    config = long_queries().model_copy(update={"long_query_limit_s": 3600.0})
    result = remediate(Stores.from_settings(settings), load_event("remediate_pg_long_running_queries"), actor="test",
                       config=config)
    assert result.outcome == "nothing-to-do" and result.details["queries"] == []
    assert active(postgres, app.pid)


def test_disabled_by_default_nothing_is_touched_but_the_decision_is_audited(
        postgres: PostgresEndpoint, settings: Settings, sleepers: Callable[[str], Sleeper]) -> None:
    app = sleepers("orders-api")
    wait_until_older_than(postgres, [app.pid], 1.0)
    result = remediate(Stores.from_settings(settings), load_event("remediate_pg_long_running_queries"), actor="test")
    assert result.outcome == "disabled"
    assert active(postgres, app.pid)
    assert [e.outcome for e in remediation_entries(settings)] == ["disabled"]


def test_dry_run_names_the_query_and_changes_nothing(postgres: PostgresEndpoint, settings: Settings,
                                                     sleepers: Callable[[str], Sleeper]) -> None:
    app = sleepers("orders-api")
    wait_until_older_than(postgres, [app.pid], 1.0)
    result = remediate(Stores.from_settings(settings), load_event("remediate_pg_long_running_queries"), actor="test",
                       config=long_queries(dry_run=True))
    assert result.outcome == "dry-run" and app.pid in [q["pid"] for q in result.details["queries"]]
    assert active(postgres, app.pid)


def test_never_twice_within_the_rate_limit(postgres: PostgresEndpoint, settings: Settings,
                                           sleepers: Callable[[str], Sleeper]) -> None:
    # Given one cancellation allowed per hour, already used
    first = sleepers("orders-api")
    wait_until_older_than(postgres, [first.pid], 1.0)
    event, config = load_event("remediate_pg_long_running_queries"), long_queries(max_per_hour=1)
    assert remediate(Stores.from_settings(settings), event, actor="test", config=config).outcome == "ok"
    assert first.ended()

    # When another long query comes within the hour
    second = sleepers("orders-api")
    wait_until_older_than(postgres, [second.pid], 1.0)
    result = remediate(Stores.from_settings(settings), event, actor="test", config=config)

    # Then it is left running, and the refusal is audited
    assert result.outcome == "rate-limited"
    assert active(postgres, second.pid)
    assert [e.outcome for e in remediation_entries(settings)] == ["rate-limited", "ok"]


def test_never_under_another_runs_lease(postgres: PostgresEndpoint, settings: Settings,
                                        sleepers: Callable[[str], Sleeper]) -> None:
    # Given a backup holds the target's lease
    assert settings.state_table
    Leases(settings.state_table).acquire("pg-local", "function:backup#1", "backup", 600)
    app = sleepers("orders-api")
    wait_until_older_than(postgres, [app.pid], 1.0)
    result = remediate(Stores.from_settings(settings), load_event("remediate_pg_long_running_queries"), actor="test",
                       config=long_queries())
    assert result.outcome == "busy" and "backup" in result.why
    assert active(postgres, app.pid)


def test_connection_saturation_ends_sessions_idle_in_transaction_past_the_limit(
        postgres: PostgresEndpoint, settings: Settings) -> None:
    # Given an application session idle in an open transaction, and Warden's own likewise
    idle = psycopg.connect(postgres.uri(), application_name="orders-api")
    own = psycopg.connect(postgres.uri(), application_name="warden")
    try:
        for conn in (idle, own):
            conn.execute("SELECT 1")  # opens the transaction, then sits idle in it
        wait_until_older_than(postgres, [idle.info.backend_pid, own.info.backend_pid], 1.0, column="state_change")
        config = RemediationConfig(end_idle_in_transaction=ON, idle_in_transaction_limit_s=1.0)

        result = remediate(Stores.from_settings(settings), load_event("remediate_pg_connections_saturated"),
                           actor="test", config=config)

        assert result.outcome == "ok", result
        assert [s["pid"] for s in result.details["ended"]] == [idle.info.backend_pid]
        with admin(postgres) as conn:  # termination is a signal: wait until the backend is gone
            wait_for_gone = time.monotonic() + 30
            while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                               (idle.info.backend_pid,)).fetchone() != (0,) and time.monotonic() < wait_for_gone:
                time.sleep(0.1)
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
        assert own.execute("SELECT 1").fetchone() == (1,)
    finally:
        idle.close()
        own.close()


def test_neo4j_long_transaction_is_terminated(neo4j_driver: Any, settings: Settings,
                                              local_targets: dict[str, Any]) -> None:
    # Given an application's transaction left open past the limit
    session = neo4j_driver.session()
    tx = session.begin_transaction()
    tx.run("RETURN 1").consume()
    try:
        deadline = time.monotonic() + 60
        config = RemediationConfig(terminate_long_transactions=ON, long_transaction_limit_s=1.0)
        event = load_event("remediate_neo4j_long_running_transactions")
        # When (retried until the transaction is old enough: no fixed sleep)
        while True:
            result = remediate(Stores.from_settings(settings), event, actor="test", config=config.model_copy(
                update={"terminate_long_transactions": ActionConfig(enabled=True, dry_run=True)}))
            if result.details.get("transactions") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert result.outcome == "dry-run" and len(result.details["transactions"]) == 1
        result = remediate(Stores.from_settings(settings), event, actor="test", config=config)

        # Then it is terminated: its next statement fails
        assert result.outcome == "ok", result
        assert len(result.details["terminated"]) == 1
        with pytest.raises((Neo4jError, DriverError)):
            tx.run("RETURN 1").consume()
    finally:
        try:
            tx.close()
        finally:
            session.close()


def test_missing_backup_starts_a_backup_under_the_remediation_lease(settings: Settings,
                                                                    local_targets: dict[str, Any]) -> None:
    assert settings.catalog_table and settings.state_table
    result = remediate(Stores.from_settings(settings), load_event("remediate_backup_too_old"), actor="test",
                       config=RemediationConfig(start_backup=ON))
    assert result.outcome == "ok", result
    record = Catalog(settings.catalog_table).get("pg-local", result.details["backup_id"])
    assert record.status is BackupStatus.COMPLETED and record.trigger == "remediation"
    assert Leases(settings.state_table).get("pg-local") is None  # released


def test_in_aws_a_missing_backup_invokes_the_backup_function(aws: LocalAws, deployed: Deployment,
                                                              settings: Settings,
                                                              local_targets: dict[str, Any]) -> None:
    assert settings.catalog_table
    backup_function = deployed.function_named("backup")
    result = remediate(Stores.from_settings(settings), load_event("remediate_backup_failed"), actor="test",
                       config=RemediationConfig(start_backup=ON), backup_function=backup_function)
    assert result.outcome == "ok", result
    assert result.details["request"] == {"target": "pg-local", "trigger": "remediation",
                                         "requested_by": "alarm:warden-local-pg-local-backup-failed"}
    # moto runs the asynchronous invocation before answering: the backup exists
    [record] = Catalog(settings.catalog_table).list("pg-local")
    assert record.trigger == "remediation" and record.status is BackupStatus.COMPLETED


def test_unhealthy_rechecks_and_reports_without_changing_anything(settings: Settings,
                                                                  local_targets: dict[str, Any]) -> None:
    result = remediate(Stores.from_settings(settings), load_event("remediate_unhealthy"), actor="test",
                       config=RemediationConfig(recheck_health=ON))
    assert result.outcome == "nothing-to-do"
    assert result.details["status"] in {"healthy", "degraded", "unhealthy"}
    assert result.summary.startswith("pg-local is ")
    # the audited re-check records the server's version (PostgreSQL 18 locally)
    (entry,) = [e for e in remediation_entries(settings) if e.step == "recheck_health"]
    assert entry.details["result"]["server_version"].startswith("18.")


def test_handler_ignores_malformed_events_and_respects_opt_in(aws: LocalAws, environment: dict[str, str],
                                                              settings: Settings) -> None:
    function = create_function(aws, "warden-local-remediate-test", "remediate", environment)
    payload, error = invoke(aws, function, load_event("remediate_bad_input"))
    assert error is None and payload["outcome"] == "ignored"
    payload, error = invoke(aws, function, load_event("remediate_pg_long_running_queries"))
    assert error is None and payload["outcome"] == "disabled", payload  # targets have no remediation yet
    assert [e.outcome for e in remediation_entries(settings)] == ["disabled"]
