"""A target's deliberate TLS opt-out is logged once per database and process, not on every connection."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from warden import tls
from warden.config.credentials import Neo4jSecret, PostgresSecret


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    tls.forget_warnings()
    yield
    tls.forget_warnings()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "warden.tls" and r.levelno == logging.WARNING]


def pg(host: str = "db.internal", sslmode: str = "disable", dbname: str = "orders") -> PostgresSecret:
    return PostgresSecret.model_validate({"host": host, "username": "warden", "password": "s3cr3t-pw",
                                          "dbname": dbname, "sslmode": sslmode})


def test_an_opted_out_postgres_database_is_warned_about_once_per_process(caplog: pytest.LogCaptureFixture) -> None:
    # Given a process that connects to the same opted-out database many times (a demo, a health run)
    with caplog.at_level(logging.WARNING, logger="warden.tls"):
        # When every connection asks for a warning
        for _ in range(5):
            tls.warn_postgres(pg())
    # Then one warning says where and how, never the password
    warnings = warnings_of(caplog)
    assert [r.getMessage() for r in warnings] == [
        "PostgreSQL connection with no TLS (or TLS only if the server insists): the target opted out of required TLS"]
    assert (warnings[0].host, warnings[0].dbname, warnings[0].sslmode) == (  # type: ignore[attr-defined]
        "db.internal", "orders", "disable")
    assert "s3cr3t-pw" not in caplog.text


def test_each_opted_out_database_and_tls_mode_gets_its_own_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="warden.tls"):
        for secret in (pg(), pg(host="other.internal"), pg(dbname="billing"), pg(sslmode="require"), pg()):
            tls.warn_postgres(secret)
            tls.warn_postgres(secret)
    assert [(r.host, r.dbname, r.sslmode) for r in warnings_of(caplog)] == [  # type: ignore[attr-defined]
        ("db.internal", "orders", "disable"), ("other.internal", "orders", "disable"),
        ("db.internal", "billing", "disable"), ("db.internal", "orders", "require")]


def test_an_opted_out_neo4j_database_is_warned_about_once_per_process(caplog: pytest.LogCaptureFixture) -> None:
    plain = Neo4jSecret(uri="bolt://graph.internal:7687", password="s3cr3t-pw")  # type: ignore[arg-type]
    self_signed = Neo4jSecret(uri="neo4j+ssc://graph.internal:7687", password="s3cr3t-pw")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="warden.tls"):
        for _ in range(3):
            tls.warn_neo4j(plain)
            tls.warn_neo4j(self_signed)
    assert [r.getMessage() for r in warnings_of(caplog)] == [
        "Neo4j connection with no TLS: the target opted out of required TLS",
        "Neo4j connection with TLS without certificate verification: the target opted out of required TLS"]


def test_verified_tls_is_never_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="warden.tls"):
        tls.warn_postgres(pg(sslmode="verify-full"))
        tls.warn_neo4j(Neo4jSecret(uri="neo4j+s://graph.internal:7687", password="pw"))  # type: ignore[arg-type]
    assert warnings_of(caplog) == []


def test_a_new_process_warns_again(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="warden.tls"):
        tls.warn_postgres(pg())
        tls.forget_warnings()  # what a new execution environment starts with
        tls.warn_postgres(pg())
    assert len(warnings_of(caplog)) == 2
