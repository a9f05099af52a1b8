"""Recovery through the synthesized Recovery state machine, run by moto's interpreter, against the
real PostgreSQL: restore → validation → approval → promotion, and rollback on any failure."""

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
from local.runtime import postgres_secret
from tests.conftest import STAGE, invoke
from warden.models import BackupStatus
from warden.recovery import answer_approval
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.catalog import Catalog
from warden.stores.leases import Leases
from warden.stores.recovery_state import StateStore
from warden_cli.main import execution_name

pytestmark = pytest.mark.integration
PROD = "rec_prod"


@pytest.fixture
def settings(deployed: Deployment) -> Settings:
    return deployed.settings("recovery")


def prod_checksum(postgres: PostgresEndpoint, dbname: str = PROD) -> tuple[int, str]:
    with psycopg.connect(postgres.uri(dbname)) as conn:
        rows = conn.execute("SELECT id::text || ':' || body FROM ledger ORDER BY id").fetchall()
    return len(rows), hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest()


@pytest.fixture
def backed_up(aws: LocalAws, deployed: Deployment, postgres: PostgresEndpoint) -> dict[str, Any]:
    """pg-local → database rec_prod with 1000 rows, backed up and verified."""
    uri = create_database(postgres, PROD, replace=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
    aws.client("secretsmanager").put_secret_value(
        SecretId=f"warden/{STAGE}/pg-local", SecretString=json.dumps(postgres_secret(postgres, PROD)))
    record, error = invoke(aws, deployed.function_named("backup"), {"target": "pg-local"})
    assert error is None, record
    verified, error = invoke(aws, deployed.function_named("verify"),
                             {"target": "pg-local", "backup_id": record["backup_id"]})
    assert error is None and verified["status"] == "VERIFIED", verified
    return verified


def write_after_backup(postgres: PostgresEndpoint) -> None:
    with psycopg.connect(postgres.uri(PROD), autocommit=True) as conn:
        conn.execute("INSERT INTO ledger SELECT g, 'after' FROM generate_series(1001, 1010) g")


def start(aws: LocalAws, deployed: Deployment, payload: dict[str, Any]) -> str:
    arn = deployed.outputs()["RecoveryStateMachine"]
    return str(aws.client("stepfunctions").start_execution(
        stateMachineArn=arn, name=execution_name(str(payload.get("target", "none"))), input=json.dumps(payload))[
        "executionArn"])


def wait(aws: LocalAws, execution: str, timeout: float = 120, until: Any = None) -> dict[str, Any]:
    sfn = aws.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING" or (until is not None and until()):
            return dict(described)
        time.sleep(0.2)
    raise TimeoutError(f"{execution} still running after {timeout} s")


def test_drill_restores_validates_and_records_rto_without_touching_production(
        aws: LocalAws, deployed: Deployment, backed_up: dict, settings: Settings, postgres: PostgresEndpoint) -> None:
    before = prod_checksum(postgres)
    result = wait(aws, start(aws, deployed, {"target": "pg-local", "backup_id": "latest", "promotion": "none"}))
    assert result["status"] == "SUCCEEDED", result
    state = StateStore(settings.state_table).get("pg-local")
    assert state.status.value == "RECOVERY_SUCCESS" and state.rto_s and state.rto_s > 0
    record = Catalog(settings.catalog_table).get("pg-local", backed_up["backup_id"])
    assert record.last_drill and record.last_drill["rto_s"] == state.rto_s
    assert prod_checksum(postgres) == before
    with psycopg.connect(postgres.uri()) as conn:  # staging cleaned up
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                            (f"{PROD}_warden_staging",)).fetchone()[0] == 0
    assert Leases(settings.state_table).get("pg-local") is None
    print(f"RTO drill (PostgreSQL, 1000 rows): {state.rto_s:.2f} s")


def test_swap_promotes_the_validated_copy_and_keeps_the_previous_database(
        aws: LocalAws, deployed: Deployment, backed_up: dict, settings: Settings, postgres: PostgresEndpoint) -> None:
    write_after_backup(postgres)
    result = wait(aws, start(aws, deployed, {"target": "pg-local", "promotion": "swap"}))
    assert result["status"] == "SUCCEEDED", result
    state = StateStore(settings.state_table).get("pg-local")
    assert state.status.value == "PROMOTED" and state.previous_database
    assert prod_checksum(postgres)[0] == 1000  # the backup's data is production now
    assert prod_checksum(postgres, state.previous_database)[0] == 1010  # the old production is kept
    print(f"RTO swap (PostgreSQL, 1000 rows): {state.rto_s:.2f} s")


def test_in_place_takes_a_safety_backup_then_restores_production(
        aws: LocalAws, deployed: Deployment, backed_up: dict, settings: Settings, postgres: PostgresEndpoint) -> None:
    write_after_backup(postgres)
    result = wait(aws, start(aws, deployed, {"target": "pg-local", "promotion": "in-place"}))
    assert result["status"] == "SUCCEEDED", result
    state = StateStore(settings.state_table).get("pg-local")
    assert state.status.value == "PROMOTED"
    assert prod_checksum(postgres)[0] == 1000
    safety = Catalog(settings.catalog_table).get("pg-local", state.safety_backup_id)
    assert safety.status is BackupStatus.VERIFIED and safety.counts["public.ledger"] == 1010
    print(f"RTO in-place (PostgreSQL, 1000 rows): {state.rto_s:.2f} s")


def test_validation_failure_rolls_back_and_production_is_byte_for_byte_unchanged(
        aws: LocalAws, deployed: Deployment, backed_up: dict, settings: Settings, postgres: PostgresEndpoint) -> None:
    # Given a manifest whose counts disagree with the data, as the backup recorded it (a manifest
    # changed afterwards is CORRUPT before any restore: tests/unit/test_backup_integrity.py)
    s3 = aws.client("s3")
    manifest = json.loads(s3.get_object(Bucket=settings.bucket, Key=backed_up["manifest_key"])["Body"].read())
    manifest["counts"]["public.ledger"] = 999
    body = json.dumps(manifest).encode()
    written = s3.put_object(Bucket=settings.bucket, Key=backed_up["manifest_key"], Body=body)
    catalog = Catalog(settings.catalog_table)
    record = catalog.get("pg-local", backed_up["backup_id"])
    catalog.save(record.model_copy(update={"manifest_sha256": hashlib.sha256(body).hexdigest(),
                                           "manifest_version_id": written.get("VersionId")}))
    before = prod_checksum(postgres)
    # When a swap recovery runs
    result = wait(aws, start(aws, deployed, {"target": "pg-local", "promotion": "swap"}))
    # Then it fails, rolled back, production as it was
    assert result["status"] == "FAILED"
    state = StateStore(settings.state_table).get("pg-local")
    assert state.status.value == "RECOVERY_FAILED" and "999" in (state.error or "")
    assert prod_checksum(postgres) == before
    assert Leases(settings.state_table).get("pg-local") is None


@pytest.mark.parametrize(("payload", "error"), [
    ({"target": "nope"}, "TargetNotFound"),
    ({"target": "pg-local", "backup_id": "20200101T000000Z-00000000"}, "RecoveryRefused"),
    ({"target": "pg-local", "promotion": "sideways"}, "RecoveryRefused"),
    ({"backup_id": "latest"}, "RecoveryRefused"),
])
def test_bad_input_fails_in_preflight_and_touches_nothing(
        aws: LocalAws, deployed: Deployment, backed_up: dict, settings: Settings, postgres: PostgresEndpoint,
        payload: dict, error: str) -> None:
    before = prod_checksum(postgres)
    result = wait(aws, start(aws, deployed, payload))
    assert result["status"] == "FAILED" and result.get("error") == error, result
    history = aws.client("stepfunctions").get_execution_history(executionArn=result["executionArn"])["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert entered == ["Preflight", "PreflightFailed"]
    assert StateStore(settings.state_table).get("pg-local").status.value == "NOT_RECOVERING"
    assert prod_checksum(postgres) == before


def test_corrupt_backup_is_refused_in_preflight(aws: LocalAws, deployed: Deployment, backed_up: dict,
                                               settings: Settings) -> None:
    catalog = Catalog(settings.catalog_table)
    record = catalog.get("pg-local", backed_up["backup_id"])
    catalog.save(record.model_copy(update={"status": BackupStatus.CORRUPT}))
    result = wait(aws, start(aws, deployed, {"target": "pg-local", "backup_id": backed_up["backup_id"]}))
    assert result["status"] == "FAILED" and result["error"] == "RecoveryRefused"
    assert "CORRUPT" in result["cause"]


def test_second_recovery_of_the_same_target_is_refused(aws: LocalAws, deployed: Deployment, backed_up: dict,
                                                       settings: Settings) -> None:
    lease, _ = Leases(settings.state_table).acquire("pg-local", "arn:other-execution", "recovery", ttl_s=600)
    result = wait(aws, start(aws, deployed, {"target": "pg-local"}))
    assert result["status"] == "FAILED" and result["error"] == "RecoveryRefused"
    assert "busy" in result["cause"]
    Leases(settings.state_table).release(lease)


def test_manual_approval_approved_promotes(aws: LocalAws, deployed: Deployment, backed_up: dict,
                                           settings: Settings, postgres: PostgresEndpoint) -> None:
    write_after_backup(postgres)
    store = StateStore(settings.state_table)
    execution = start(aws, deployed, {"target": "pg-local", "promotion": "swap", "approval": "manual"})
    waiting = wait(aws, execution, until=lambda: store.get("pg-local").status.value == "AWAITING_APPROVAL")
    assert waiting["status"] == "RUNNING"
    assert prod_checksum(postgres)[0] == 1010  # nothing promoted before the answer
    answer_approval(Stores.from_settings(settings), "pg-local", approve=True, actor="cli:test")
    result = wait(aws, execution)
    assert result["status"] == "SUCCEEDED", result
    assert prod_checksum(postgres)[0] == 1000


def test_manual_approval_rejected_rolls_back(aws: LocalAws, deployed: Deployment, backed_up: dict,
                                             settings: Settings, postgres: PostgresEndpoint) -> None:
    before = prod_checksum(postgres)
    store = StateStore(settings.state_table)
    execution = start(aws, deployed, {"target": "pg-local", "promotion": "swap", "approval": "manual"})
    wait(aws, execution, until=lambda: store.get("pg-local").status.value == "AWAITING_APPROVAL")
    answer_approval(Stores.from_settings(settings), "pg-local", approve=False, actor="cli:test", reason="not today")
    result = wait(aws, execution)
    assert result["status"] == "FAILED"
    state = store.get("pg-local")
    assert state.status.value == "RECOVERY_FAILED" and "Rejected" in (state.error or "")
    assert prod_checksum(postgres) == before


def test_cancel_rolls_back_cleans_staging_and_says_so(aws: LocalAws, deployed: Deployment, backed_up: dict,
                                                      settings: Settings, postgres: PostgresEndpoint) -> None:
    from warden.recovery import cancel

    before = prod_checksum(postgres)
    store = StateStore(settings.state_table)
    execution = start(aws, deployed, {"target": "pg-local", "promotion": "swap", "approval": "manual"})
    wait(aws, execution, until=lambda: store.get("pg-local").status.value == "AWAITING_APPROVAL")
    token = store.get("pg-local").task_token
    # When the operator cancels (`warden recovery cancel` stops the execution, then rolls back)
    state = cancel(Stores.from_settings(settings), "pg-local", actor="cli:test")
    # Then the record says so, the lease is free, staging is gone, production untouched
    assert state.status.value == "RECOVERY_FAILED" and "Cancelled" in (state.error or "")
    assert Leases(settings.state_table).get("pg-local") is None
    with psycopg.connect(postgres.uri()) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                            (f"{PROD}_warden_staging",)).fetchone()[0] == 0
    assert prod_checksum(postgres) == before
    # moto's interpreter does not abort a waiting task on StopExecution as AWS does; end it the way a
    # late answer would: the machine's own Rollback then runs a second time, harmlessly
    aws.client("stepfunctions").send_task_failure(taskToken=token, error="Cancelled", cause="cancelled")
    assert wait(aws, execution)["status"] == "FAILED"
    assert store.get("pg-local").status.value == "RECOVERY_FAILED"
    assert prod_checksum(postgres) == before
