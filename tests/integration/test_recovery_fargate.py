"""Recovery with restore and validation on Fargate, through the deployed state machines of the local
stage (which can start tasks: local/runtime.py LOCAL_FARGATE): a `runner: fargate` target's backup is
handed over by the backup function to the Task state machine, whose ECS task (a child process,
local/ecs.py) runs `python -m warden.task backup`; its recovery's Preflight plans Fargate, and the
Recovery state machine's RestoreOnFargate / ValidateOnFargate run `python -m warden.task recovery`
as ECS tasks that report with their task token. Against the real PostgreSQL 18 and Neo4j 5.26."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import psycopg
import pytest

from local.aws import LocalAws
from local.deploy import Deployment
from local.postgres import PostgresEndpoint, create_database
from local.runtime import neo4j_secret, postgres_secret
from tests.conftest import STAGE, invoke
from tests.integration.test_recovery import prod_checksum, start, wait
from tests.integration.test_recovery_neo4j import counts, write
from warden import names
from warden.config.target import Target
from warden.runner import task_sizes
from warden.settings import Settings
from warden.stores.catalog import Catalog
from warden.stores.leases import Leases
from warden.stores.recovery_state import StateStore

pytestmark = pytest.mark.integration

PROD = "rec_fargate_prod"
# A task is a Python process importing the library, then a restore: seconds each, locally.
RECOVERY_TIMEOUT_S = 300


@pytest.fixture
def settings(deployed: Deployment) -> Settings:
    return deployed.settings("recovery")


def on_fargate(aws: LocalAws, target: Target, **changes: Any) -> Target:
    """The target registered again with `runner: fargate` (its config lives in Parameter Store)."""
    changed = Target.model_validate({**target.model_dump(mode="json"), "runner": "fargate",
                                     "fargate": {"heartbeat_s": 120, "timeout_hours": 1}, **changes})
    aws.client("ssm").put_parameter(Name=names.target_parameter(STAGE, target.name),
                                    Value=changed.model_dump_json(), Type="String", Overwrite=True)
    return changed


def back_up_on_fargate(aws: LocalAws, deployed: Deployment, target: str) -> dict[str, Any]:
    """A backup through the backup function, handed over to the Task state machine, then verified."""
    handed, error = invoke(aws, deployed.function_named("backup"), {"target": target, "requested_by": "cli:test"})
    assert error is None and handed["status"] == "handed over", handed
    ran = wait(aws, handed["execution_arn"], timeout=RECOVERY_TIMEOUT_S)
    assert ran["status"] == "SUCCEEDED", ran
    made = json.loads(ran["output"])["result"]  # the task's SendTaskSuccess (the RunTask state's ResultPath)
    assert made["runner"] == "fargate" and made["status"] == "COMPLETED", made
    verified, error = invoke(aws, deployed.function_named("verify"), {"target": target,
                                                                      "backup_id": made["backup_id"]})
    assert error is None and verified["status"] == "VERIFIED", verified
    return dict(verified)


def entered(aws: LocalAws, execution: str) -> list[str]:
    history = aws.client("stepfunctions").get_execution_history(executionArn=execution, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


def execution_tasks(aws: LocalAws, deployed: Deployment, execution: str) -> list[dict[str, Any]]:
    """The ECS tasks the execution started (its group), once they have stopped."""
    ecs = aws.client("ecs")
    cluster = deployed.function_environment("recovery")[names.ENV_TASK_CLUSTER]
    group = f"warden-task:{execution.rsplit(':', 1)[-1]}"
    deadline = time.monotonic() + 30
    while True:
        arns = ecs.list_tasks(cluster=cluster)["taskArns"]
        described = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
        found = [t for t in described if t["group"] == group]
        if all(t["lastStatus"] == "STOPPED" for t in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


# -- PostgreSQL ---------------------------------------------------------------------------------

@pytest.fixture
def pg_on_fargate(aws: LocalAws, deployed: Deployment, postgres: PostgresEndpoint,
                  local_targets: dict[str, Target]) -> dict[str, Any]:
    """pg-local with `runner: fargate` → rec_fargate_prod (1000 rows), backed up by a task and verified."""
    uri = create_database(postgres, PROD, replace=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
    aws.client("secretsmanager").put_secret_value(
        SecretId=f"warden/{STAGE}/pg-local", SecretString=json.dumps(postgres_secret(postgres, PROD)))
    target = on_fargate(aws, local_targets["pg-local"])
    return {**back_up_on_fargate(aws, deployed, "pg-local"), "target_config": target}


def test_a_postgres_swap_restores_and_validates_on_fargate_and_promotes_the_copy(
        aws: LocalAws, deployed: Deployment, pg_on_fargate: dict[str, Any], settings: Settings,
        postgres: PostgresEndpoint) -> None:
    # Given production moved on after the backup
    with psycopg.connect(postgres.uri(PROD), autocommit=True) as conn:
        conn.execute("INSERT INTO ledger SELECT g, 'after' FROM generate_series(1001, 1010) g")
    # When a swap recovery runs through the deployed Recovery state machine
    execution = start(aws, deployed, {"target": "pg-local", "promotion": "swap"})
    result = wait(aws, execution, timeout=RECOVERY_TIMEOUT_S)
    # Then it succeeded, with restore and validation as ECS tasks rather than the function
    assert result["status"] == "SUCCEEDED", result
    states = entered(aws, execution)
    assert states[:4] == ["Preflight", "Runner", "RestoreOnFargate", "ValidateOnFargate"], states
    assert not {"Restore", "Validate", "Rollback"} & set(states)
    output = json.loads(result["output"])
    assert output["plan"]["runner"] == "fargate"
    assert output["plan"]["task"] == task_sizes(pg_on_fargate["target_config"], spool_bytes=pg_on_fargate["size_bytes"])
    # the tasks' results sit where the function's would: the restore's and the validation's counts
    assert output["restore"]["counts"]["public.ledger"] == 1000 and output["restore"]["seconds"] >= 0
    assert output["validation"]["counts"]["public.ledger"] == 1000
    tasks = execution_tasks(aws, deployed, execution)
    assert len(tasks) == 2 and [t["containers"][0]["exitCode"] for t in tasks] == [0, 0]
    # and the backup's data is production now, the old production kept beside it
    state = StateStore(settings.state_table).get("pg-local")
    assert state.status.value == "PROMOTED" and state.previous_database
    assert prod_checksum(postgres, PROD)[0] == 1000
    assert prod_checksum(postgres, state.previous_database)[0] == 1010
    assert Leases(settings.state_table).get("pg-local") is None
    print(f"RTO swap on Fargate (PostgreSQL, 1000 rows): {state.rto_s:.2f} s")


def test_a_restore_task_that_fails_is_caught_by_its_error_name_and_rolled_back(
        aws: LocalAws, deployed: Deployment, pg_on_fargate: dict[str, Any], settings: Settings,
        postgres: PostgresEndpoint) -> None:
    # Given a backup whose manifest counts a row the data does not have (as the backup recorded it)
    s3, catalog = aws.client("s3"), Catalog(settings.catalog_table)
    manifest = json.loads(s3.get_object(Bucket=settings.bucket, Key=pg_on_fargate["manifest_key"])["Body"].read())
    manifest["counts"]["public.ledger"] = 1001
    body = json.dumps(manifest).encode()
    written = s3.put_object(Bucket=settings.bucket, Key=pg_on_fargate["manifest_key"], Body=body)
    record = catalog.get("pg-local", pg_on_fargate["backup_id"])
    catalog.save(record.model_copy(update={"manifest_sha256": hashlib.sha256(body).hexdigest(),
                                           "manifest_version_id": written.get("VersionId")}))
    before = prod_checksum(postgres, PROD)
    # When a swap recovery runs
    execution = start(aws, deployed, {"target": "pg-local", "promotion": "swap"})
    result = wait(aws, execution, timeout=RECOVERY_TIMEOUT_S)
    # Then the restore task's RestoreFailed (its counts differ) took the Catch to Rollback, not a retry
    assert result["status"] == "FAILED", result
    states = entered(aws, execution)
    assert states == ["Preflight", "Runner", "RestoreOnFargate", "Rollback", "RecoveryFailed"], states
    assert result.get("error") == "RestoreFailed", result
    state = StateStore(settings.state_table).get("pg-local")
    assert state.status.value == "RECOVERY_FAILED"
    assert (state.error or "").startswith("RestoreFailed: restored row counts differ from the manifest"), state.error
    assert "1001" in (state.error or "")
    # and production is as it was
    assert prod_checksum(postgres, PROD) == before
    with psycopg.connect(postgres.uri()) as conn:  # staging dropped by the rollback
        staging = f"{PROD}_warden_staging"
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (staging,)).fetchone()
        assert row is not None and row[0] == 0
    assert Leases(settings.state_table).get("pg-local") is None


# -- Neo4j --------------------------------------------------------------------------------------

def test_a_neo4j_swap_restores_and_validates_on_fargate_into_the_staging_server(
        aws: LocalAws, deployed: Deployment, local_targets: dict[str, Target], settings: Settings,
        neo4j_server: Any, neo4j_staging: Any) -> None:
    # Given graph-local with `runner: fargate`: 300 :Account nodes in a chain, backed up by a task
    write(neo4j_server, "MATCH (n) DETACH DELETE n")
    write(neo4j_server, "UNWIND range(1, 300) AS i CREATE (:Account {id: i, opened: date('2020-01-01')})")
    write(neo4j_server, "MATCH (a:Account), (b:Account) WHERE b.id = a.id + 1 CREATE (a)-[:NEXT {w: a.id}]->(b)")
    write(neo4j_staging, "MATCH (n) DETACH DELETE n")
    aws.client("secretsmanager").create_secret(Name=f"warden/{STAGE}/graph-local-staging",
                                               SecretString=json.dumps(neo4j_secret(neo4j_staging)))
    on_fargate(aws, local_targets["graph-local"],  # Community: staging is a server of its own
               recovery={"staging_secret_name": f"warden/{STAGE}/graph-local-staging"})
    backed_up = back_up_on_fargate(aws, deployed, "graph-local")
    # When a swap recovery runs
    execution = start(aws, deployed, {"target": "graph-local", "promotion": "swap"})
    result = wait(aws, execution, timeout=RECOVERY_TIMEOUT_S)
    # Then restore and validation ran as tasks, the staging server holds the backup, the pointer moved
    assert result["status"] == "SUCCEEDED", result
    states = entered(aws, execution)
    assert states[:4] == ["Preflight", "Runner", "RestoreOnFargate", "ValidateOnFargate"], states
    assert not {"Restore", "Validate"} & set(states)
    output = json.loads(result["output"])
    assert output["restore"]["counts"] and output["validation"]["counts"] == backed_up["counts"]
    assert counts(neo4j_staging) == counts(neo4j_server) == (300, 299)
    pointer = aws.client("ssm").get_parameter(Name=f"/warden/{STAGE}/active/graph-local")["Parameter"]["Value"]
    assert json.loads(pointer) == {"secret_name": f"warden/{STAGE}/graph-local-staging"}
    assert StateStore(settings.state_table).get("graph-local").status.value == "PROMOTED"
