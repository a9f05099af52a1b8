"""Credential rotation against the real local PostgreSQL 18 and Neo4j 5.26, through Secrets Manager's
`RotateSecret` (moto) and the deployed rotate function.

The stage here is synthesized with four rotating targets (single-user and alternating, per engine),
each on users of its own, so the session's shared admin credentials never change. moto's rotation
is made to stop at a failing step as AWS does (local/secrets_rotation.py).
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import psycopg
import pytest
from psycopg import sql

from local.aws import LocalAws
from local.deploy import Deployment, _Resolver, deploy_template, synthesize_stage
from local.postgres import PostgresEndpoint
from local.runtime import local_stage, neo4j_secret, postgres_secret
from tests.conftest import LOCAL_TARGETS, STAGE, invoke, load_event
from warden.config.rotation import RotationConfig
from warden.config.target import Target
from warden.stores.audit import tail

pytestmark = pytest.mark.integration

DB = "warden_rotation"
PG_USER, PG_ALT_USER = "warden_rot", "warden_alt"
NEO_USER, NEO_ALT_USER = "rotuser", "altuser"
FIRST_PASSWORD = "first-Password-1234"
SINGLE = RotationConfig(enabled=True)
ALTERNATING = RotationConfig(enabled=True, strategy="alternating", master_secret_name=f"warden/{STAGE}/rot-master-pg")
NEO_ALTERNATING = RotationConfig(enabled=True, strategy="alternating",
                                 master_secret_name=f"warden/{STAGE}/rot-master-neo4j")


def _like(template: Target, name: str, rotation: RotationConfig) -> Target:
    """A target like the session's local one of that engine (same local conventions), rotating."""
    return Target.model_validate({**template.model_dump(mode="json", exclude={"recovery"}), "name": name,
                                  "secret_name": f"warden/{STAGE}/{name}",
                                  "rotation": rotation.model_dump(mode="json")})


GRAPH, PG = LOCAL_TARGETS[0], LOCAL_TARGETS[1]
TARGETS = {
    "pg-rot": _like(PG, "pg-rot", SINGLE),
    "pg-alt": _like(PG, "pg-alt", ALTERNATING),
    "graph-rot": _like(GRAPH, "graph-rot", SINGLE),
    "graph-alt": _like(GRAPH, "graph-alt", NEO_ALTERNATING),
}


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rotation_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return synthesize_stage(local_stage(STAGE, list(TARGETS.values())), tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture
def stage(aws: LocalAws, rotation_template: dict[str, Any], postgres: PostgresEndpoint,
          neo4j_server: Any) -> Iterator[Deployment]:
    """The stage deployed into moto; fresh users on both servers with FIRST_PASSWORD; their secrets."""
    _reset_postgres(postgres)
    _reset_neo4j(neo4j_server)
    secrets = aws.client("secretsmanager")
    pg = {**postgres_secret(postgres, DB), "password": FIRST_PASSWORD}
    graph = {**neo4j_secret(neo4j_server), "password": FIRST_PASSWORD}
    for name, value in (("pg-rot", {**pg, "username": PG_USER}), ("pg-alt", {**pg, "username": PG_ALT_USER}),
                        ("graph-rot", {**graph, "username": NEO_USER}),
                        ("graph-alt", {**graph, "username": NEO_ALT_USER})):
        secrets.create_secret(Name=TARGETS[name].secret_name, SecretString=json.dumps(value))
    secrets.create_secret(Name=ALTERNATING.master_secret_name, SecretString=json.dumps(postgres_secret(postgres, DB)))
    secrets.create_secret(Name=NEO_ALTERNATING.master_secret_name, SecretString=json.dumps(neo4j_secret(neo4j_server)))
    yield deploy_template(aws, rotation_template, STAGE)
    from warden.engines.neo4j import close_drivers

    close_drivers()


@pytest.fixture
def warden_log() -> Iterator[io.StringIO]:
    """Everything Warden logs (the functions' Powertools logger "warden" and the library's
    "warden.*" loggers, structured fields included), at DEBUG, during the test."""
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(LambdaPowertoolsFormatter())
    logger = logging.getLogger("warden")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _admin(pg: PostgresEndpoint, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(host=pg.host, port=pg.port, user=pg.username, password=pg.password, dbname=dbname,
                           autocommit=True)


def _reset_postgres(pg: PostgresEndpoint) -> None:
    with _admin(pg) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        for role in (PG_USER, PG_ALT_USER, PG_ALT_USER + "_clone"):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        for role in (PG_USER, PG_ALT_USER):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role),
                                                                           sql.Literal(FIRST_PASSWORD)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DB), sql.Identifier(PG_ALT_USER)))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(DB), sql.Identifier(PG_USER)))
    with pg_login(pg, PG_ALT_USER, FIRST_PASSWORD) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
        conn.execute("INSERT INTO orders VALUES (1), (2)")


def _reset_neo4j(server: Any) -> None:
    with neo4j.GraphDatabase.driver(server.uri, auth=(server.username, server.password)) as driver, \
            driver.session(database="system") as session:
        for user in (NEO_USER, NEO_ALT_USER, NEO_ALT_USER + "_clone"):
            session.run("DROP USER $u IF EXISTS", u=user).consume()
        for user in (NEO_USER, NEO_ALT_USER):
            session.run("CREATE USER $u SET PASSWORD $p CHANGE NOT REQUIRED", u=user, p=FIRST_PASSWORD).consume()


def pg_login(pg: PostgresEndpoint, user: str, password: str) -> psycopg.Connection:
    return psycopg.connect(host=pg.host, port=pg.port, user=user, password=password, dbname=DB, autocommit=True)


def pg_refuses(pg: PostgresEndpoint, user: str, password: str) -> bool:
    try:
        pg_login(pg, user, password).close()
    except psycopg.OperationalError as err:
        assert "password authentication failed" in str(err), err  # refused, not unreachable
        return True
    return False


def neo4j_accepts(server: Any, user: str, password: str) -> bool:
    with neo4j.GraphDatabase.driver(server.uri, auth=(user, password)) as driver:
        try:
            driver.verify_connectivity()
            with driver.session() as session:
                return session.run("RETURN 1 AS one").single()["one"] == 1
        except neo4j.exceptions.AuthError:
            return False


def current(aws: LocalAws, target: str, stage: str = "AWSCURRENT") -> dict[str, Any]:
    value = aws.client("secretsmanager").get_secret_value(SecretId=TARGETS[target].secret_name, VersionStage=stage)
    return dict(json.loads(value["SecretString"]))


def labels(aws: LocalAws, target: str) -> dict[str, list[str]]:
    described = aws.client("secretsmanager").describe_secret(SecretId=TARGETS[target].secret_name)
    return {v: s for v, s in described["VersionIdsToStages"].items() if s}


def rotation_function_arn(stage: Deployment, target: str) -> str:
    """The rotate function the template's rotation schedule of `target` names."""
    schedules = [r for r in stage.template["Resources"].values()
                 if r["Type"] == "AWS::SecretsManager::RotationSchedule"
                 and r["Properties"]["SecretId"] == TARGETS[target].secret_name]
    assert len(schedules) == 1, f"one rotation schedule for {target}"
    return str(_Resolver(stage).value(schedules[0]["Properties"]["RotationLambdaARN"]))


def rotate(aws: LocalAws, stage: Deployment, target: str, token: str | None = None) -> str:
    """Secrets Manager's RotateSecret with the deployed schedule's function; the new version id."""
    response = aws.client("secretsmanager").rotate_secret(
        SecretId=TARGETS[target].secret_name, RotationLambdaARN=rotation_function_arn(stage, target),
        RotationRules={"AutomaticallyAfterDays": 30}, ClientRequestToken=token or str(uuid.uuid4()))
    return str(response["VersionId"])


def step(aws: LocalAws, stage: Deployment, target: str, name: str, token: str) -> tuple[Any, str | None]:
    """One rotation step, invoked as Secrets Manager invokes it (a retry is the same call again)."""
    return invoke(aws, stage.function_named("rotate"), load_event(
        "rotate_create_secret", SecretId=TARGETS[target].secret_name, ClientRequestToken=token, Step=name))


def connectivity(aws: LocalAws, stage: Deployment, target: str) -> dict[str, Any]:
    report, error = invoke(aws, stage.function_named("health"), {"target": target, "trigger": "manual"})
    assert error is None, report
    return {c["name"]: c for c in report["targets"][0]["checks"]}["connectivity"]


# --- single user -------------------------------------------------------------------------------


def test_postgres_single_user_rotation_changes_the_password_without_sending_it(
        aws: LocalAws, stage: Deployment, postgres: PostgresEndpoint, warden_log: io.StringIO) -> None:
    # Given pg-rot's user, whose statements the server logs in full, and Warden healthy on it
    with _admin(postgres) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} SET log_statement = 'all'").format(sql.Identifier(PG_USER)))
    server_log = Path(postgres.data_dir) / "server.log"
    log_start = server_log.stat().st_size
    assert connectivity(aws, stage, "pg-rot")["status"] == "pass"

    # When Secrets Manager rotates its secret
    version = rotate(aws, stage, "pg-rot")

    # Then AWSCURRENT is the new version with a new password, the old one is AWSPREVIOUS, none pending
    new = current(aws, "pg-rot")
    assert labels(aws, "pg-rot")[version] == ["AWSCURRENT"]
    assert current(aws, "pg-rot", "AWSPREVIOUS")["password"] == FIRST_PASSWORD
    assert new["password"] != FIRST_PASSWORD and len(new["password"]) == 32 and new["username"] == PG_USER
    # the server refuses the old password and accepts the new one
    assert pg_refuses(postgres, PG_USER, FIRST_PASSWORD)
    with pg_login(postgres, PG_USER, new["password"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (PG_USER,)
    # Warden keeps working: the deployed health function reads the new secret
    assert connectivity(aws, stage, "pg-rot")["status"] == "pass"
    # the server logged the ALTER ROLE with a SCRAM verifier, never the password; nor did Warden
    logged = server_log.read_bytes()[log_start:].decode(errors="replace")
    assert "ALTER ROLE" in logged and "SCRAM-SHA-256$4096:" in logged
    assert '"rotation step finished"' in warden_log.getvalue()  # the capture saw the rotation's logs
    for text in (logged, warden_log.getvalue()):
        assert new["password"] not in text and FIRST_PASSWORD not in text
    # and the rotation is audited (health runs are audited too: not counted here)
    entries = [e for e in tail(stage.outputs()["AuditTable"], "pg-rot") if e.operation != "health"]
    assert [(e.operation, e.step, e.outcome) for e in entries] == [("rotate", "finish", "ok")]
    assert entries[0].details["version"] == version


def test_neo4j_single_user_rotation_and_warden_picks_up_the_new_password(
        aws: LocalAws, stage: Deployment, neo4j_server: Any, warden_log: io.StringIO) -> None:
    from warden.engines.neo4j import connection as neo4j_adapter

    # Given Warden healthy on graph-rot (its driver cached with the first password)
    assert connectivity(aws, stage, "graph-rot")["status"] == "pass"
    assert any(k[1] == NEO_USER and k[2] == FIRST_PASSWORD for k in neo4j_adapter._drivers)

    # When Secrets Manager rotates its secret
    version = rotate(aws, stage, "graph-rot")

    # Then the old password is refused, the new one (AWSCURRENT) accepted
    new = current(aws, "graph-rot")
    assert labels(aws, "graph-rot")[version] == ["AWSCURRENT"]
    assert new["password"] != FIRST_PASSWORD and new["username"] == NEO_USER
    assert not neo4j_accepts(neo4j_server, NEO_USER, FIRST_PASSWORD)
    assert neo4j_accepts(neo4j_server, NEO_USER, new["password"])
    # and Warden keeps working, its stale driver closed and replaced
    assert connectivity(aws, stage, "graph-rot")["status"] == "pass"
    cached = [k for k in neo4j_adapter._drivers if k[1] == NEO_USER]
    assert cached and all(k[2] == new["password"] for k in cached)
    assert '"rotation step finished"' in warden_log.getvalue()
    assert new["password"] not in warden_log.getvalue() and FIRST_PASSWORD not in warden_log.getvalue()


def test_single_user_setsecret_refuses_when_no_known_password_logs_in_and_changes_nothing(
        aws: LocalAws, stage: Deployment, postgres: PostgresEndpoint) -> None:
    # Given someone changed pg-rot's password behind Secrets Manager's back
    with _admin(postgres) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD 'out-of-band-999'").format(sql.Identifier(PG_USER)))
    before = labels(aws, "pg-rot")

    # When a rotation runs
    version = rotate(aws, stage, "pg-rot")

    # Then it stopped: AWSCURRENT is where it was, the new version only pending, the database untouched
    after = labels(aws, "pg-rot")
    assert {v: s for v, s in after.items() if v != version} == before
    assert after[version] == ["AWSPENDING"]
    assert current(aws, "pg-rot")["password"] == FIRST_PASSWORD
    with pg_login(postgres, PG_USER, "out-of-band-999") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # and the failure is audited with a reason that names the user, not a password
    failed = [e for e in tail(stage.outputs()["AuditTable"], "pg-rot") if e.outcome == "failed"]
    assert [e.step for e in failed] == ["setSecret"]
    assert "neither the current nor the previous credentials" in failed[0].details["error"]


def test_neo4j_single_user_setsecret_refuses_when_no_known_password_logs_in_and_changes_nothing(
        aws: LocalAws, stage: Deployment, neo4j_server: Any) -> None:
    # Given someone changed graph-rot's password behind Secrets Manager's back
    with neo4j.GraphDatabase.driver(neo4j_server.uri, auth=(neo4j_server.username, neo4j_server.password)) as d:
        d.execute_query("ALTER USER $u SET PASSWORD 'out-of-band-999' CHANGE NOT REQUIRED", u=NEO_USER,
                        database_="system")
    before = labels(aws, "graph-rot")

    # When a rotation runs
    version = rotate(aws, stage, "graph-rot")

    # Then it stopped at setSecret: AWSCURRENT where it was, the database's password untouched
    after = labels(aws, "graph-rot")
    assert {v: s for v, s in after.items() if v != version} == before and after[version] == ["AWSPENDING"]
    assert current(aws, "graph-rot")["password"] == FIRST_PASSWORD
    assert neo4j_accepts(neo4j_server, NEO_USER, "out-of-band-999")
    failed = [e for e in tail(stage.outputs()["AuditTable"], "graph-rot") if e.outcome == "failed"]
    assert [e.step for e in failed] == ["setSecret"]


def test_repeating_the_steps_of_a_finished_rotation_changes_nothing(
        aws: LocalAws, stage: Deployment, postgres: PostgresEndpoint) -> None:
    # Given a finished rotation of pg-rot
    token = rotate(aws, stage, "pg-rot")
    rotated, before = current(aws, "pg-rot"), labels(aws, "pg-rot")

    # When Secrets Manager delivers every step of it again
    outcomes = []
    for name in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        result, error = step(aws, stage, "pg-rot", name, token)
        assert error is None, result
        outcomes.append(result["outcome"])

    # Then each one reports it was already done; the secret and the password stay as they were
    assert outcomes == ["already-done"] * 4
    assert labels(aws, "pg-rot") == before and current(aws, "pg-rot") == rotated
    assert pg_refuses(postgres, PG_USER, FIRST_PASSWORD)
    with pg_login(postgres, PG_USER, rotated["password"]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    rotations = [e.step for e in tail(stage.outputs()["AuditTable"], "pg-rot") if e.operation == "rotate"]
    assert rotations == ["finish"]  # audited once


# --- alternating users -------------------------------------------------------------------------


def test_postgres_alternating_users_keep_working_through_two_rotations(
        aws: LocalAws, stage: Deployment, postgres: PostgresEndpoint) -> None:
    # When pg-alt is rotated once
    first = rotate(aws, stage, "pg-alt")

    # Then the clone user was created with the base user's privileges and is now current
    clone = current(aws, "pg-alt")
    assert clone["username"] == PG_ALT_USER + "_clone" and labels(aws, "pg-alt")[first] == ["AWSCURRENT"]
    with pg_login(postgres, clone["username"], clone["password"]) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    # the base user still logs in with its password (nobody was cut off), and Warden works
    with pg_login(postgres, PG_ALT_USER, FIRST_PASSWORD) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert connectivity(aws, stage, "pg-alt")["status"] == "pass"

    # When it is rotated again
    second = rotate(aws, stage, "pg-alt")

    # Then the base user is current again with a new password; its old one is refused; the clone
    # (AWSPREVIOUS) still works until the next rotation
    base = current(aws, "pg-alt")
    assert base["username"] == PG_ALT_USER and base["password"] not in (FIRST_PASSWORD, clone["password"])
    assert labels(aws, "pg-alt")[second] == ["AWSCURRENT"]
    assert pg_refuses(postgres, PG_ALT_USER, FIRST_PASSWORD)
    with pg_login(postgres, PG_ALT_USER, base["password"]) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    with pg_login(postgres, clone["username"], clone["password"]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert connectivity(aws, stage, "pg-alt")["status"] == "pass"
    # and a backup through the deployed function (pg_dump gets the rotated credentials) completes
    record, error = invoke(aws, stage.function_named("backup"), {"target": "pg-alt", "trigger": "manual"})
    assert error is None, record
    assert record["status"] == "COMPLETED" and record["counts"].get("public.orders") == 2, record


def test_neo4j_alternating_users_keep_working_through_two_rotations(
        aws: LocalAws, stage: Deployment, neo4j_server: Any) -> None:
    first = rotate(aws, stage, "graph-alt")
    clone = current(aws, "graph-alt")
    assert clone["username"] == NEO_ALT_USER + "_clone" and labels(aws, "graph-alt")[first] == ["AWSCURRENT"]
    assert neo4j_accepts(neo4j_server, clone["username"], clone["password"])
    assert neo4j_accepts(neo4j_server, NEO_ALT_USER, FIRST_PASSWORD)
    assert connectivity(aws, stage, "graph-alt")["status"] == "pass"

    rotate(aws, stage, "graph-alt")
    base = current(aws, "graph-alt")
    assert base["username"] == NEO_ALT_USER and base["password"] != FIRST_PASSWORD
    assert not neo4j_accepts(neo4j_server, NEO_ALT_USER, FIRST_PASSWORD)
    assert neo4j_accepts(neo4j_server, NEO_ALT_USER, base["password"])
    assert neo4j_accepts(neo4j_server, clone["username"], clone["password"])
    assert connectivity(aws, stage, "graph-alt")["status"] == "pass"


def test_failing_testsecret_keeps_awscurrent_and_a_retried_rotation_completes(
        aws: LocalAws, stage: Deployment, postgres: PostgresEndpoint) -> None:
    # Given the clone user exists but may not log in (an operator's mistake)
    with _admin(postgres) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(PG_ALT_USER + "_clone")))
    before = labels(aws, "pg-alt")

    # When pg-alt is rotated
    token = rotate(aws, stage, "pg-alt")

    # Then testSecret failed: AWSCURRENT unchanged, the new version still pending, the current user
    # still logs in and Warden still works (nobody locked out)
    after = labels(aws, "pg-alt")
    assert {v: s for v, s in after.items() if v != token} == before and after[token] == ["AWSPENDING"]
    assert current(aws, "pg-alt")["username"] == PG_ALT_USER
    with pg_login(postgres, PG_ALT_USER, FIRST_PASSWORD) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert connectivity(aws, stage, "pg-alt")["status"] == "pass"
    failed = [e for e in tail(stage.outputs()["AuditTable"], "pg-alt") if e.outcome == "failed"]
    assert [e.step for e in failed] == ["testSecret"]
    pending = current(aws, "pg-alt", "AWSPENDING")

    # When the clone may log in again and Secrets Manager retries the steps, each of them twice
    with _admin(postgres) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(PG_ALT_USER + "_clone")))
    outcomes = []
    for name in ("createSecret", "setSecret", "testSecret", "testSecret", "createSecret", "setSecret"):
        result, error = step(aws, stage, "pg-alt", name, token)
        assert error is None, result
        outcomes.append((name, result["outcome"]))
    # Warden keeps working between setSecret and finishSecret (AWSCURRENT's user is untouched)
    assert connectivity(aws, stage, "pg-alt")["status"] == "pass"
    for _ in range(2):
        result, error = step(aws, stage, "pg-alt", "finishSecret", token)
        assert error is None, result
        outcomes.append(("finishSecret", result["outcome"]))

    # Then the retries changed nothing twice: the pending value was kept, the password set once
    assert outcomes == [("createSecret", "already-done"), ("setSecret", "already-done"), ("testSecret", "done"),
                        ("testSecret", "done"), ("createSecret", "already-done"), ("setSecret", "already-done"),
                        ("finishSecret", "done"), ("finishSecret", "already-done")]
    assert current(aws, "pg-alt") == pending and labels(aws, "pg-alt")[token] == ["AWSCURRENT"]
    with pg_login(postgres, pending["username"], pending["password"]) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    assert connectivity(aws, stage, "pg-alt")["status"] == "pass"


def test_rotate_function_refuses_a_secret_that_is_not_a_rotating_targets(
        aws: LocalAws, stage: Deployment, postgres: PostgresEndpoint) -> None:
    # Given a secret of no target, and the shared admin secret untouched
    secrets = aws.client("secretsmanager")
    secrets.create_secret(Name="someone/else", SecretString=json.dumps(postgres_secret(postgres)))
    token = str(uuid.uuid4())

    # When the rotate function is asked to rotate it
    result, error = invoke(aws, stage.function_named("rotate"),
                           load_event("rotate_create_secret", SecretId="someone/else", ClientRequestToken=token))

    # Then it refuses with a clear error and the secret has no new version
    assert error == "Unhandled" and result["errorType"] == "ConfigError"
    assert "not the secret of any target" in result["errorMessage"]
    assert len(secrets.list_secret_version_ids(SecretId="someone/else")["Versions"]) == 1
    # and a malformed event is refused before anything is read
    result, error = invoke(aws, stage.function_named("rotate"), load_event("rotate_bad_input"))
    assert error == "Unhandled" and result["errorType"] == "BadRequest"
