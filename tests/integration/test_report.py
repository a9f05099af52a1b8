"""The weekly report on moto: a week of sample history (two targets backed up daily, one failed
backup, a drill with its RTO, remediation entries in the audit trail) renders with the expected
numbers, lands in S3 under reports/<stage>/<yyyy>-W<ww>.html with SSE-KMS, and its summary goes to
SNS; the deployed function does the same once.

Most tests deploy the local stage's template without the databases (the report reads only the
catalog, the audit trail, CloudWatch and the targets' configuration); the function test uses the
full `deployed` fixture."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from local.aws import LocalAws, create_function
from local.deploy import Deployment, _Resolver, deploy_template
from tests.conftest import STAGE, invoke, load_event
from warden.config.target import Engine
from warden.models import AuditEntry, BackupRecord, BackupStatus
from warden.report import render_report, report_week, run_report
from warden.settings import Settings
from warden.stores import Stores
from warden.stores import audit as audit_log
from warden.stores.catalog import Catalog

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday: the report covers 2026-W47 (16-22 November)
WEEK = report_week(NOW)
KEY = f"reports/{STAGE}/2026-W47.html"
MiB = 1024 * 1024


def settings_of(deployment: Deployment) -> Settings:
    """The environment a report function gets: catalog, audit, state, bucket, topic and key."""
    variables = [v["Properties"]["Environment"]["Variables"] for v in deployment.template["Resources"].values()
                 if v["Type"] == "AWS::Lambda::Function"]
    merged: dict[str, Any] = {}
    for env in variables:
        merged.update({k: v for k, v in env.items() if k.startswith("WARDEN_") and k != "WARDEN_PG_BIN_DIR"})
    merged["WARDEN_FUNCTION"] = "report"
    return Settings.from_env(_Resolver(deployment).value(merged))


@pytest.fixture
def stage(aws: LocalAws, local_template: dict[str, Any]) -> Deployment:
    """The local stage's resources in moto (tables, bucket, topic, target configuration), no servers."""
    return deploy_template(aws, local_template, STAGE, extra_environment={})


def sample_week(settings: Settings) -> None:
    """Daily backups of both targets for the week (pg-local's Thursday one FAILED), a drill with its
    RTO, two remediation entries and unrelated audit entries; plus records outside the week."""
    catalog = Catalog(settings.catalog_table)
    for target, engine, method in (("pg-local", Engine.POSTGRES, "pg_dump"), ("graph-local", Engine.NEO4J, "dump")):
        for day in range(-1, 8):  # the Sunday before and the Monday after are outside the week
            started = WEEK.start + timedelta(days=day, hours=2)
            failed = target == "pg-local" and day == 3
            status = BackupStatus.FAILED if failed else BackupStatus.VERIFIED if day % 2 == 0 else \
                BackupStatus.COMPLETED
            record = BackupRecord(
                target=target, backup_id=f"{started:%Y%m%dT%H%M%SZ}-{day + 1:08x}", engine=engine, method=method,
                status=status, started_at=started,
                finished_at=None if failed else started + timedelta(seconds=30 + day),
                size_bytes=None if failed else (10 + day) * MiB, duration_s=None if failed else 30.0 + day,
                verified_at=started + timedelta(hours=2) if status == BackupStatus.VERIFIED else None,
                error="pg_dump: could not connect" if failed else None)
            if target == "pg-local" and day == 4:
                record.last_drill = {"at": (WEEK.start + timedelta(days=6, hours=3)).isoformat(), "rto_s": 84.5,
                                     "execution": "arn:aws:states:local:drill-1"}
            catalog.create(record)
    for day, step, outcome in ((1, "start_backup", "ok"), (5, "cancel_long_queries", "dry-run")):
        audit_log.record(settings.audit_table, AuditEntry(
            target="pg-local", at=WEEK.start + timedelta(days=day, hours=9), operation="remediation", step=step,
            outcome=outcome, actor="function:remediate", details={"alarm": f"warden-{STAGE}-pg-local-x",
                                                                  "summary": f"{step} for the sample week"}))
    audit_log.record(settings.audit_table, AuditEntry(
        target="pg-local", at=WEEK.end + timedelta(hours=1), operation="remediation", step="after_the_week",
        outcome="ok", actor="function:remediate"))
    audit_log.record(settings.audit_table, AuditEntry(
        target="pg-local", at=WEEK.start + timedelta(days=2), operation="backup", step="finish", outcome="ok",
        actor="function:backup"))


class Balanced(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.errors.append(tag)


def section(html: str, target: str) -> str:
    start = html.index(f'id="t-{target}"')
    end = html.find('<section class="target"', start + 1)
    return html[start:end if end > 0 else None]


def test_week_of_sample_history_renders_with_the_expected_numbers(aws: LocalAws, stage: Deployment) -> None:
    # Given
    settings = settings_of(stage)
    sample_week(settings)
    # When
    html, summary = render_report(Stores.from_settings(settings), NOW)
    # Then
    parser = Balanced()
    parser.feed(html)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    pg, graph = section(html, "pg-local"), section(html, "graph-local")
    assert "6 good · 1 failed" in pg and "7 good · 0 failed" in graph
    assert "pg_dump: could not connect" in pg
    assert "16.0 MiB" in pg and "16.0 MiB" in graph  # Sunday's backup, the week's last (10 + 6 MiB)
    assert "20261122T020000Z-00000007" in pg  # last VERIFIED: Sunday's (day 6)
    assert "84 s" in pg and "20261120T020000Z-00000005" in pg  # the drill and the backup it restored
    assert "no restore drill recorded" in graph
    assert "start_backup for the sample week" in pg and "cancel_long_queries" in pg
    assert "after_the_week" not in html and "20261123T" not in html and "20261115T" not in html
    assert "No remediation actions this week." in graph
    assert "None recorded." in pg  # slow queries
    assert html.count("<svg") >= 4  # moto draws no metric images: the catalog's own graphs
    # the summary leads with what needs attention (issue 17: worst first), then the others
    assert summary.splitlines()[1].startswith("- pg-local [ATTENTION]: 7 backups (6 good, 1 failed)")
    assert summary.splitlines()[2].startswith("- graph-local [ok]: 7 backups (7 good, 0 failed)")
    assert "last drill RTO 84 s" in summary and "2 remediation action(s)" in summary


def test_report_lands_in_s3_encrypted_and_its_summary_on_sns(aws: LocalAws, stage: Deployment) -> None:
    settings = settings_of(stage)
    sample_week(settings)
    sqs, sns = aws.client("sqs"), aws.client("sns")
    queue = sqs.create_queue(QueueName="report-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=settings.topic_arn, Protocol="sqs", Endpoint=queue_arn)

    result = run_report(Stores.from_settings(settings), NOW, "cli:alice")

    assert result["key"] == KEY
    stored = aws.client("s3").get_object(Bucket=settings.bucket, Key=KEY)
    assert stored["ServerSideEncryption"] == "aws:kms" and stored["ContentType"].startswith("text/html")
    body = stored["Body"].read().decode()
    assert body.startswith("<!DOCTYPE html>") and "cli:alice" in body
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert len(messages) == 1
    notification = json.loads(messages[0]["Body"])
    assert notification["Subject"] == f"Warden {STAGE} weekly report 2026-W47"
    assert notification["Message"].startswith(result["summary"])
    assert f"s3://{settings.bucket}/{KEY}" in notification["Message"]


def test_rerun_for_the_same_week_overwrites_the_same_report(aws: LocalAws, stage: Deployment) -> None:
    settings = settings_of(stage)
    first = run_report(Stores.from_settings(settings), NOW, "cli:alice")
    second = run_report(Stores.from_settings(settings), NOW + timedelta(days=3), "cli:bob")
    assert first["key"] == second["key"] == KEY
    listed = aws.client("s3").list_objects_v2(Bucket=settings.bucket, Prefix="reports/")["Contents"]
    assert [o["Key"] for o in listed] == [KEY]


def test_scheduled_invocation_of_the_function_publishes_the_weeks_report(aws: LocalAws, deployed: Deployment,
                                                                          ) -> None:
    settings = settings_of(deployed)
    sample_week(settings)
    try:
        function = deployed.function_named("report")
    except LookupError:  # the stack does not make the report function yet: register it as it would
        env = {k: v for k, v in settings.model_dump(by_alias=True).items() if v is not None}
        function = "warden-local-report"
        create_function(aws, function, "report", env)

    payload, error = invoke(aws, function, load_event("report_scheduled"))

    assert error is None, payload
    assert payload["key"] == KEY and "pg-local [ATTENTION]" in payload["summary"]
    assert aws.client("s3").head_object(Bucket=settings.bucket, Key=KEY)["ServerSideEncryption"] == "aws:kms"
    payload, error = invoke(aws, function, load_event("report_bad_input"))
    assert error == "Unhandled" and payload["errorType"] == "BadRequest"
