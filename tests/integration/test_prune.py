"""Prune through the deployed function and the library, on moto's S3 and DynamoDB: dry-run changes
nothing, apply deletes every version in batches and only then marks EXPIRED, a part-way failure
leaves the catalog true and the next run finishes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.aws import LocalAws
from local.deploy import Deployment
from tests.conftest import invoke, load_event
from warden.config.retention import RetentionPolicy
from warden.config.target import Engine, Target
from warden.models import BackupRecord, BackupStatus
from warden.prune import run_prune
from warden.retention import decide
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.artifacts import S3Artifacts
from warden.stores.catalog import Catalog, new_backup_id, object_prefix

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


@pytest.fixture
def settings(deployed: Deployment) -> Settings:
    return deployed.settings("prune")


def history(aws: LocalAws, settings: Settings, days: int, *, objects_per_backup: int = 2,
            status: BackupStatus = BackupStatus.COMPLETED) -> list[BackupRecord]:
    """One backup a day for `days` days, ending today, with its objects in S3 (two versions of the data)."""
    catalog, s3, records = Catalog(settings.catalog_table), aws.client("s3"), []
    for age in range(days):
        started = NOW - timedelta(days=age, minutes=5)
        backup_id = new_backup_id(started)
        prefix = object_prefix("pg-local", backup_id)
        for n in range(objects_per_backup):
            s3.put_object(Bucket=settings.bucket, Key=f"{prefix}part{n}", Body=b"x" * 100)
        s3.put_object(Bucket=settings.bucket, Key=f"{prefix}part0", Body=b"y" * 100)  # a second version
        records.append(catalog.create(BackupRecord(
            target="pg-local", backup_id=backup_id, engine=Engine.POSTGRES, method="pg_dump", status=status,
            started_at=started, finished_at=started + timedelta(minutes=1), size_bytes=100 * objects_per_backup,
            data_key=f"{prefix}part0", manifest_key=f"{prefix}part1")))
    return records


def versions_under(aws: LocalAws, settings: Settings, prefix: str) -> int:
    page = aws.client("s3").list_object_versions(Bucket=settings.bucket, Prefix=prefix)
    return len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))


def test_dry_run_shows_every_decision_with_reasons_and_changes_nothing(aws: LocalAws, deployed: Deployment,
                                                                       settings: Settings) -> None:
    history(aws, settings, 40)
    before = [(r.backup_id, r.status) for r in Catalog(settings.catalog_table).list("pg-local")]
    report, error = invoke(aws, deployed.function_named("prune"), load_event("prune_dry_run"))
    assert error is None, report
    assert report["applied"] is False and report["to_delete"] > 0 and report["deleted"] == []
    assert len(report["decisions"]) == 40 and all(d["reasons"] for d in report["decisions"])
    assert any(r.startswith("kept: newest of week") for d in report["decisions"] for r in d["reasons"])
    assert [(r.backup_id, r.status) for r in Catalog(settings.catalog_table).list("pg-local")] == before


def test_scheduled_prune_deletes_every_version_then_marks_expired_and_is_idempotent(
        aws: LocalAws, deployed: Deployment, settings: Settings) -> None:
    records = history(aws, settings, 40)
    expected = {d.backup_id for d in decide(records, RetentionPolicy(), NOW) if not d.keep}
    report, error = invoke(aws, deployed.function_named("prune"), load_event("prune_scheduled"))
    assert error is None, report
    assert set(report["deleted"]) == expected and report["failed"] == {}
    assert report["bytes_freed"] == 200 * len(expected)
    catalog = Catalog(settings.catalog_table)
    for record in records:
        stored = catalog.get("pg-local", record.backup_id)
        remaining = versions_under(aws, settings, object_prefix("pg-local", record.backup_id))
        if record.backup_id in expected:
            assert stored.status is BackupStatus.EXPIRED and remaining == 0
        else:
            assert stored.status is BackupStatus.COMPLETED and remaining == 3
    again, _ = invoke(aws, deployed.function_named("prune"), load_event("prune_scheduled"))
    assert again["deleted"] == []


def test_newest_verified_backup_survives_a_harsh_policy(aws: LocalAws, settings: Settings) -> None:
    records = history(aws, settings, 10)
    catalog = Catalog(settings.catalog_table)
    oldest = catalog.save(records[-1].model_copy(update={"status": BackupStatus.VERIFIED}))
    target = Target(name="pg-local", engine=Engine.POSTGRES, secret_name="s",
                    retention=RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0,
                                              max_age_days=2, min_keep=1))
    report = run_prune(Stores.from_settings(settings), target, apply=True, actor="test")
    assert oldest.backup_id not in report.deleted
    assert catalog.get("pg-local", oldest.backup_id).status is BackupStatus.VERIFIED
    assert len(report.deleted) == 8  # all but the newest and the newest VERIFIED


class OneKeyFails:
    """The real (moto) client, except that DeleteObjects reports one key as AccessDenied."""

    def __init__(self, client: Any, key_part: str) -> None:
        self._client, self._key_part = client, key_part

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def delete_objects(self, **kwargs: Any) -> Any:
        objects = kwargs["Delete"]["Objects"]
        failing = [o for o in objects if self._key_part in o["Key"]]
        kept = [o for o in objects if self._key_part not in o["Key"]]
        response = self._client.delete_objects(Bucket=kwargs["Bucket"], Delete={"Objects": kept, "Quiet": True})
        response["Errors"] = [{"Key": o["Key"], "VersionId": o.get("VersionId"), "Code": "AccessDenied",
                               "Message": "Access Denied"} for o in failing]
        return response


def test_a_deletion_failing_part_way_leaves_the_catalog_true_and_the_next_run_finishes(
        aws: LocalAws, settings: Settings) -> None:
    records = history(aws, settings, 12)
    target = Target(name="pg-local", engine=Engine.POSTGRES, secret_name="s",
                    retention=RetentionPolicy(keep_last=3, keep_daily=0, keep_weekly=0, keep_monthly=0))
    victim = records[-1].backup_id
    stores = Stores.from_settings(settings)
    assert settings.bucket
    failing = replace(stores, artifacts=S3Artifacts(settings.bucket, kms_key_id=settings.kms_key_id,
                                                    s3=OneKeyFails(aws.client("s3"), victim)))
    first = run_prune(failing, target, apply=True, actor="test")
    assert victim in first.failed and victim not in first.deleted and len(first.deleted) == 8
    assert Catalog(settings.catalog_table).get("pg-local", victim).status is BackupStatus.COMPLETED
    second = run_prune(stores, target, apply=True, actor="test")
    assert second.deleted == [victim] and second.failed == {}
    assert versions_under(aws, settings, object_prefix("pg-local", victim)) == 0


def test_s3_calls_stay_within_deletions_per_thousand_plus_list_pages(aws: LocalAws, settings: Settings) -> None:
    records = history(aws, settings, 700, objects_per_backup=1)  # 1400 object versions
    target = Target(name="pg-local", engine=Engine.POSTGRES, secret_name="s",
                    retention=RetentionPolicy(keep_last=10, keep_daily=0, keep_weekly=0, keep_monthly=0))
    report = run_prune(Stores.from_settings(settings), target, apply=True, actor="test")
    deleted_versions = 2 * len(report.deleted)
    list_pages = -(-2 * len(records) // 1000)
    assert len(report.deleted) == 690
    assert report.s3_calls <= -(-deleted_versions // 1000) + list_pages
    print(f"prune of 690 backups ({deleted_versions} object versions): {report.s3_calls} S3 calls")
