"""Maintenance on ECS Fargate (docs/fargate.md, "Maintenance on Fargate"), through the deployed local
stage (which can start tasks: local/runtime.py LOCAL_FARGATE): the maintenance function hands a
`runner: fargate` target's run — or an `auto` target's whose last runs took more than half its
budget — over to the Task state machine, whose ECS task (a child process, local/ecs.py) runs
`python -m warden.task maintenance` against the real PostgreSQL 18 and Neo4j 5.26; its lease holds
through a long statement and a lost lease cancels the statement; a failed or killed maintenance
task is abandoned through the backup function's abandon action, which frees the lease and touches
no backup record; bad `--tasks` exit 2 and touch nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local._proc import free_port
from local.aws import REGION, LocalAws
from local.deploy import Deployment
from local.postgres import PostgresEndpoint, create_database
from local.runtime import postgres_secret
from tests.conftest import STAGE, invoke, load_event
from tests.stage_edits import configure, set_target
from warden.config.target import Target
from warden.maintenance import history
from warden.runner import task_input
from warden.settings import Settings
from warden.stores.audit import tail
from warden.stores.catalog import Catalog
from warden.stores.leases import Leases

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DB = "maint_fargate"
TABLE = "maint_fargate_bloat"
RUN_TIMEOUT_S = 240  # a task is a Python process importing the library, then a few statements


@pytest.fixture
def settings(deployed: Deployment) -> Settings:
    return deployed.settings("maintenance")


@pytest.fixture
def bloated(aws: LocalAws, deployed: Deployment, postgres: PostgresEndpoint) -> str:
    """pg-local → maint_fargate, with a table of 20 000 rows, three quarters deleted, autovacuum off
    (so only maintenance vacuums or analyzes it); its URI."""
    uri = create_database(postgres, DB, replace=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, pad text) WITH (autovacuum_enabled = false)")
        conn.execute(f"INSERT INTO {TABLE} SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g")
        conn.execute(f"DELETE FROM {TABLE} WHERE id % 4 <> 0")
    wait_for(lambda: dead_tuples(uri) >= 15_000, "the dead tuples in pg_stat_user_tables")
    point_secret(aws, postgres_secret(postgres, DB))
    return uri


def point_secret(aws: LocalAws, secret: dict[str, Any]) -> None:
    aws.client("secretsmanager").put_secret_value(SecretId=f"warden/{STAGE}/pg-local", SecretString=json.dumps(secret))






def dead_tuples(uri: str) -> int:
    with psycopg.connect(uri) as conn:
        row = conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s", (TABLE,)).fetchone()
    return int(row[0]) if row else 0


def maintained_at(uri: str) -> tuple[datetime | None, datetime | None]:
    """pg_stat_user_tables' last_vacuum and last_analyze of the table (manual runs, not autovacuum's)."""
    with psycopg.connect(uri) as conn:
        row = conn.execute("SELECT last_vacuum, last_analyze FROM pg_stat_user_tables WHERE relname = %s",
                           (TABLE,)).fetchone()
    assert row is not None
    return row[0], row[1]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def finished(aws: LocalAws, execution_arn: str, timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:
    sfn = aws.client("stepfunctions")
    return dict(wait_for(lambda: (d := sfn.describe_execution(executionArn=execution_arn))["status"] != "RUNNING"
                         and d, "the task run", timeout))


def task_of(aws: LocalAws, deployed: Deployment, execution_arn: str) -> dict[str, Any]:
    """The one ECS task the execution started (its group), once it has stopped."""
    ecs, group = aws.client("ecs"), f"warden-task:{execution_arn.rsplit(':', 1)[-1]}"
    cluster = deployed.settings("backup").task_cluster  # the function that stops them knows the cluster

    def stopped() -> dict[str, Any] | None:
        arns = ecs.list_tasks(cluster=cluster)["taskArns"]
        found = [t for t in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
                 if t["group"] == group] if arns else []
        return found[0] if len(found) == 1 and found[0]["lastStatus"] == "STOPPED" else None

    return dict(wait_for(stopped, "the execution's task to stop", 60))


def backup_records(deployed: Deployment, target: str = "pg-local") -> list[Any]:
    catalog_table = deployed.settings("backup").catalog_table  # the maintenance function has no catalog
    assert catalog_table
    return list(Catalog(catalog_table).list(target))


def audit_steps(settings: Settings, target: str = "pg-local") -> list[tuple[str, str, str]]:
    assert settings.audit_table
    return [(e.operation, e.step, e.outcome) for e in tail(settings.audit_table, target, 200)]


def metric_dimensions(aws: LocalAws, name: str) -> list[dict[str, str]]:
    listed = aws.client("cloudwatch").list_metrics(Namespace="Warden", MetricName=name)["Metrics"]
    return [{d["Name"]: d["Value"] for d in m["Dimensions"]} for m in listed]


def emf_metrics(out: str) -> set[str]:
    return {m["Name"] for line in out.splitlines() if '"_aws"' in line
            for block in json.loads(line)["_aws"]["CloudWatchMetrics"] for m in block["Metrics"]}


def record_durations(settings: Settings, target: str, **durations: float) -> None:
    """What earlier runs left in the state table: each task's last duration (and its last run, long ago)."""
    assert settings.state_table
    ddb = boto_client("dynamodb")
    for task, seconds in durations.items():
        ddb.put_item(TableName=settings.state_table, Item={
            "pk": {"S": f"maintenance#{target}"}, "sk": {"S": task}, "duration_s": {"N": str(seconds)},
            "runner": {"S": "lambda"}, "last_run": {"S": (datetime.now(UTC) - timedelta(days=30)).isoformat()}})


def boto_client(service: str) -> Any:
    from warden.stores.clients import aws_client

    return aws_client(service)


# -- runner: fargate ----------------------------------------------------------------------------

def test_a_fargate_targets_scheduled_maintenance_runs_as_a_task_and_vacuums_and_analyzes_for_real(
        aws: LocalAws, deployed: Deployment, local_targets: dict[str, Target], settings: Settings,
        bloated: str) -> None:
    # Given pg-local with `runner: fargate`, and a table with dead tuples that nobody vacuumed yet
    set_target(aws, local_targets["pg-local"], runner="fargate")
    assert maintained_at(bloated) == (None, None)
    assert settings.task_state_machine_arn  # the function knows the stage's Task state machine
    # When its schedule starts the maintenance function
    result, error = invoke(aws, deployed.function_named("maintenance"), load_event("maintenance_scheduled"))
    # Then the function hands the run over, and maintains nothing itself
    assert error is None, result
    assert result["status"] == "handed over" and result["runner"] == "fargate", result
    assert result["reason"] == "the target's runner is fargate"
    sfn = aws.client("stepfunctions")
    sent = json.loads(sfn.describe_execution(executionArn=result["execution_arn"])["input"])
    assert sent["job"] == "maintenance" and sent["command"][:3] == ["maintenance", "--target", "pg-local"]
    assert "--tasks" not in sent["command"]  # a scheduled run: the task does what is due
    assert sent["command"][sent["command"].index("--trigger") + 1] == "schedule"
    # and the Task state machine runs it as an ECS task, which reports its report
    described = finished(aws, result["execution_arn"])
    assert described["status"] == "SUCCEEDED", described
    report = json.loads(described["output"])["result"]
    assert report["runner"] == "fargate" and report["outcome"] == "ok", report
    assert [t["task"] for t in report["tasks"]] == ["vacuum", "analyze", "reindex"]
    assert f"public.{TABLE}" in report["tasks"][0]["details"]["vacuumed"]
    assert task_of(aws, deployed, result["execution_arn"])["containers"][0]["exitCode"] == 0
    # The table was vacuumed and analyzed for real
    last_vacuum, last_analyze = maintained_at(bloated)
    assert last_vacuum is not None and last_analyze is not None
    wait_for(lambda: dead_tuples(bloated) < 1_000, "the dead tuples to go")
    # audited as a run on Fargate of this execution, the lease released, the history kept
    assert ("maintenance", "finish", "ok") in audit_steps(settings)
    assert settings.audit_table
    (entry,) = [e for e in tail(settings.audit_table, "pg-local") if e.step == "finish"]
    assert entry.details["runner"] == "fargate"
    assert entry.details["execution"] == result["execution_arn"].rsplit(":", 1)[-1]
    assert entry.actor.startswith(f"task:{STAGE} for function:")
    assert settings.state_table and Leases(settings.state_table).get("pg-local") is None
    known = history(settings, local_targets["pg-local"])
    assert known.runner == "fargate" and known.finished_at is not None
    assert set(known.last_run) == set(known.duration_s) == {"vacuum", "analyze", "reindex"}
    # Metrics went through PutMetricData with the function's dimensions
    for name in ("MaintenanceDuration", "MaintenanceErrors"):
        assert {"Stage": STAGE, "Target": "pg-local", "service": "warden"} in metric_dimensions(aws, name), name


def test_a_fargate_neo4j_targets_maintenance_runs_as_a_task(
        aws: LocalAws, deployed: Deployment, local_targets: dict[str, Target], settings: Settings,
        neo4j_driver: Any) -> None:
    neo4j_driver.execute_query("CREATE INDEX maint_fargate_name IF NOT EXISTS FOR (p:MaintFargate) ON (p.name)")
    neo4j_driver.execute_query("CALL db.awaitIndexes(60)")
    try:
        set_target(aws, local_targets["graph-local"], runner="fargate")
        result, error = invoke(aws, deployed.function_named("maintenance"), {"target": "graph-local"})
        assert error is None and result["status"] == "handed over", result
        described = finished(aws, result["execution_arn"])
        assert described["status"] == "SUCCEEDED", described
        report = json.loads(described["output"])["result"]
        assert [t["task"] for t in report["tasks"]] == ["neo4j_indexes", "resample"] and report["outcome"] == "ok"
        assert report["tasks"][0]["details"]["indexes"] >= 1 and report["runner"] == "fargate"
        assert ("maintenance", "finish", "ok") in audit_steps(settings, "graph-local")
        assert settings.state_table and Leases(settings.state_table).get("graph-local") is None
    finally:
        neo4j_driver.execute_query("DROP INDEX maint_fargate_name IF EXISTS")


def test_runner_fargate_on_a_stage_without_a_task_state_machine_is_a_configuration_error(
        aws: LocalAws, deployed: Deployment, local_targets: dict[str, Target], settings: Settings,
        bloated: str) -> None:
    configure(aws, deployed, "maintenance", WARDEN_TASK_STATE_MACHINE_ARN="")
    set_target(aws, local_targets["pg-local"], runner="fargate")
    result, error = invoke(aws, deployed.function_named("maintenance"), load_event("maintenance_manual"))
    assert error == "Unhandled" and result["errorType"] == "ConfigError", result
    assert "has no Task state machine" in result["errorMessage"]
    assert maintained_at(bloated) == (None, None)
    assert audit_steps(settings) == []


# -- runner: auto -------------------------------------------------------------------------------

def test_an_auto_target_whose_last_runs_took_more_than_half_the_budget_goes_to_fargate_with_its_tasks(
        aws: LocalAws, deployed: Deployment, local_targets: dict[str, Target], settings: Settings,
        bloated: str) -> None:
    # Given an auto target whose last ANALYZE took 10 minutes on Lambda (of a 15 min budget)
    target = local_targets["pg-local"]
    assert target.runner == "auto"
    record_durations(settings, "pg-local", analyze=600.0, vacuum=5.0)
    # When an operator asks for an ANALYZE
    result, error = invoke(aws, deployed.function_named("maintenance"),
                           {"target": "pg-local", "tasks": ["analyze"], "trigger": "cli", "requested_by": "cli:test"})
    # Then it goes to Fargate, the task's command naming the task asked for
    assert error is None and result["status"] == "handed over", result
    assert "took 600 s, more than half the Lambda budget of 900 s" in result["reason"], result
    sent = json.loads(aws.client("stepfunctions").describe_execution(executionArn=result["execution_arn"])["input"])
    assert sent["command"][-2:] == ["--tasks", "analyze"]
    described = finished(aws, result["execution_arn"])
    assert described["status"] == "SUCCEEDED", described
    assert [t["task"] for t in json.loads(described["output"])["result"]["tasks"]] == ["analyze"]
    assert maintained_at(bloated)[1] is not None
    # and the task's run, quick, is what the next choice goes by: back on Lambda
    assert history(settings, target).duration_s["analyze"] < 60
    result, error = invoke(aws, deployed.function_named("maintenance"), {"target": "pg-local", "tasks": ["analyze"]})
    assert error is None and result.get("status") != "handed over" and result["outcome"] == "ok", result


def test_an_auto_target_whose_last_runs_were_quick_stays_on_lambda(
        aws: LocalAws, deployed: Deployment, settings: Settings, bloated: str) -> None:
    record_durations(settings, "pg-local", vacuum=20.0, analyze=30.0)
    result, error = invoke(aws, deployed.function_named("maintenance"), load_event("maintenance_manual"))
    assert error is None and result["outcome"] == "ok" and "status" not in result, result
    assert [t["task"] for t in result["tasks"]] == ["vacuum", "analyze"]
    assert aws.client("stepfunctions").list_executions(stateMachineArn=settings.task_state_machine_arn)[
        "executions"] == []
    assert history(settings, Target(name="pg-local", engine="postgres", secret_name="x")).runner == "lambda"


def test_an_auto_target_on_a_stage_without_a_task_state_machine_stays_on_lambda_whatever_its_history(
        aws: LocalAws, deployed: Deployment, settings: Settings, bloated: str) -> None:
    configure(aws, deployed, "maintenance", WARDEN_TASK_STATE_MACHINE_ARN="")
    record_durations(settings, "pg-local", vacuum=800.0, analyze=800.0)
    result, error = invoke(aws, deployed.function_named("maintenance"), load_event("maintenance_manual"))
    assert error is None and result["outcome"] == "ok", result
    assert maintained_at(bloated)[0] is not None


# -- a maintenance task that fails, or is killed ------------------------------------------------

def test_a_maintenance_task_that_fails_is_abandoned_frees_the_lease_and_touches_no_backup_record(
        aws: LocalAws, deployed: Deployment, local_targets: dict[str, Target], settings: Settings,
        postgres: PostgresEndpoint, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a fargate target whose database refuses connections
    set_target(aws, local_targets["pg-local"], runner="fargate")
    point_secret(aws, {**postgres_secret(postgres), "port": free_port()})
    # When its maintenance is handed over
    result, error = invoke(aws, deployed.function_named("maintenance"), load_event("maintenance_manual"))
    assert error is None and result["status"] == "handed over", result
    described = finished(aws, result["execution_arn"])
    # Then the task failed with the run's error, and the Task state machine abandoned it
    assert described["status"] == "FAILED" and described.get("error") == "DatabaseUnavailable", described
    # exit 1, or SIGTERM's when the Abandon step's StopTask reaches the task while it exits
    assert task_of(aws, deployed, result["execution_arn"])["containers"][0]["exitCode"] in (1, 128 + signal.SIGTERM)
    steps = audit_steps(settings)
    assert ("maintenance", "finish", "failed") in steps and ("maintenance", "abandon", "failed") in steps
    assert not [s for s in steps if s[0] == "backup"]
    assert settings.state_table and Leases(settings.state_table).get("pg-local") is None
    assert backup_records(deployed) == []
    # the task counted its own failure; the Abandon step counts none (and no BackupFailure)
    assert {"Stage": STAGE, "Target": "pg-local", "service": "warden"} in metric_dimensions(aws, "MaintenanceErrors")
    assert not {"BackupFailure", "MaintenanceErrors"} & emf_metrics(capsys.readouterr().out)


@pytest.fixture
def unanswering_database() -> Iterator[int]:
    """A port that accepts connections and never answers (a database that hangs): its number."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_a_maintenance_task_killed_mid_run_is_abandoned_its_lease_freed_and_no_backup_touched(
        aws: LocalAws, deployed: Deployment, local_targets: dict[str, Target], settings: Settings,
        postgres: PostgresEndpoint, unanswering_database: int, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a maintenance task run holding pg-local's lease (its database does not answer)
    assert settings.task_state_machine_arn and settings.state_table
    point_secret(aws, {**postgres_secret(postgres), "port": unanswering_database})
    run = {**task_input(local_targets["pg-local"], "maintenance", "manual", "cli:test", ["vacuum"]), "heartbeat_s": 20}
    sfn = aws.client("stepfunctions")
    execution = "pg-local-maintenance-killed"
    started = sfn.start_execution(stateMachineArn=settings.task_state_machine_arn, name=execution,
                                  input=json.dumps(run))
    leases = Leases(settings.state_table)
    lease = wait_for(lambda: (held := leases.get("pg-local")) and held.execution == execution and held,
                     "the task's lease", 60)
    assert lease.operation == "maintenance" and lease.runner == "fargate"
    # When its container is killed (no SIGTERM, no cleanup), and it stops heartbeating
    (running,) = [r for r in aws.tasks._running.values() if r.task.group == f"warden-task:{execution}"]
    os.killpg(running.process.pid, signal.SIGKILL)
    described = finished(aws, started["executionArn"])
    # Then the Task state machine's Abandon step freed the lease of its own run, and touched no backup
    assert described["status"] == "FAILED", described
    assert described.get("error") in ("TaskHeartbeatTimeout", "TaskTimeout"), described
    assert task_of(aws, deployed, started["executionArn"])["containers"][0]["exitCode"] == 128 + signal.SIGKILL
    assert leases.get("pg-local") is None
    assert settings.audit_table
    (abandoned,) = [e for e in tail(settings.audit_table, "pg-local") if e.step == "abandon"]
    assert abandoned.operation == "maintenance" and abandoned.details["cleaned_up"] is True
    assert abandoned.details["execution"] == execution and abandoned.backup_id is None
    assert not [s for s in audit_steps(settings) if s[0] == "backup"]
    assert backup_records(deployed) == []
    # counted as the maintenance's failure, not a backup's
    metrics = emf_metrics(capsys.readouterr().out)
    assert "MaintenanceErrors" in metrics and "BackupFailure" not in metrics


# -- the lease ----------------------------------------------------------------------------------

def task_env(aws: LocalAws, deployed: Deployment, **extra: str) -> dict[str, str]:
    """What the task definition gives the container: the backup function's environment, AWS (here the
    moto server the local ECS tasks reach), and the run's own variables."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "AWS_", "POWERTOOLS_"))}
    return {**inherited, **deployed.function_environment("backup"),
            "AWS_ENDPOINT_URL": aws.tasks.endpoint(), "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION, "POWERTOOLS_SERVICE_NAME": "warden",
            "POWERTOOLS_METRICS_NAMESPACE": "Warden", "POWERTOOLS_TRACE_DISABLED": "true", **extra}


def running_statement(uri: str, prefix: str) -> str | None:
    with psycopg.connect(uri) as conn:
        row = conn.execute("SELECT query FROM pg_stat_activity WHERE application_name = 'warden' AND state = 'active' "
                           "AND query LIKE %s", (f"{prefix}%",)).fetchone()
    return str(row[0]) if row else None


def test_a_task_renews_its_lease_through_a_long_statement_and_a_lost_lease_cancels_it(
        aws: LocalAws, deployed: Deployment, local_targets: dict[str, Target], settings: Settings,
        bloated: str) -> None:
    # Given a bloated index, and a transaction holding an old snapshot: REINDEX CONCURRENTLY waits for it
    # (the target's lock timeout raised, so the rebuild waits instead of giving up)
    set_target(aws, local_targets["pg-local"], maintenance={"reindex_min_bytes": 0, "reindex_min_bloat_ratio": 0,
                                                            "lock_timeout_s": 120})
    with psycopg.connect(bloated, autocommit=True) as conn:
        conn.execute("CREATE TABLE maint_fargate_idx (id int PRIMARY KEY, v int)")
        conn.execute("INSERT INTO maint_fargate_idx SELECT g, g FROM generate_series(1, 100000) g")
        conn.execute("CREATE INDEX maint_fargate_idx_v ON maint_fargate_idx (v)")
        conn.execute("DELETE FROM maint_fargate_idx WHERE id % 10 <> 0")
        conn.execute("VACUUM ANALYZE maint_fargate_idx")
    assert settings.state_table and settings.audit_table
    leases = Leases(settings.state_table)
    with psycopg.connect(bloated) as snapshot:
        snapshot.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot.execute("SELECT count(*) FROM pg_class").fetchone()
        # When the task rebuilds it with a lease of 2 s
        task = subprocess.Popen([sys.executable, "-m", "warden.task", "maintenance", "--target", "pg-local",
                                 "--tasks", "reindex"], env=task_env(aws, deployed, WARDEN_TASK_LEASE_TTL_S="2"),
                                cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            wait_for(lambda: running_statement(bloated, "REINDEX INDEX CONCURRENTLY"), "the REINDEX to wait", 60)
            lease = leases.get("pg-local")
            assert lease is not None and lease.operation == "maintenance" and lease.runner == "fargate"
            time.sleep(3.5)  # past the TTL it was taken with
            # Then the lease holds through the statement: renewed, nobody else can take it
            renewed = leases.get("pg-local")
            assert renewed is not None and renewed.owner == lease.owner and renewed.expires_at > time.time()
            # When the lease is lost (taken over by another run)
            leases.release(renewed)
            thief, _ = leases.acquire("pg-local", "test:another-run", "backup", 600)
            out, err = task.communicate(timeout=60)
        finally:
            if task.poll() is None:
                os.killpg(task.pid, signal.SIGKILL)
        # Then the statement in flight was cancelled (the old snapshot still holds), and the run failed
        assert task.returncode == 1, (out[-2000:], err[-2000:])
        assert running_statement(bloated, "REINDEX") is None
    assert "LeaseLost" in out
    (entry,) = [e for e in tail(settings.audit_table, "pg-local") if e.step == "finish"]
    assert entry.outcome == "failed" and entry.details["error"].startswith("LeaseLost: "), entry
    # the other run's lease is left alone, and no half-built index stays behind
    held = leases.get("pg-local")
    assert held is not None and held.owner == thief.owner
    with psycopg.connect(bloated) as conn:
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'maint_fargate_idx_v%'"
                            ).fetchone() == (1,)


# -- bad arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize(("tasks", "message"), [
    ("drop-everything", "bad MaintenanceRequest: tasks.0"),
    ("vacuum,,analyze", "--tasks: a comma-separated list of task names"),
    ("", "--tasks: a comma-separated list of task names"),
    ("resample", "postgres target pg-local has no maintenance task ['resample']"),
], ids=["unknown task", "empty name", "empty", "another engine's task"])
def test_bad_tasks_exit_2_and_touch_nothing(aws: LocalAws, deployed: Deployment, settings: Settings,
                                            bloated: str, tasks: str, message: str) -> None:
    env = task_env(aws, deployed)
    command = [sys.executable, "-m", "warden.task", "maintenance", "--target", "pg-local", "--tasks", tasks]
    done = subprocess.run(command, env=env, cwd=REPO, text=True, capture_output=True, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert audit_steps(settings) == []
    assert settings.state_table and Leases(settings.state_table).get("pg-local") is None
    assert history(settings, Target(name="pg-local", engine="postgres", secret_name="x")).last_run == {}
    assert maintained_at(bloated) == (None, None)
