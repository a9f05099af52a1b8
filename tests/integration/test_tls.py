"""TLS to the databases (warden.tls): verified TLS by default against a real PostgreSQL 15 with a
certificate from a CA made here; a target that requires TLS refuses a secret that asks for less; the
explicit opt-out connects and logs a warning on every connection; the local runtime opts out."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local._proc import hand_over, service_user
from local.aws import LocalAws
from local.config import LocalConfig
from local.postgres import DEBIAN_PG15_BIN, LocalPostgres, PostgresEndpoint, debian_pg15_available
from warden import tls
from warden.config.credentials import Neo4jSecret, PostgresSecret
from warden.config.target import Engine, Target
from warden.engines import neo4j as neo4j_engine
from warden.engines import postgres as pg
from warden.engines import postgres as pgb
from warden.engines.base import BackupFailed
from warden.errors import DatabaseUnavailable
from warden.stores.secrets import load_secret

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA that signed the server's certificate (CN and SAN: localhost only)
    other_ca: Path  # a CA that did not


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=Warden test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=directory)


@pytest.fixture(scope="module")
def verified_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresEndpoint, Certs]]:
    """Debian's PostgreSQL 15 (built with SSL) serving a certificate for `localhost` signed by a CA
    made here; the embedded PostgreSQL 18 has no SSL."""
    if not debian_pg15_available():
        pytest.skip("Debian's PostgreSQL 15 is not installed")
    base = tmp_path_factory.mktemp("verify-full")
    certs_dir = base / "certs"
    certs_dir.mkdir()
    _make_ca(certs_dir, "ca")
    _make_ca(certs_dir, "other-ca")
    (certs_dir / "server.ext").write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
             "-out", "server.csr", cwd=certs_dir)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "server.ext", "-out", "server.crt", cwd=certs_dir)

    data_dir = base / "pg15"
    server = LocalPostgres(data_dir, bin_dir=DEBIAN_PG15_BIN, preload=())
    server.start()
    server.stop()
    for name in ("server.crt", "server.key"):
        (data_dir / name).write_bytes((certs_dir / name).read_bytes())
    os.chmod(data_dir / "server.key", 0o600)
    with open(data_dir / "postgresql.conf", "a") as conf:
        conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    hand_over(data_dir, service_user())
    endpoint = server.start()
    try:
        yield endpoint, Certs(ca=certs_dir / "ca.crt", other_ca=certs_dir / "other-ca.crt")
    finally:
        server.stop()


def _secret(endpoint: PostgresEndpoint, **over: Any) -> PostgresSecret:
    values: dict[str, Any] = {"host": "localhost", "port": endpoint.port, "username": endpoint.username,
                              "password": endpoint.password, "dbname": "postgres"}
    values.update(over)
    return PostgresSecret(**values)


def _connection_is_tls(secret: PostgresSecret) -> bool:
    with pg.connect(secret) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None
    return bool(row[0])


# -- PostgreSQL: verify-full for real --------------------------------------------------------------


def test_a_secret_without_sslmode_means_verify_full(verified_postgres: tuple[PostgresEndpoint, Certs]) -> None:
    endpoint, certs = verified_postgres
    secret = _secret(endpoint, sslrootcert=str(certs.ca))
    assert secret.sslmode == "verify-full"
    assert _connection_is_tls(secret)


def test_verify_full_refuses_a_server_whose_certificate_another_ca_signed(
        verified_postgres: tuple[PostgresEndpoint, Certs]) -> None:
    endpoint, certs = verified_postgres
    with pytest.raises(DatabaseUnavailable, match="certificate verify failed"):
        pg.connect(_secret(endpoint, sslrootcert=str(certs.other_ca)))


def test_verify_full_refuses_a_host_name_the_certificate_does_not_name(
        verified_postgres: tuple[PostgresEndpoint, Certs]) -> None:
    endpoint, certs = verified_postgres
    # The certificate names localhost only; 127.0.0.1 is the same server under a name it does not carry.
    with pytest.raises(DatabaseUnavailable, match=r'does not match host name "127\.0\.0\.1"'):
        pg.connect(_secret(endpoint, host="127.0.0.1", sslrootcert=str(certs.ca)))
    # verify-ca checks the chain only, so the same connection passes
    assert _connection_is_tls(_secret(endpoint, host="127.0.0.1", sslmode="verify-ca", sslrootcert=str(certs.ca)))


def test_without_sslrootcert_the_rds_bundle_is_trusted_and_a_missing_bundle_is_a_clear_error(
        verified_postgres: tuple[PostgresEndpoint, Certs], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    endpoint, certs = verified_postgres
    secret = _secret(endpoint)  # no sslrootcert: the RDS CA bundle of the layer
    # A bundle that is not there is named, before any connection is tried
    monkeypatch.setattr(tls, "RDS_CA_BUNDLE", tmp_path / "absent.pem")
    with pytest.raises(tls.TlsError, match=r"the RDS CA bundle of the warden layer .*absent\.pem does not exist"):
        pg.connect(secret)
    # The bundle is what libpq trusts: with this test's CA in its place, the connection verifies
    monkeypatch.setattr(tls, "RDS_CA_BUNDLE", certs.ca)
    assert _connection_is_tls(secret)
    # and with a bundle of other CAs (RDS's own would be the same for this server), it does not
    monkeypatch.setattr(tls, "RDS_CA_BUNDLE", certs.other_ca)
    with pytest.raises(DatabaseUnavailable, match="certificate verify failed"):
        pg.connect(secret)


def test_pg_dump_verifies_the_server_with_the_same_root_certificate(
        verified_postgres: tuple[PostgresEndpoint, Certs]) -> None:
    endpoint, certs = verified_postgres
    with psycopg.connect(host="localhost", port=endpoint.port, user=endpoint.username, password=endpoint.password,
                         dbname="postgres", sslmode="verify-full", sslrootcert=str(certs.ca), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS tls_dump")
        conn.execute("CREATE DATABASE tls_dump")
    with psycopg.connect(host="localhost", port=endpoint.port, user=endpoint.username, password=endpoint.password,
                         dbname="tls_dump", sslmode="verify-full", sslrootcert=str(certs.ca), autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    good = _secret(endpoint, dbname="tls_dump", sslrootcert=str(certs.ca))
    result = pgb.export_backup(good, io.BytesIO(), bin_dir=DEBIAN_PG15_BIN)
    assert result.counts == {"public.t": 1000}
    with pytest.raises((BackupFailed, DatabaseUnavailable), match="certificate verify failed"):
        pgb.export_backup(_secret(endpoint, dbname="tls_dump", sslrootcert=str(certs.other_ca)), io.BytesIO(),
                          bin_dir=DEBIAN_PG15_BIN)


# -- the target decides: required by default, explicit opt-out ------------------------------------


PG = {"host": "db", "username": "u", "password": "s3cr3t-pw"}


def _register(aws: LocalAws, name: str, secret: dict[str, Any], **target: Any) -> Target:
    aws.client("secretsmanager").create_secret(Name=f"warden/t/{name}", SecretString=json.dumps(secret))
    return Target.model_validate({"name": name, "secret_name": f"warden/t/{name}", **target})


@pytest.mark.parametrize("engine, secret, message", [
    ("postgres", {**PG, "sslmode": "require"}, "sets sslmode=require"),
    ("postgres", {**PG, "sslmode": "disable"}, "sets sslmode=disable"),
    ("postgres", {**PG, "sslmode": "prefer"}, "sets sslmode=prefer"),
    ("neo4j", {"uri": "bolt://db:7687", "password": "s3cr3t-pw"}, "has a bolt:// URI"),
    ("neo4j", {"uri": "neo4j://db:7687", "password": "s3cr3t-pw"}, "has a neo4j:// URI"),
    ("neo4j", {"uri": "neo4j+ssc://db:7687", "password": "s3cr3t-pw"}, r"has a neo4j\+ssc:// URI"),
], ids=["pg require", "pg disable", "pg prefer", "bolt", "neo4j", "neo4j+ssc"])
def test_a_target_that_requires_tls_refuses_a_secret_that_asks_for_less(
        aws: LocalAws, engine: str, secret: dict[str, Any], message: str) -> None:
    target = _register(aws, "strict", {"engine": engine, **secret}, engine=engine)
    with pytest.raises(tls.TlsError, match=rf"target 'strict' requires TLS, but its secret 'warden/t/strict' {message}"
                                           r".*set `\"tls\": \{\"required\": false\}` on target 'strict'") as error:
        load_secret(target)
    assert "s3cr3t-pw" not in str(error.value)  # no credential in the message


@pytest.mark.parametrize("engine, secret", [
    ("postgres", PG),
    ("postgres", {**PG, "sslmode": "verify-ca"}),
    ("neo4j", {"uri": "neo4j+s://db:7687", "password": "s3cr3t-pw"}),
    ("neo4j", {"uri": "bolt+s://db:7687", "password": "s3cr3t-pw"}),
], ids=["pg default", "pg verify-ca", "neo4j+s", "bolt+s"])
def test_a_target_that_requires_tls_accepts_verified_tls(aws: LocalAws, engine: str, secret: dict[str, Any]) -> None:
    target = _register(aws, "strict", {"engine": engine, **secret}, engine=engine)
    loaded = load_secret(target)
    assert getattr(loaded, "sslmode", "verify-full") in tls.VERIFIED_SSLMODES


def test_the_opt_out_connects_without_tls_and_warns_once_per_process(
        aws: LocalAws, postgres: PostgresEndpoint, caplog: pytest.LogCaptureFixture) -> None:
    # Given a target that opted out, whose secret turns TLS off (the embedded PostgreSQL has none)
    target = _register(aws, "relaxed", {"engine": "postgres", "host": postgres.host, "port": postgres.port,
                                        "username": postgres.username, "password": postgres.password,
                                        "dbname": postgres.dbname, "sslmode": "disable"},
                       engine="postgres", tls={"required": False})
    secret = load_secret(target)
    tls.forget_warnings()  # a fresh process: earlier tests connected to the same server
    # When it connects twice
    with caplog.at_level(logging.WARNING, logger="warden.tls"):
        for _ in range(2):
            pg.connect(secret).close()
    # Then the first connection logged a warning, naming where and how, never the password
    warnings = [r for r in caplog.records if r.name == "warden.tls"]
    assert [(r.levelno, r.getMessage()) for r in warnings] == [
        (logging.WARNING, "PostgreSQL connection with no TLS (or TLS only if the server insists): the target "
                          "opted out of required TLS")]
    assert {(r.host, r.sslmode) for r in warnings} == {(postgres.host, "disable")}  # type: ignore[attr-defined]
    assert postgres.password not in caplog.text


def test_verified_connections_log_no_tls_warning(verified_postgres: tuple[PostgresEndpoint, Certs],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    endpoint, certs = verified_postgres
    with caplog.at_level(logging.WARNING, logger="warden.tls"):
        assert _connection_is_tls(_secret(endpoint, sslrootcert=str(certs.ca)))
    assert not [r for r in caplog.records if r.name == "warden.tls"]


def test_a_neo4j_driver_without_tls_warns_the_first_time_it_is_used(neo4j_server: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    secret = Neo4jSecret(uri=neo4j_server.uri, username=neo4j_server.username, password=neo4j_server.password)
    tls.forget_warnings()  # a fresh process: earlier tests connected to the same server
    try:
        with caplog.at_level(logging.WARNING, logger="warden.tls"):
            for _ in range(2):
                assert neo4j_engine.server_info(secret).engine is Engine.NEO4J
        warnings = [r for r in caplog.records if r.name == "warden.tls"]
        assert [r.getMessage() for r in warnings] == ["Neo4j connection with no TLS: the target opted out of "
                                                      "required TLS"]
        assert neo4j_server.password not in caplog.text
    finally:
        neo4j_engine.close_drivers()


def test_the_local_runtime_opts_its_own_servers_out_and_leaves_external_targets_required() -> None:
    config = LocalConfig.model_validate({"stage": "local", "targets": [
        {"name": "pg-local", "engine": "postgres", "local": "postgres18"},
        {"name": "pg-remote", "engine": "postgres", "password_env": "PW",
         "connection": {"host": "db.internal", "username": "warden"}},
    ]})
    local, remote = (t.as_target("local") for t in config.targets)
    assert local.tls.required is False
    assert remote.tls.required is True


def test_rotation_reads_secrets_under_the_same_rule() -> None:
    from warden.rotation import _secret_of

    strict = Target(name="strict", engine=Engine.POSTGRES, secret_name="warden/t/strict")
    with pytest.raises(tls.TlsError, match="sets sslmode=disable"):
        _secret_of(strict, {**PG, "sslmode": "disable"}, "pending")
    relaxed = strict.model_copy(update={"tls": strict.tls.model_copy(update={"required": False})})
    assert _secret_of(relaxed, {**PG, "sslmode": "disable"}, "pending").sslmode == "disable"


def test_a_restore_target_given_by_uri_defaults_to_verified_tls_too() -> None:
    from warden_cli.main import secret_from_uri

    secret = secret_from_uri("postgresql://app:pw@db.internal/orders")
    assert (secret.sslmode, secret.sslrootcert) == ("verify-full", None)
    secret = secret_from_uri("postgresql://app:pw@db.internal/orders?sslrootcert=/etc/ca.pem")
    assert (secret.sslmode, secret.sslrootcert) == ("verify-full", "/etc/ca.pem")
    assert secret_from_uri("postgresql://app:pw@127.0.0.1/x?sslmode=disable").sslmode == "disable"
