"""The weekly report shows the health the stage's health runs found, in every stage: each run leaves
a compact summary per target in the audit trail, which the report reads when CloudWatch has no
HealthStatus metric (moto serves none). Through the deployed local stage and its real databases."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from local.aws import LocalAws
from local.deploy import Deployment
from tests.conftest import invoke, load_event
from warden.report import report_key, report_week
from warden.stores.audit import tail

pytestmark = pytest.mark.integration


def test_health_run_shows_in_the_weeks_report(aws: LocalAws, deployed: Deployment) -> None:
    # Given a health run of pg-local through the deployed function
    health, error = invoke(aws, deployed.function_named("health"), load_event("health_scheduled"))
    assert error is None, health
    (checked,) = health["targets"]
    # Then it leaves one compact summary in the audit trail
    settings = deployed.settings("health")
    assert settings.audit_table
    (entry,) = [e for e in tail(settings.audit_table, "pg-local") if e.operation == "health"]
    assert entry.outcome == checked["status"] and entry.details["status"] == checked["status"]
    assert set(entry.details["not_passing"]) == {c["name"] for c in checked["checks"] if c["status"] != "pass"}
    # When the report of this week is made (the run after the week ends)
    now = datetime.now(UTC)
    next_monday = report_week(now).end + timedelta(days=7, hours=7)
    report, error = invoke(aws, deployed.function_named("report"),
                           load_event("report_scheduled", scheduled_time=next_monday.isoformat()))
    assert error is None, report
    bucket = deployed.settings("report").bucket
    html = aws.client("s3").get_object(Bucket=bucket,
                                       Key=report_key(settings.stage, report_week(next_monday)))["Body"].read().decode()
    # Then pg-local's section shows that health
    section = html[html.index('id="t-pg-local"'):]
    section = section[:section.index("</section>")]
    assert "No health data recorded this week" not in section
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (healthy|degraded|unhealthy)", section)}
    assert counts[checked["status"]] == 1 and sum(counts.values()) == 1, counts
