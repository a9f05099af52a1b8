"""Licence checks. The Enterprise paths are tested through the pure policy (`decide`): only
Community runs locally. The Community and PostgreSQL paths run against the real servers and through
the license_check function in moto's Lambda."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest

from local.aws import LocalAws, create_function
from tests.conftest import STAGE, invoke, load_event
from warden.config.health import LicenseConfig
from warden.config.target import Engine, Target
from warden.license import (
    Agreement,
    LicenseReport,
    LicenseStatus,
    TargetLicense,
    check_license,
    check_licenses,
    decide,
    format_license_text,
    license_metric_points,
)

TODAY = date(2026, 6, 1)


def _decide(edition: str = "enterprise", expiry: date | None = None, warn_days: int = 30,
            agreement: Agreement | None = None) -> tuple[LicenseStatus, int | None]:
    d = decide(edition, expiry=expiry, warn_days=warn_days, today=TODAY, agreement=agreement)
    return d.status, d.days_left


# --- the policy (no server) --------------------------------------------------------------------


@pytest.mark.parametrize(("days_ahead", "expected"), [
    (365, (LicenseStatus.OK, 365)),
    (31, (LicenseStatus.OK, 31)),
    (30, (LicenseStatus.WARNING, 30)),  # warn_days is inclusive
    (1, (LicenseStatus.WARNING, 1)),
    (0, (LicenseStatus.WARNING, 0)),  # the last day
    (-1, (LicenseStatus.EXPIRED, -1)),
])
def test_enterprise_days_left_until_the_configured_expiry(days_ahead: int,
                                                          expected: tuple[LicenseStatus, int]) -> None:
    assert _decide(expiry=TODAY + timedelta(days=days_ahead)) == expected


def test_enterprise_warning_threshold_is_configurable() -> None:
    assert _decide(expiry=TODAY + timedelta(days=40), warn_days=45) == (LicenseStatus.WARNING, 40)
    assert _decide(expiry=TODAY + timedelta(days=40), warn_days=7) == (LicenseStatus.OK, 40)


def test_enterprise_without_a_configured_expiry_is_unknown_not_ok() -> None:
    decision = decide("enterprise", expiry=None, warn_days=30, today=TODAY)
    assert (decision.status, decision.days_left) == (LicenseStatus.UNKNOWN, None)
    assert "license.expiry" in decision.message


@pytest.mark.parametrize("edition", ["community", "Community", None])
def test_community_is_not_applicable_whatever_is_configured(edition: str | None) -> None:
    assert _decide(edition=edition, expiry=TODAY - timedelta(days=3)) == (LicenseStatus.NOT_APPLICABLE, None)


def test_evaluation_licences_count_their_own_days() -> None:
    assert _decide(agreement=Agreement("eval", 10, 30)) == (LicenseStatus.WARNING, 10)
    assert _decide(agreement=Agreement("eval", 60, 90)) == (LicenseStatus.OK, 60)
    assert _decide(agreement=Agreement("expired", None, 30)) == (LicenseStatus.EXPIRED, 0)
    evaluation = decide("enterprise", expiry=None, warn_days=30, today=TODAY, agreement=Agreement("eval", 10, 30))
    assert evaluation.evaluation and "10 of 30 days left" in evaluation.message


def test_an_accepted_commercial_agreement_still_uses_the_configured_expiry() -> None:
    assert _decide(expiry=TODAY + timedelta(days=5), agreement=Agreement("yes")) == (LicenseStatus.WARNING, 5)
    assert _decide(agreement=Agreement("no")) == (LicenseStatus.WARNING, None)


def test_days_left_metric_only_where_known() -> None:
    now = "2026-06-01T00:00:00+00:00"
    report = LicenseReport(stage="prod", status=LicenseStatus.WARNING, targets=[
        TargetLicense(target="graph-ee", engine=Engine.NEO4J, status=LicenseStatus.WARNING, message="",
                      days_left=12, checked_at=now),
        TargetLicense(target="graph-ce", engine=Engine.NEO4J, status=LicenseStatus.NOT_APPLICABLE, message="",
                      checked_at=now),
    ])
    points = license_metric_points(report)
    assert [(p.name, p.value, p.unit, p.dimensions) for p in points] == [
        ("LicenseDaysLeft", 12.0, "Count", {"Stage": "prod", "Target": "graph-ee"})]  # stages never share it
    assert "graph-ee" in format_license_text(report) and "[warning" in format_license_text(report)


# --- against the real servers ------------------------------------------------------------------


@pytest.mark.integration
def test_community_neo4j_reports_not_applicable_with_its_version(local_targets: dict[str, Any]) -> None:
    # An expiry in the past is configured: it must not matter for Community
    result = check_license(local_targets["graph-local"], config=LicenseConfig(expiry=date(2000, 1, 1)))
    assert result.status is LicenseStatus.NOT_APPLICABLE
    assert result.edition == "community" and result.version and result.version.startswith("5.26")
    assert result.days_left is None


@pytest.mark.integration
def test_postgres_is_not_applicable_without_connecting(aws: LocalAws) -> None:
    target = Target(name="pg-nowhere", engine=Engine.POSTGRES, secret_name="no/such/secret")
    result = check_license(target)
    assert result.status is LicenseStatus.NOT_APPLICABLE and result.edition == "postgresql"


@pytest.mark.integration
def test_an_unreachable_neo4j_is_an_error_not_a_pass(aws: LocalAws) -> None:
    secret = {"engine": "neo4j", "uri": "bolt://127.0.0.1:9", "password": "whatever"}
    aws.client("secretsmanager").create_secret(Name="warden/local/graph-gone", SecretString=json.dumps(secret))
    target = Target(name="graph-gone", engine=Engine.NEO4J, secret_name="warden/local/graph-gone",
                    tls={"required": False})  # bolt://, as the local servers
    report = check_licenses(STAGE, [target], timeout=2)
    assert report.status is LicenseStatus.ERROR
    assert "unavailable" in report.targets[0].message


@pytest.mark.integration
def test_license_check_function_through_lambda(aws: LocalAws, local_targets: dict[str, Any],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # Given the license_check function in moto's Lambda (the stack does not deploy it yet)
    name = create_function(aws, "warden-local-license-check", "license_check", {"WARDEN_STAGE": STAGE})
    # When it checks every target, then one, then bad input
    report, error = invoke(aws, name, load_event("license_all_targets"))
    one, one_error = invoke(aws, name, load_event("license_scheduled"))
    bad, bad_error = invoke(aws, name, load_event("license_bad_input"))
    # Then
    assert error is None, report
    assert report["status"] == "not_applicable"
    assert {t["target"]: t["status"] for t in report["targets"]} == {
        "graph-local": "not_applicable", "pg-local": "not_applicable"}
    assert one_error is None and [t["target"] for t in one["targets"]] == ["graph-local"]
    assert bad_error == "Unhandled" and bad["errorType"] == "BadRequest"
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert not any("LicenseDaysLeft" in e for e in emitted)  # no days left known for Community
    assert any("LicensesChecked" in e for e in emitted)
