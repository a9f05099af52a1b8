"""The `server_version` check against the real local servers: each health run records the version
the server reports, and a support policy turns an outdated server into a warning (or a failure)
that names the date its support ends; a policy the server meets passes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from local.aws import LocalAws
from local.postgres import PostgresEndpoint
from tests.conftest import STAGE
from warden.config.health import HealthThresholds
from warden.config.target import Engine, Target
from warden.health import check_target
from warden.models import CheckStatus, HealthStatus
from warden.versions import BUILTIN_END_OF_SUPPORT, SupportPolicy, parse_version, support_series

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def _register(aws: LocalAws, name: str, engine: Engine, secret: dict[str, Any]) -> Target:
    secret_name = f"warden/{STAGE}/{name}"
    aws.client("secretsmanager").create_secret(Name=secret_name, SecretString=json.dumps(secret))
    # the local servers are loopback-only without TLS: the explicit opt-out
    return Target.model_validate({"name": name, "engine": engine.value, "secret_name": secret_name,
                                  "tls": {"required": False}})


def _pg_target(aws: LocalAws, name: str, pg: PostgresEndpoint) -> tuple[Target, str]:
    target = _register(aws, name, Engine.POSTGRES, {
        "engine": "postgres", "host": pg.host, "port": pg.port, "username": pg.username,
        "password": pg.password, "dbname": pg.dbname, "sslmode": "disable"})
    with psycopg.connect(pg.uri()) as conn:  # what the server itself says, read apart from Warden
        row = conn.execute("SHOW server_version").fetchone()
    assert row is not None
    return target, str(row[0]).split()[0]


def _neo4j_target(aws: LocalAws, server: Any, driver: Any) -> tuple[Target, str]:
    target = _register(aws, "graph-versions", Engine.NEO4J, {
        "engine": "neo4j", "uri": server.uri, "username": server.username, "password": server.password})
    with driver.session() as session:
        version = session.run("CALL dbms.components() YIELD versions RETURN versions[0] AS v").single()["v"]
    return target, str(version)


@pytest.fixture(params=["postgres18", "postgres15", "neo4j"])
def server(request: pytest.FixtureRequest, aws: LocalAws) -> tuple[Target, str]:
    """(a registered target, the version its server reports) for each local server."""
    if request.param == "neo4j":
        return _neo4j_target(aws, request.getfixturevalue("neo4j_server"), request.getfixturevalue("neo4j_driver"))
    fixture = "postgres" if request.param == "postgres18" else "postgres15"
    return _pg_target(aws, f"pg-versions-{request.param[-2:]}", request.getfixturevalue(fixture))


def _newer_major(engine: Engine, version: str) -> str:
    numbers = parse_version(version).numbers
    return str(numbers[0] + 1) if engine is Engine.POSTGRES else f"{NOW.year + 1}.01"


def _run(target: Target, policy: SupportPolicy) -> Any:
    health = check_target(target, thresholds=HealthThresholds(support=policy), now=NOW)
    checks = {c.name: c for c in health.checks}
    assert [c.name for c in health.checks][:2] == ["connectivity", "server_version"], health.checks
    return health, checks["server_version"]


def test_a_server_below_the_minimum_version_warns_and_the_version_is_recorded(server: tuple[Target, str]) -> None:
    # Given a policy whose minimum is newer than the server (PostgreSQL: next major; Neo4j: next year's CalVer)
    target, version = server
    minimum = _newer_major(target.engine, version)
    # When the target is checked
    health, check = _run(target, SupportPolicy(minimum_version=minimum))
    # Then the run records the version the server reports, and the check warns, naming the minimum
    assert health.server_version == version
    assert check.status is CheckStatus.WARN, check
    assert f"below the minimum version {minimum}" in check.message and version in check.message
    assert check.details["version"] == version and check.details["below_minimum"] is True
    assert health.status is not HealthStatus.HEALTHY


def test_a_server_past_its_end_of_support_warns_or_fails_with_the_date(server: tuple[Target, str]) -> None:
    # Given a policy saying the server's series ended support yesterday
    target, version = server
    series = support_series(target.engine.value, version)
    ended = NOW.date() - timedelta(days=1)
    policy = SupportPolicy(end_of_support={series: ended})
    # When checked, it warns with the date; with outdated=fail it fails and the target is unhealthy
    _, check = _run(target, policy)
    assert check.status is CheckStatus.WARN, check
    assert f"reached its end of support on {ended.isoformat()} (1 days ago)" in check.message
    assert check.details["end_of_support"] == ended.isoformat() and check.details["support"] == "ended"
    assert check.details["metrics"] == {"ServerSupportDaysLeft": -1}
    health, check = _run(target, policy.model_copy(update={"outdated": "fail"}))
    assert check.status is CheckStatus.FAIL and health.status is HealthStatus.UNHEALTHY


def test_a_server_near_its_end_of_support_warns_ahead_of_time(server: tuple[Target, str]) -> None:
    target, version = server
    series = support_series(target.engine.value, version)
    ends = NOW.date() + timedelta(days=30)
    _, check = _run(target, SupportPolicy(end_of_support={series: ends}, warn_days_before=45))
    assert check.status is CheckStatus.WARN, check
    assert f"ends support on {ends.isoformat()} (30 days left)" in check.message
    _, check = _run(target, SupportPolicy(end_of_support={series: ends}, warn_days_before=29))
    assert check.status is CheckStatus.PASS and "supported until" in check.message


def test_a_policy_the_server_meets_passes(server: tuple[Target, str]) -> None:
    # Given the server's own version as the minimum and its series supported for another year
    target, version = server
    series = support_series(target.engine.value, version)
    ends = NOW.date() + timedelta(days=365)
    # When checked
    health, check = _run(target, SupportPolicy(minimum_version=version, end_of_support={series: ends}))
    # Then the check passes, says until when, and reports the days left as a metric
    assert check.status is CheckStatus.PASS, check
    assert f"supported until {ends.isoformat()} (365 days left)" in check.message
    assert check.details["metrics"] == {"ServerSupportDaysLeft": 365}
    assert health.server_version == version


def test_builtin_dates_judge_the_local_servers_without_configuration(server: tuple[Target, str]) -> None:
    # PostgreSQL 15 / 18 and Neo4j 5.26 LTS all have a built-in end-of-support date
    target, version = server
    _, check = _run(target, SupportPolicy())
    ends = date.fromisoformat(str(check.details["end_of_support"]))
    assert ends == BUILTIN_END_OF_SUPPORT[target.engine.value][support_series(target.engine.value, version)]
    assert check.details["days_left"] == (ends - NOW.date()).days
    expected = CheckStatus.PASS if (ends - NOW.date()).days > 90 else CheckStatus.WARN
    assert check.status is expected, check
