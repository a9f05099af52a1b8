"""`python -m warden.task backup` as the Fargate task runs it: a child process reaching AWS through a
moto server, with the backup function's environment (docs/fargate.md, "The task"). Against the real
PostgreSQL 18 and Neo4j 5.26: the backup completes on runner "fargate" with its object, manifest and
progress; a backup the function hands over runs through the stage's Task state machine as an ECS
task (infra/tasks.py, infra/task_bootstrap.py, local/ecs.py) and reports its backup; a lease TTL
cut to 2 s holds through a longer backup; a task killed mid-backup is cleaned up by the Abandon
action; bad arguments exit 2 and write nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.aws import REGION, LocalAws
from local.config import LocalConfig
from local.deploy import Deployment, deploy_template
from local.postgres import PostgresEndpoint, create_database
from local.runtime import neo4j_secret, postgres_secret, register_targets
from tests.conftest import STAGE, invoke
from warden.backup import run_backup
from warden.models import BackupRecord, BackupStatus
from warden.runner import task_input
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.audit import tail
from warden.stores.clients import reset_clients

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROWS = 300_000  # a dump that takes a second or two, so progress is seen while it runs


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAws]:
    """moto as a server on a free port: the task, a child process, reaches it like the test does."""
    reset_clients()
    with LocalAws(server=True) as aws:
        yield aws
    reset_clients()


@pytest.fixture(scope="module")
def task_db(postgres: PostgresEndpoint) -> str:
    uri = create_database(postgres, "task_source", replace=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, a text, b text)")
        conn.execute("INSERT INTO items SELECT g, md5(random()::text), md5(random()::text) "
                     "FROM generate_series(1, %s) g", (ROWS,))
    return uri


@pytest.fixture(scope="module")
def stage(server: LocalAws, local_template: dict[str, Any], postgres: PostgresEndpoint, neo4j_server: Any,
          task_db: str) -> Deployment:
    """The local stage deployed into the server, pg-local backing up task_source."""
    config = LocalConfig.model_validate({"stage": STAGE, "targets": [
        {"name": "graph-local", "engine": "neo4j", "local": "neo4j"},
        {"name": "pg-local", "engine": "postgres", "local": "postgres18"},
    ]})
    register_targets(server, config, {"neo4j": neo4j_secret(neo4j_server),
                                      "postgres18": postgres_secret(postgres, "task_source")})
    return deploy_template(server, local_template, STAGE)  # with its Task state machine (infra/tasks.py)


@pytest.fixture
def settings(stage: Deployment) -> Settings:
    return stage.settings("backup")


def task_environment(server: LocalAws, stage: Deployment, **extra: str) -> dict[str, str]:
    """What the task definition gives the container: the backup function's environment, AWS (here
    the moto server), and the run's own variables."""
    assert server.endpoint_url
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "AWS_", "POWERTOOLS_"))}
    return {**inherited, **stage.function_environment("backup"),
            "AWS_ENDPOINT_URL": server.endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_SERVICE_NAME": "warden", "POWERTOOLS_METRICS_NAMESPACE": "Warden",
            "POWERTOOLS_TRACE_DISABLED": "true", **extra}


def start_task(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    # Its own process group: killing it kills its pg_dump too, as a stopped container does.
    return subprocess.Popen([sys.executable, "-m", "warden.task", *args], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def finish(task: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    out, err = task.communicate(timeout=timeout)
    return task.returncode, out, err


def records(settings: Settings, target: str) -> list[BackupRecord]:
    return list(Stores.from_settings(settings).catalog.list(target))


def new_records(settings: Settings, target: str, before: set[str]) -> list[BackupRecord]:
    return [r for r in records(settings, target) if r.backup_id not in before]


def ids(settings: Settings, target: str) -> set[str]:
    return {r.backup_id for r in records(settings, target)}


def watch_progress(settings: Settings, target: str, task: subprocess.Popen[str],
                   before: set[str]) -> list[dict[str, Any]]:
    """Every distinct progress seen on the task's RUNNING record while the task runs."""
    seen: list[dict[str, Any]] = []
    while task.poll() is None:
        for record in new_records(settings, target, before):
            if record.status is BackupStatus.RUNNING and record.progress and record.progress not in seen:
                seen.append(record.progress)
        time.sleep(0.02)
    return seen


def assert_stored(server: LocalAws, settings: Settings, record: BackupRecord) -> None:
    s3 = server.client("s3")
    assert record.data_key and record.manifest_key
    assert s3.head_object(Bucket=settings.bucket, Key=record.data_key)["ContentLength"] == record.size_bytes
    manifest = json.loads(s3.get_object(Bucket=settings.bucket, Key=record.manifest_key)["Body"].read())
    assert manifest["sha256"] == record.sha256 and manifest["size_bytes"] == record.size_bytes
    assert not s3.list_multipart_uploads(Bucket=settings.bucket).get("Uploads")


def metric_dimensions(server: LocalAws, name: str, target: str) -> list[dict[str, str]]:
    metrics = server.client("cloudwatch").list_metrics(Namespace="Warden", MetricName=name)["Metrics"]
    found = [{d["Name"]: d["Value"] for d in m["Dimensions"]} for m in metrics]
    return [d for d in found if d.get("Target") == target]


@contextmanager
def table_locked(uri: str) -> Iterator[threading.Event]:
    """ACCESS EXCLUSIVE on items until the event is set (or the block ends): pg_dump waits behind it."""
    release, locked = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(uri) as conn:
            conn.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(120)

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    try:
        yield release
    finally:
        release.set()
        holder.join()


def wait_for(condition: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- a backup on the task runner ----------------------------------------------------------------

def test_a_task_backs_up_postgres_on_fargate_with_progress_object_and_manifest(
        server: LocalAws, stage: Deployment, settings: Settings, postgres: PostgresEndpoint) -> None:
    before = ids(settings, "pg-local")
    # When the task backs up pg-local, saving progress every 50 ms
    task = start_task(task_environment(server, stage, WARDEN_PROGRESS_INTERVAL_S="0.05"),
                      "backup", "--target", "pg-local", "--trigger", "schedule", "--actor", "function:test")
    seen = watch_progress(settings, "pg-local", task, before)
    code, out, err = finish(task)
    # Then it exits 0 with a COMPLETED record that ran on Fargate
    assert code == 0, err[-3000:]
    (record,) = new_records(settings, "pg-local", before)
    assert record.status is BackupStatus.COMPLETED and record.runner == "fargate", record
    assert record.counts["public.items"] == ROWS and record.trigger == "schedule"
    assert record.actor == f"task:{STAGE} for function:test"
    # and its progress was on the RUNNING record while it ran: growing bytes, a rate, a time
    assert seen, "no progress seen while the task ran"
    assert [p["bytes"] for p in seen] == sorted(p["bytes"] for p in seen)
    assert seen[0]["bytes"] < record.size_bytes and seen[-1]["bytes"] <= record.size_bytes
    assert all(p["rate_bytes_s"] > 0 and p["updated_at"] for p in seen)
    assert record.progress is not None and record.progress["bytes"] == record.size_bytes
    assert_stored(server, settings, record)
    # Metrics went through PutMetricData with the function's dimensions; logs are JSON, without the password
    assert {"Stage": STAGE, "Target": "pg-local", "service": "warden"} in metric_dimensions(
        server, "BackupSuccess", "pg-local")
    assert metric_dimensions(server, "BackupSize", "pg-local")
    # its duration in a stream of its own: the alarm near the Lambda time limit reads the function's
    assert metric_dimensions(server, "BackupDuration", "pg-local") == [
        {"Stage": STAGE, "Target": "pg-local", "service": "warden", "Runner": "fargate"}]
    logs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert "backup finished" in {entry["message"] for entry in logs}
    assert postgres.password not in out + err
    assert Stores.from_settings(settings).leases.get("pg-local") is None


def test_a_task_backs_up_neo4j_on_fargate(server: LocalAws, stage: Deployment, settings: Settings,
                                          neo4j_driver: Any) -> None:
    with neo4j_driver.session() as session:
        session.run("MATCH (n) DETACH DELETE n").consume()
        session.run("UNWIND range(1, 30000) AS i CREATE (:Item {i: i, s: 'item ' + toString(i)})").consume()
    before = ids(settings, "graph-local")
    task = start_task(task_environment(server, stage, WARDEN_PROGRESS_INTERVAL_S="0.01"),
                      "backup", "--target", "graph-local")
    code, _, err = finish(task)
    assert code == 0, err[-3000:]
    (record,) = new_records(settings, "graph-local", before)
    assert record.status is BackupStatus.COMPLETED and record.runner == "fargate" and record.counts["nodes"] == 30000
    # a final progress is kept only when progress was saved while it ran
    assert record.progress is not None and record.progress["bytes"] == record.size_bytes
    assert_stored(server, settings, record)


def test_a_backup_the_function_hands_over_runs_as_a_task_and_reports_to_its_state_machine(
        server: LocalAws, stage: Deployment, settings: Settings) -> None:
    assert settings.task_state_machine_arn and settings.task_cluster  # the local stage can start tasks
    before = ids(settings, "pg-local")
    # When the backup function is asked for a backup on Fargate
    result, error = invoke(server, stage.function_named("backup"), {"target": "pg-local", "runner": "fargate",
                                                                    "requested_by": "cli:test"})
    assert error is None and result["status"] == "handed over", result
    # Then the Task state machine runs warden.task as an ECS task, which reports its backup
    sfn = server.client("stepfunctions")
    described = wait_for(lambda: (d := sfn.describe_execution(executionArn=result["execution_arn"]))["status"]
                         != "RUNNING" and d, timeout=240, what="the task run")
    assert described["status"] == "SUCCEEDED", described
    (record,) = new_records(settings, "pg-local", before)
    assert json.loads(described["output"])["result"] == {"target": "pg-local", "backup_id": record.backup_id,
                                                         "status": "COMPLETED", "size_bytes": record.size_bytes,
                                                         "runner": "fargate"}
    assert record.status is BackupStatus.COMPLETED and record.runner == "fargate"
    assert record.actor.startswith(f"task:{STAGE} for function:") and record.actor.endswith("for cli:test")
    assert_stored(server, settings, record)
    # and the next auto backup goes to Fargate too: the catalog remembers where the target runs now
    result, error = invoke(server, stage.function_named("backup"), {"target": "pg-local"})
    assert error is None and result["status"] == "handed over" and "ran on Fargate" in result["reason"], result
    wait_for(lambda: sfn.describe_execution(executionArn=result["execution_arn"])["status"] != "RUNNING",
             timeout=240, what="the second task run")


def test_a_task_whose_export_hangs_stops_heartbeating_and_is_abandoned(
        server: LocalAws, stage: Deployment, settings: Settings, task_db: str) -> None:
    """pg_dump waits behind a lock: no bytes, no heartbeats; the state machine's HeartbeatSeconds (5 s
    here, from the input) catches it, and its Abandon step stops the task and cleans up."""
    assert settings.task_state_machine_arn
    stores = Stores.from_settings(settings)
    before = ids(settings, "pg-local")
    sfn = server.client("stepfunctions")
    with table_locked(task_db):
        run_input = {**task_input(stores.targets.get("pg-local"), "backup", "manual", "cli:test"), "heartbeat_s": 5}
        execution = sfn.start_execution(stateMachineArn=settings.task_state_machine_arn,
                                        name="pg-local-backup-hung-export", input=json.dumps(run_input))
        described = wait_for(lambda: (d := sfn.describe_execution(executionArn=execution["executionArn"]))["status"]
                             != "RUNNING" and d, timeout=240, what="the abandoned run")
    assert described["status"] == "FAILED", described
    (record,) = new_records(settings, "pg-local", before)
    assert record.status is BackupStatus.FAILED and record.runner == "fargate" and record.upload_id is None
    # the Abandon step's error, or the task's own when its SIGTERM (StopTask) came first
    assert record.error and ("States.HeartbeatTimeout" in record.error or "TaskStopped" in record.error), record
    s3 = server.client("s3")
    listed = s3.list_objects_v2(Bucket=settings.bucket, Prefix="pg-local/").get("Contents", [])
    assert not [o for o in listed if record.backup_id in o["Key"]]
    assert not s3.list_multipart_uploads(Bucket=settings.bucket).get("Uploads")
    wait_for(lambda: stores.leases.get("pg-local") is None, timeout=30, what="the lease released")
    steps = [(e.step, e.outcome) for e in tail(settings.audit_table, "pg-local")]
    assert ("abandon", "failed") in steps


# -- the lease ----------------------------------------------------------------------------------

def test_a_lease_ttl_cut_to_2_s_holds_through_a_longer_backup(
        server: LocalAws, stage: Deployment, settings: Settings, task_db: str) -> None:
    stores = Stores.from_settings(settings)
    target = stores.targets.get("pg-local")
    before = ids(settings, "pg-local")
    with table_locked(task_db) as release:  # the backup waits behind it: it takes longer than the TTL
        task = start_task(task_environment(server, stage, WARDEN_TASK_LEASE_TTL_S="2"), "backup", "--target",
                          "pg-local")
        lease = wait_for(lambda: stores.leases.get("pg-local"), what="the task's lease")
        assert lease.runner == "fargate"
        time.sleep(3.5)  # past the TTL it was taken with
        # Nobody else can take the lease mid-run
        outcome = run_backup(stores, target, actor="test:second")
        assert outcome.record is None and outcome.already_running and lease.owner in outcome.already_running
        renewed = stores.leases.get("pg-local")
        assert renewed is not None and renewed.owner == lease.owner and renewed.expires_at > time.time()
        release.set()
        code, _, err = finish(task)
    assert code == 0, err[-3000:]
    (record,) = new_records(settings, "pg-local", before)
    assert record.status is BackupStatus.COMPLETED and record.runner == "fargate"


# -- a task killed mid-backup -------------------------------------------------------------------

def test_a_task_killed_mid_backup_is_cleaned_up_by_the_abandon_action(
        server: LocalAws, stage: Deployment, settings: Settings, task_db: str) -> None:
    stores = Stores.from_settings(settings)
    execution = "pg-local-backup-20261124T020000-0badc0"
    before = ids(settings, "pg-local")
    with table_locked(task_db):
        task = start_task(task_environment(server, stage, WARDEN_TASK_EXECUTION=execution),
                          "backup", "--target", "pg-local")
        # Given the task holds the lease and has an upload open (pg_dump waits behind the lock)
        lease = wait_for(lambda: (held := stores.leases.get("pg-local")) and held.upload_id and held,
                         what="the task's upload")
        assert lease.execution == execution and lease.runner == "fargate"
        assert server.client("s3").list_multipart_uploads(Bucket=settings.bucket).get("Uploads")
        # When the task is killed (a lost container), and the Task state machine's Abandon step runs
        os.killpg(task.pid, signal.SIGKILL)
        code, _, _ = finish(task)
        assert code == -signal.SIGKILL
        result, error = invoke(server, stage.function_named("backup"), {
            "action": "abandon", "target": "pg-local", "execution": execution,
            "error": {"Error": "States.HeartbeatTimeout", "Cause": "no heartbeat"}})
    # Then the record is FAILED with the reason, nothing is stored or left uploading, the lease is free
    assert error is None and result["cleaned_up"] is True, result
    (record,) = new_records(settings, "pg-local", before)
    assert result["backup_id"] == record.backup_id
    assert record.status is BackupStatus.FAILED and record.runner == "fargate" and record.upload_id is None
    assert record.error and "abandoned by the Task state machine" in record.error
    assert "States.HeartbeatTimeout: no heartbeat" in record.error
    s3 = server.client("s3")
    listed = s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"pg-local/{record.backup_id[0:4]}/")
    assert not [o for o in listed.get("Contents", []) if record.backup_id in o["Key"]]
    assert not s3.list_multipart_uploads(Bucket=settings.bucket).get("Uploads")
    assert stores.leases.get("pg-local") is None
    steps = [(e.step, e.outcome) for e in tail(settings.audit_table, "pg-local")]
    assert ("abandon", "failed") in steps


# -- bad arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    ([], "required: job"),
    (["backup"], "--target"),
    (["backup", "--target", "Not A Target"], "target"),
    (["backup", "--target", "no-such-target"], "unknown target 'no-such-target'"),
    (["backup", "--target", "pg-local", "--trigger", "sometimes"], "--trigger"),
])
def test_bad_arguments_exit_2_and_write_nothing(server: LocalAws, stage: Deployment, settings: Settings,
                                                args: list[str], message: str) -> None:
    before = {t: ids(settings, t) for t in ("pg-local", "graph-local")}
    audit_before = {t: len(tail(settings.audit_table, t, 1000)) for t in ("pg-local", "graph-local")}
    objects_before = server.client("s3").list_objects_v2(Bucket=settings.bucket).get("KeyCount", 0)
    code, out, err = finish(start_task(task_environment(server, stage), *args), timeout=60)
    assert code == 2, (out, err)
    assert message in err
    assert {t: ids(settings, t) for t in before} == before
    assert {t: len(tail(settings.audit_table, t, 1000)) for t in audit_before} == audit_before
    assert server.client("s3").list_objects_v2(Bucket=settings.bucket).get("KeyCount", 0) == objects_before
