"""The backup function hands long backups over to Fargate (docs/fargate.md, "Hand-over"): it starts
the stage's Task state machine with the target's task input when the runner is Fargate, and in the
same invocation when a Lambda attempt of an `auto` target runs out of time; its `abandon` action
stops the execution's task and cleans up after it. Through the deployed function, in moto; the
backups on Lambda against the real PostgreSQL 18."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from local.aws import LocalAws
from local.deploy import Deployment
from local.ecs import register_task_definition
from local.postgres import PostgresEndpoint, create_database
from local.runtime import postgres_secret
from tests.conftest import STAGE, invoke, load_event
from tests.stage_edits import configure, set_target
from warden.backup import METHODS
from warden.config.target import Target
from warden.models import BackupRecord, BackupStatus
from warden.runner import task_input
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.audit import tail
from warden.stores.catalog import new_backup_id, object_prefix

pytestmark = pytest.mark.integration

CLUSTER = "warden-local-jobs"
NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-0123456789abcdef0"], "securityGroups": ["sg-0123456789abcdef0"]}}
# Stands in for the stage's Task state machine (infra/tasks.py): the hand-over is what is tested here,
# not the task (tests/integration/test_task_runner.py runs tasks).
TASK_DEFINITION = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}


@pytest.fixture(scope="module")
def handover_db(postgres: PostgresEndpoint) -> str:
    uri = create_database(postgres, "handover_source", replace=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
    return uri


@pytest.fixture
def task_machine(aws: LocalAws) -> str:
    sfn = aws.client("stepfunctions")
    return str(sfn.create_state_machine(name="warden-local-handover-test", definition=json.dumps(TASK_DEFINITION),
                                        roleArn="arn:aws:iam::123456789012:role/warden-local-handover-test")
               ["stateMachineArn"])






@pytest.fixture
def pg_target(aws: LocalAws, deployed: Deployment, postgres: PostgresEndpoint, handover_db: str,
              local_targets: dict[str, Target]) -> Target:
    aws.client("secretsmanager").put_secret_value(
        SecretId=f"warden/{STAGE}/pg-local", SecretString=json.dumps(postgres_secret(postgres, "handover_source")))
    return local_targets["pg-local"]


def records(settings: Settings, target: str) -> list[BackupRecord]:
    return list(Stores.from_settings(settings).catalog.list(target))


def executions(aws: LocalAws, arn: str) -> list[dict[str, Any]]:
    sfn = aws.client("stepfunctions")
    return [sfn.describe_execution(executionArn=e["executionArn"])
            for e in sfn.list_executions(stateMachineArn=arn)["executions"]]


def emf_metrics(out: str) -> set[str]:
    return {m["Name"] for line in out.splitlines() if '"_aws"' in line
            for block in json.loads(line)["_aws"]["CloudWatchMetrics"] for m in block["Metrics"]}


def a_fargate_backup(settings: Settings, target: str) -> BackupRecord:
    started = datetime(2026, 11, 1, 2, tzinfo=UTC)
    return Stores.from_settings(settings).catalog.create(BackupRecord(
        target=target, backup_id=new_backup_id(started), engine="postgres", method="pg_dump",
        status=BackupStatus.COMPLETED, started_at=started, runner="fargate", duration_s=2400.0, size_bytes=10**9))


@contextmanager
def table_locked(uri: str, seconds: float) -> Iterator[None]:
    release = threading.Event()
    locked = threading.Event()

    def hold() -> None:
        with psycopg.connect(uri) as conn:
            conn.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(seconds)

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join()


def test_a_target_whose_last_backup_ran_on_fargate_is_handed_over(
        aws: LocalAws, deployed: Deployment, pg_target: Target, task_machine: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a stage with a Task state machine, and a target whose newest backup ran on Fargate
    settings = configure(aws, deployed, "backup", WARDEN_TASK_STATE_MACHINE_ARN=task_machine)
    previous = a_fargate_backup(settings, pg_target.name)
    # When the function is asked for a backup
    result, error = invoke(aws, deployed.function_named("backup"), load_event("backup_manual"))
    # Then it starts the Task state machine with the target's task input, and backs up nothing itself
    assert error is None, result
    assert result["status"] == "handed over" and result["runner"] == "fargate", result
    assert "ran on Fargate" in result["reason"]
    (execution,) = executions(aws, task_machine)
    assert execution["executionArn"] == result["execution_arn"]
    assert execution["name"].startswith("pg-local-backup-")
    sent = json.loads(execution["input"])
    assert sent == task_input(pg_target, "backup", "manual", sent["command"][-1])
    assert sent["command"][-1].startswith("function:") and sent["cpu"] == "1024" and sent["timeout_s"] == 43200
    assert [r.backup_id for r in records(settings, pg_target.name)] == [previous.backup_id]
    metrics = emf_metrics(capsys.readouterr().out)
    assert "BackupHandedOver" in metrics and not {"BackupFailure", "BackupSuccess"} & metrics


def test_a_first_backup_too_big_for_the_lambda_budget_is_handed_over(
        aws: LocalAws, deployed: Deployment, pg_target: Target, task_machine: str) -> None:
    # The budget capped at 0.2 s: the database's pg_database_size at 20 MiB/s takes longer than half
    settings = configure(aws, deployed, "backup", WARDEN_TASK_STATE_MACHINE_ARN=task_machine,
                         WARDEN_LAMBDA_BUDGET_S="0.2")
    result, error = invoke(aws, deployed.function_named("backup"), load_event("backup_manual"))
    assert error is None and result["status"] == "handed over", result
    assert "a first backup of about" in result["reason"], result
    assert records(settings, pg_target.name) == []


def test_an_auto_backup_out_of_time_on_lambda_continues_on_fargate_in_the_same_invocation(
        aws: LocalAws, deployed: Deployment, pg_target: Target, task_machine: str, handover_db: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a Lambda budget of 5 s (the size estimate fits it) and pg_dump held behind a lock for 8 s
    settings = configure(aws, deployed, "backup", WARDEN_TASK_STATE_MACHINE_ARN=task_machine,
                         WARDEN_LAMBDA_BUDGET_S="5")
    with table_locked(handover_db, 8):
        result, error = invoke(aws, deployed.function_named("backup"), load_event("backup_manual"))
    # Then the function answers "handed over", not an error
    assert error is None, result
    assert result["status"] == "handed over" and result["runner"] == "fargate"
    assert result["reason"].startswith("the Lambda attempt ran out of time")
    (execution,) = executions(aws, task_machine)
    assert execution["executionArn"] == result["execution_arn"]
    # and the Lambda attempt's record is FAILED with its reason and where the backup continues
    (record,) = records(settings, pg_target.name)
    assert record.status is BackupStatus.FAILED and record.runner == "lambda"
    assert record.backup_id == result["backup_id"]
    assert record.error and record.error.startswith("BackupOutOfTime: ")
    assert record.error.endswith(f"; continued on Fargate: {result['execution_arn']}")
    assert result["error"] == record.error
    metrics = emf_metrics(capsys.readouterr().out)
    assert "BackupHandedOver" in metrics and "BackupFailure" not in metrics


def test_without_a_task_state_machine_an_auto_backup_out_of_time_fails_as_before(
        aws: LocalAws, deployed: Deployment, pg_target: Target, handover_db: str) -> None:
    settings = configure(aws, deployed, "backup", WARDEN_TASK_STATE_MACHINE_ARN="", WARDEN_LAMBDA_BUDGET_S="5")
    with table_locked(handover_db, 8):
        result, error = invoke(aws, deployed.function_named("backup"), load_event("backup_manual"))
    assert error == "Unhandled" and result["errorType"] == "BackupOutOfTime", result
    (record,) = records(settings, pg_target.name)
    assert record.status is BackupStatus.FAILED and "continued on Fargate" not in (record.error or "")


def test_a_request_for_lambda_runs_on_lambda_whatever_the_history_says(
        aws: LocalAws, deployed: Deployment, pg_target: Target, task_machine: str) -> None:
    settings = configure(aws, deployed, "backup", WARDEN_TASK_STATE_MACHINE_ARN=task_machine)
    a_fargate_backup(settings, pg_target.name)
    result, error = invoke(aws, deployed.function_named("backup"), load_event("backup_manual", runner="lambda"))
    assert error is None and result["status"] == "COMPLETED" and result["runner"] == "lambda", result
    assert executions(aws, task_machine) == []


def test_a_fargate_target_on_a_stage_without_a_task_state_machine_is_a_configuration_error(
        aws: LocalAws, deployed: Deployment, pg_target: Target) -> None:
    settings = configure(aws, deployed, "backup", WARDEN_TASK_STATE_MACHINE_ARN="")
    set_target(aws, pg_target, runner="fargate")
    result, error = invoke(aws, deployed.function_named("backup"), load_event("backup_manual"))
    assert error == "Unhandled" and result["errorType"] == "ConfigError", result
    assert "has no Task state machine" in result["errorMessage"]
    assert records(settings, pg_target.name) == []


# -- abandon ------------------------------------------------------------------------------------

def a_task_running(aws: LocalAws, execution: str) -> str:
    """A task of the execution (what the Task state machine's RunTask starts; local/ecs.py runs it as a
    child process, here one that only waits)."""
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    container = {"name": "job", "image": "public.ecr.aws/lambda/python:3.12-arm64", "essential": True,
                 "entryPoint": ["python3", "-c", "import time; time.sleep(120)"]}
    definition = register_task_definition(ecs, "warden-local-jobs", [container], cpu="1024", memory="4096")
    task = ecs.run_task(cluster=CLUSTER, taskDefinition=definition, launchType="FARGATE",
                        group=f"warden-task:{execution}", networkConfiguration=NETWORK)["tasks"][0]
    return str(task["taskArn"])


def a_crashed_task_run(settings: Settings, target: Target, execution: str | None) -> BackupRecord:
    """What a task killed mid-export leaves: its lease, a RUNNING record and an open multipart upload."""
    stores = Stores.from_settings(settings)
    lease, _ = stores.leases.acquire(target.name, "task:local for cli:test#dead0001", "backup", 900,
                                     runner="fargate", **({"execution": execution} if execution else {}))
    started = datetime.now(UTC)
    record = stores.catalog.create(BackupRecord(
        target=target.name, backup_id=new_backup_id(started), engine=target.engine, method=METHODS[target.engine],
        status=BackupStatus.RUNNING, started_at=started, runner="fargate"))
    key = object_prefix(target.name, record.backup_id) + "data.dump"
    upload = stores.artifacts.start_upload(key)
    upload.put_part(1, b"x" * 1024)
    stores.leases.update(lease, backup_id=record.backup_id, upload_key=key, upload_id=upload.upload_id)
    return record


def abandon_event(execution: str, **error: str) -> dict[str, Any]:
    return {"action": "abandon", "target": "pg-local", "execution": execution,
            "error": error or {"Error": "States.HeartbeatTimeout", "Cause": "no heartbeat for 300 s"}}


def test_abandon_stops_the_executions_task_and_cleans_up_after_it(
        aws: LocalAws, deployed: Deployment, pg_target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a task run of execution E that stopped heartbeating mid-backup, and a task of another execution
    settings = configure(aws, deployed, "backup", WARDEN_TASK_CLUSTER=CLUSTER)
    execution = "pg-local-backup-20261124T020000-abc123"
    task = a_task_running(aws, execution)
    other = a_task_running(aws, "pg-local-backup-20261124T010000-def456")
    record = a_crashed_task_run(settings, pg_target, execution)
    # When the Task state machine's Abandon step invokes the function
    result, error = invoke(aws, deployed.function_named("backup"), abandon_event(execution))
    # Then the execution's task (only) is stopped
    assert error is None, result
    assert result["stopped_tasks"] == [task] and result["cleaned_up"] is True
    assert result["backup_id"] == record.backup_id
    tasks = aws.client("ecs").describe_tasks(cluster=CLUSTER, tasks=[task, other])["tasks"]
    assert {t["taskArn"]: t["desiredStatus"] for t in tasks} == {task: "STOPPED", other: "RUNNING"}
    # and the record is FAILED with the error, the upload aborted, the lease free, all audited
    stores = Stores.from_settings(settings)
    failed = stores.catalog.get(pg_target.name, record.backup_id)
    assert failed.status is BackupStatus.FAILED and failed.upload_id is None
    assert failed.error and "abandoned by the Task state machine" in failed.error
    assert "States.HeartbeatTimeout: no heartbeat for 300 s" in failed.error
    assert not aws.client("s3").list_multipart_uploads(Bucket=settings.bucket).get("Uploads")
    assert stores.leases.get(pg_target.name) is None
    steps = [(e.step, e.outcome) for e in tail(settings.audit_table, pg_target.name)]
    assert ("abandon", "failed") in steps and ("cleanup", "ok") in steps
    assert "BackupFailure" in emf_metrics(capsys.readouterr().out)


def test_abandon_leaves_another_executions_run_alone(aws: LocalAws, deployed: Deployment, pg_target: Target) -> None:
    settings = configure(aws, deployed, "backup", WARDEN_TASK_CLUSTER=CLUSTER)
    other = a_task_running(aws, "pg-local-backup-20261124T030000-aaaaaa")
    record = a_crashed_task_run(settings, pg_target, "pg-local-backup-20261124T030000-aaaaaa")
    result, error = invoke(aws, deployed.function_named("backup"),
                           abandon_event("pg-local-backup-20261124T020000-abc123"))
    assert error is None and result["cleaned_up"] is False and result["stopped_tasks"] == [], result
    (task,) = aws.client("ecs").describe_tasks(cluster=CLUSTER, tasks=[other])["tasks"]
    assert task["desiredStatus"] == "RUNNING"
    stores = Stores.from_settings(settings)
    assert stores.catalog.get(pg_target.name, record.backup_id).status is BackupStatus.RUNNING
    held = stores.leases.get(pg_target.name)
    assert held is not None and held.execution == "pg-local-backup-20261124T030000-aaaaaa"


def test_abandon_after_the_task_reported_its_own_failure_counts_no_second_failure(
        aws: LocalAws, deployed: Deployment, pg_target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    configure(aws, deployed, "backup", WARDEN_TASK_CLUSTER=CLUSTER)
    aws.client("ecs").create_cluster(clusterName=CLUSTER)
    result, error = invoke(aws, deployed.function_named("backup"), abandon_event(
        "pg-local-backup-20261124T020000-abc123", Error="BackupFailed", Cause="pg_dump exited with 1"))
    assert error is None and result["cleaned_up"] is False and result["counts_failure"] is False, result
    assert "BackupFailure" not in emf_metrics(capsys.readouterr().out)


def test_abandon_cleans_up_even_when_the_tasks_cannot_be_stopped(
        aws: LocalAws, deployed: Deployment, pg_target: Target) -> None:
    # Given a cluster name that does not exist (a running task would still lose its lease and stop)
    settings = configure(aws, deployed, "backup", WARDEN_TASK_CLUSTER="no-such-cluster")
    record = a_crashed_task_run(settings, pg_target, "e-2")
    result, error = invoke(aws, deployed.function_named("backup"), abandon_event("e-2"))
    assert error is None and result["cleaned_up"] is True, result
    assert "ClusterNotFoundException" in result["stop_error"]
    stores = Stores.from_settings(settings)
    assert stores.catalog.get(pg_target.name, record.backup_id).status is BackupStatus.FAILED
    assert stores.leases.get(pg_target.name) is None


@pytest.mark.parametrize(("event", "field"), [
    ({"action": "abandon", "execution": "e-1"}, "target"),
    ({"action": "abandon", "target": "pg-local"}, "execution"),
    ({"action": "abandon", "target": "pg-local", "execution": "has spaces"}, "execution"),
    ({"action": "resume", "target": "pg-local", "execution": "e-1"}, "action"),
    ({"action": "abandon", "target": "pg-local", "execution": "e-1", "error": "boom"}, "error"),
])
def test_a_bad_abandon_request_fails_before_touching_anything(
        aws: LocalAws, deployed: Deployment, pg_target: Target, event: dict[str, Any], field: str) -> None:
    settings = configure(aws, deployed, "backup", WARDEN_TASK_CLUSTER=CLUSTER)
    record = a_crashed_task_run(settings, pg_target, "e-1")
    result, error = invoke(aws, deployed.function_named("backup"), event)
    assert error == "Unhandled" and result["errorType"] == "BadRequest", result
    assert field in result["errorMessage"]
    stores = Stores.from_settings(settings)
    assert stores.catalog.get(pg_target.name, record.backup_id).status is BackupStatus.RUNNING
    assert stores.leases.get(pg_target.name) is not None
