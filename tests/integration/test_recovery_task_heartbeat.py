"""A recovery task whose restore hangs stops heartbeating (warden.task_recovery.run_step with a real
task token of moto's Step Functions, HeartbeatSeconds cut to 4 s): pg_restore waits behind another
session's lock in the staging database, the step's state times out on its heartbeat long before
its TimeoutSeconds, and Rollback — what the Recovery state machine's Catch runs then — marks the
recovery failed with that error, releases the lease and drops staging, which ends the hung restore.
Against the real PostgreSQL 18; the Recovery state machine's Catch (States.ALL → Rollback, no retry
of a timeout) is tests/infra/test_recovery_fargate_template.py's, Rollback's StopTask
tests/unit/test_recovery_runner.py's and tests/integration/test_recovery_fargate.py's."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any

import psycopg
import pytest

from local.aws import ACCOUNT, LocalAws
from local.deploy import Deployment
from local.postgres import PostgresEndpoint, create_database
from local.runtime import postgres_secret
from tests.conftest import STAGE
from warden import recovery
from warden.backup import run_backup, verify_backup
from warden.config.target import Target
from warden.stores import Stores
from warden.task_recovery import run_step

pytestmark = pytest.mark.integration

PROD = "rec_heartbeat_prod"
STAGING = f"{PROD}_warden_staging"
HEARTBEAT_S, TIMEOUT_S = 4, 120
EXECUTION = f"arn:aws:states:eu-west-1:{ACCOUNT}:execution:warden-{STAGE}-recovery:heartbeat-1"
RESTORE_WAITING = ("SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name = 'warden' "
                   "AND wait_event_type = 'Lock'")


def token_state(aws: LocalAws) -> tuple[str, str]:
    """An execution waiting on a task token as RestoreOnFargate does (HeartbeatSeconds, TimeoutSeconds,
    Catch States.ALL), the token handed out through SQS: (execution ARN, token)."""
    sqs, sfn = aws.client("sqs"), aws.client("stepfunctions")
    queue = sqs.create_queue(QueueName="restore-tokens")["QueueUrl"]
    definition = {"StartAt": "RestoreOnFargate", "States": {
        "RestoreOnFargate": {
            "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
            "HeartbeatSeconds": HEARTBEAT_S, "TimeoutSeconds": TIMEOUT_S, "ResultPath": "$.restore",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Rollback"}], "End": True},
        "Rollback": {"Type": "Pass", "End": True}}}
    machine = sfn.create_state_machine(name="restore-token", definition=json.dumps(definition),
                                       roleArn=f"arn:aws:iam::{ACCOUNT}:role/restore-token")["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue).get("Messages", []):
            return execution, json.loads(message["Body"])["token"]
        time.sleep(0.1)
    raise AssertionError("the state handed out no task token")


@pytest.fixture
def backed_up(aws: LocalAws, deployed: Deployment, postgres: PostgresEndpoint,
              local_targets: dict[str, Target]) -> str:
    """pg-local → rec_heartbeat_prod (two tables), backed up and verified; its backup id."""
    uri = create_database(postgres, PROD, replace=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE a_ledger (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO a_ledger SELECT g, md5(g::text) FROM generate_series(1, 2000) g")
        conn.execute("CREATE TABLE z_small (id int PRIMARY KEY)")
    aws.client("secretsmanager").put_secret_value(
        SecretId=f"warden/{STAGE}/pg-local", SecretString=json.dumps(postgres_secret(postgres, PROD)))
    stores = Stores.from_settings(deployed.settings("backup"))
    outcome = run_backup(stores, stores.targets.get("pg-local"), actor="test")
    assert outcome.record is not None
    verify_backup(stores, "pg-local", outcome.record.backup_id, actor="test")
    with psycopg.connect(postgres.uri(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{STAGING}" WITH (FORCE)')
    return outcome.record.backup_id


def test_a_restore_task_blocked_by_a_lock_stops_heartbeating_times_out_and_is_rolled_back(
        aws: LocalAws, deployed: Deployment, postgres: PostgresEndpoint, backed_up: str) -> None:
    # Given a recovery planned by Preflight, its restore's task state waiting on a token (heartbeat 4 s)
    settings = deployed.settings("recovery")
    stores = Stores.from_settings(settings)
    plan = recovery.preflight(stores, {"target": "pg-local", "promotion": "swap"}, EXECUTION)
    assert plan.backup_id == backed_up and plan.staging == {"kind": "database", "name": STAGING}
    plan = dataclasses.replace(plan, task={"cpu": "1024", "memory": "2048", "ephemeral_gib": 21,
                                           "heartbeat_s": HEARTBEAT_S, "timeout_s": TIMEOUT_S})
    execution, token = token_state(aws)
    # and an empty staging database where another session holds a lock on z_small (it creates the
    # table and has not committed): the restore's pg_restore waits for it, as long as it is held
    create_database(postgres, STAGING)
    locker = psycopg.connect(postgres.uri(STAGING))
    locker.execute("CREATE TABLE public.z_small (id int)")
    outcome: dict[str, Any] = {}
    task = threading.Thread(target=lambda: outcome.update(exit=run_step(
        settings.model_copy(update={"task_token": token}), plan, "restore", None)), daemon=True)
    sfn = aws.client("stepfunctions")
    try:
        # When the restore step runs as the task runs it
        started = time.monotonic()
        task.start()
        while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            assert time.monotonic() - started < 60, "the blocked restore kept its state alive (heartbeats)"
            time.sleep(0.2)
        took = time.monotonic() - started
        # Then the state timed out on its heartbeat, long before its TimeoutSeconds, the restore still blocked
        assert took < TIMEOUT_S / 3, took
        with psycopg.connect(postgres.uri(), autocommit=True) as conn:
            assert conn.execute(RESTORE_WAITING, (STAGING,)).fetchone(), "pg_restore is not the one waiting"
        assert task.is_alive()
        history = sfn.get_execution_history(executionArn=execution)["events"]
        assert "TaskTimedOut" in [e["type"] for e in history]
        error = json.loads(described["output"])["error"]
        # moto names a heartbeat timeout States.Timeout outside its ECS integration (local/ecs.py fixes that one)
        assert error["Error"] in ("States.HeartbeatTimeout", "States.Timeout"), error
        # When Rollback runs with that error, as the Recovery state machine's Catch has it do
        rolled_back = recovery.rollback(stores, plan, error)
        # Then the recovery is failed and says why, the lease is free, and staging's drop ended the restore
        state = stores.recovery_state.get("pg-local")
        assert state.status.value == "RECOVERY_FAILED" and rolled_back["status"] == "RECOVERY_FAILED"
        assert (state.error or "").startswith(f"{error['Error']}: "), state.error
        assert stores.leases.get("pg-local") is None
        task.join(30)
        assert not task.is_alive() and outcome["exit"] == 1
        with psycopg.connect(postgres.uri(), autocommit=True) as conn:
            assert not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (STAGING,)).fetchone()
    finally:
        locker.close()
        task.join(30)
