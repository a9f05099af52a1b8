"""The backup, verify and restore flow through the deployed functions: catalog, audit, leases,
idempotency and fault handling, against the real PostgreSQL (and Neo4j)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from local.aws import LocalAws
from local.deploy import Deployment
from local.postgres import PostgresEndpoint, create_database
from local.runtime import postgres_secret
from tests.conftest import STAGE, invoke, load_event
from warden.backup import restore_backup
from warden.config.credentials import PostgresSecret
from warden.config.target import Engine, Target
from warden.engines.base import RestoreRefused
from warden.models import BackupRecord, BackupStatus
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.artifacts import S3MultipartSink
from warden.stores.audit import tail
from warden.stores.catalog import Catalog
from warden.stores.leases import Leases

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(deployed: Deployment) -> Settings:
    return deployed.settings("backup")


@pytest.fixture(scope="module")
def sample_db(postgres: PostgresEndpoint) -> str:
    uri = create_database(postgres, "flow_source", replace=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2))")
        conn.execute("INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 5000) g")
    return uri


@pytest.fixture
def pg_target(aws: LocalAws, deployed: Deployment, postgres: PostgresEndpoint, sample_db: str) -> Target:
    """pg-local pointed at the sample database."""
    import json

    aws.client("secretsmanager").put_secret_value(
        SecretId=f"warden/{STAGE}/pg-local", SecretString=json.dumps(postgres_secret(postgres, "flow_source")))
    return Target(name="pg-local", engine=Engine.POSTGRES, secret_name=f"warden/{STAGE}/pg-local",
                  tls={"required": False})  # the local server has no TLS


def backup(aws: LocalAws, deployed: Deployment, event: dict[str, Any]) -> tuple[Any, str | None]:
    return invoke(aws, deployed.function_named("backup"), event)


def test_backup_is_recorded_stored_audited_and_verifiable(aws: LocalAws, deployed: Deployment, pg_target: Target,
                                                          settings: Settings) -> None:
    # When the backup function runs for the target
    result, error = backup(aws, deployed, load_event("backup_manual"))
    # Then the catalog says COMPLETED with size, checksum, counts
    assert error is None, result
    record = BackupRecord.model_validate(result)
    assert record.status is BackupStatus.COMPLETED
    assert record.counts.get("public.items") == 5000
    assert record.size_bytes and record.sha256 and record.server_version.startswith("18")
    assert record.data_key.startswith(f"pg-local/{record.backup_id[:4]}/")
    # and the object and its manifest are stored, encrypted with KMS
    s3 = aws.client("s3")
    head = s3.head_object(Bucket=settings.bucket, Key=record.data_key)
    assert head["ContentLength"] == record.size_bytes and head["ServerSideEncryption"] == "aws:kms"
    s3.head_object(Bucket=settings.bucket, Key=record.manifest_key)
    # and every step is audited
    steps = [(e.operation, e.step, e.outcome) for e in tail(settings.audit_table, "pg-local")]
    assert ("backup", "start", "ok") in steps and ("backup", "finish", "ok") in steps
    # When it is verified
    verified, error = invoke(aws, deployed.function_named("verify"), load_event("verify_newest"))
    assert error is None, verified
    assert verified["status"] == "VERIFIED" and verified["backup_id"] == record.backup_id


def test_backup_restores_into_an_empty_database(aws: LocalAws, deployed: Deployment, pg_target: Target,
                                                settings: Settings, postgres: PostgresEndpoint) -> None:
    result, error = backup(aws, deployed, load_event("backup_manual"))
    assert error is None, result
    create_database(postgres, "flow_restored", replace=True)
    into = PostgresSecret.model_validate(postgres_secret(postgres, "flow_restored"))
    restored = restore_backup(Stores.from_settings(settings), pg_target, result["backup_id"], into, actor="cli:test")
    assert restored.counts["public.items"] == 5000
    with psycopg.connect(postgres.uri("flow_restored")) as conn:
        assert conn.execute("SELECT sum(price) FROM items").fetchone()[0] == sum(g * 1.5 for g in range(1, 5001))


def test_one_flipped_byte_makes_the_backup_corrupt_and_unrestorable(aws: LocalAws, deployed: Deployment,
                                                                   pg_target: Target, settings: Settings,
                                                                   postgres: PostgresEndpoint) -> None:
    result, _ = backup(aws, deployed, load_event("backup_manual"))
    s3 = aws.client("s3")
    data = bytearray(s3.get_object(Bucket=settings.bucket, Key=result["data_key"])["Body"].read())
    data[len(data) // 2] ^= 0x01
    s3.put_object(Bucket=settings.bucket, Key=result["data_key"], Body=bytes(data))
    verified, _ = invoke(aws, deployed.function_named("verify"),
                         {"target": "pg-local", "backup_id": result["backup_id"]})
    assert verified["status"] == "CORRUPT" and "sha256" in verified["error"]
    create_database(postgres, "flow_never", replace=True)
    into = PostgresSecret.model_validate(postgres_secret(postgres, "flow_never"))
    with pytest.raises(RestoreRefused, match="CORRUPT"):
        restore_backup(Stores.from_settings(settings), pg_target, result["backup_id"], into, actor="cli:test")
    with psycopg.connect(postgres.uri("flow_never")) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0


def test_a_second_trigger_while_a_backup_runs_changes_nothing(aws: LocalAws, deployed: Deployment,
                                                              pg_target: Target, settings: Settings) -> None:
    # Given another run holds the target's lease
    lease, _ = Leases(settings.state_table).acquire("pg-local", "function:other#1", "backup", ttl_s=300)
    # When the backup is triggered
    result, error = backup(aws, deployed, load_event("backup_manual"))
    # Then it says so and records nothing
    assert error is None
    assert result["status"] == "already running" and "function:other#1" in result["detail"]
    assert list(Catalog(settings.catalog_table).list("pg-local")) == []
    Leases(settings.state_table).release(lease)


def test_a_retried_scheduled_event_does_not_make_a_second_backup(aws: LocalAws, deployed: Deployment,
                                                                 pg_target: Target, settings: Settings) -> None:
    first, _ = backup(aws, deployed, load_event("backup_scheduled"))
    again, _ = backup(aws, deployed, load_event("backup_scheduled"))
    later, _ = backup(aws, deployed, load_event("backup_scheduled", scheduled_time="2026-11-24T02:00:00Z"))
    assert first["backup_id"] == again["backup_id"] != later["backup_id"]
    assert len(list(Catalog(settings.catalog_table).list("pg-local"))) == 2


def test_a_crashed_runs_lease_expires_and_its_leftovers_are_cleaned(aws: LocalAws, deployed: Deployment,
                                                                    pg_target: Target, settings: Settings) -> None:
    # Given a run that crashed: RUNNING record, an open multipart upload, a lease that expired
    from datetime import UTC, datetime

    from warden.stores.catalog import new_backup_id

    catalog, leases = Catalog(settings.catalog_table), Leases(settings.state_table)
    crashed_id = new_backup_id()
    catalog.create(BackupRecord(target="pg-local", backup_id=crashed_id, engine=Engine.POSTGRES, method="pg_dump",
                                status=BackupStatus.RUNNING, started_at=datetime.now(UTC)))
    sink = S3MultipartSink(aws.client("s3"), settings.bucket, f"pg-local/crashed/{crashed_id}/data.dump")
    sink.put_part(1, b"x" * 10)
    sink._finish_thread()
    lease, _ = leases.acquire("pg-local", "function:crashed#1", "backup", ttl_s=0.01)
    leases.update(lease, backup_id=crashed_id, upload_key=sink.key, upload_id=sink.upload_id)
    time.sleep(0.05)
    # When the next backup runs
    result, error = backup(aws, deployed, load_event("backup_manual"))
    # Then it completes, the crashed record is FAILED with the reason, and no upload is left open
    assert error is None and result["status"] == "COMPLETED"
    crashed = catalog.get("pg-local", crashed_id)
    assert crashed.status is BackupStatus.FAILED and "lease expired" in crashed.error
    assert "Uploads" not in aws.client("s3").list_multipart_uploads(Bucket=settings.bucket)


def test_a_failing_dump_leaves_a_failed_record_and_no_object(aws: LocalAws, deployed: Deployment,
                                                             postgres: PostgresEndpoint, settings: Settings) -> None:
    import json

    aws.client("secretsmanager").put_secret_value(
        SecretId=f"warden/{STAGE}/pg-local", SecretString=json.dumps(postgres_secret(postgres, "no_such_db")))
    _, error = backup(aws, deployed, load_event("backup_manual"))
    assert error == "Unhandled"
    records = list(Catalog(settings.catalog_table).list("pg-local"))
    assert [r.status for r in records] == [BackupStatus.FAILED]
    assert "no_such_db" in records[0].error
    s3 = aws.client("s3")
    assert "Contents" not in s3.list_objects_v2(Bucket=settings.bucket, Prefix="pg-local/")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=settings.bucket)
    assert ("backup", "fail", "failed") in [(e.operation, e.step, e.outcome)
                                            for e in tail(settings.audit_table, "pg-local")]


def test_bad_backup_input_fails_before_touching_anything(aws: LocalAws, deployed: Deployment,
                                                        settings: Settings) -> None:
    result, error = backup(aws, deployed, load_event("backup_bad_input"))
    assert error == "Unhandled" and result["errorType"] == "BadRequest"
    assert list(Catalog(settings.catalog_table).list("pg-local")) == []
