"""The `warden` CLI against a local stage: the synthesized stack deployed into a moto server, the
real databases behind it, exactly what `warden local up` gives an operator."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.aws import LocalAws
from local.config import LocalConfig
from local.deploy import deploy_template
from local.postgres import PostgresEndpoint, create_database
from local.runtime import neo4j_secret, postgres_secret, register_targets
from tests.conftest import STAGE
from warden_cli import main as cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cli_db(postgres: PostgresEndpoint) -> str:
    uri = create_database(postgres, "cli_source", replace=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 300) g")
    return uri


@pytest.fixture
def local_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_template: dict[str, Any],
               postgres: PostgresEndpoint, neo4j_server: Any, cli_db: str) -> Iterator[Path]:
    """A moto server with the local stage deployed and a state file, as `warden local up` leaves it."""
    monkeypatch.setenv("WARDEN_LOCAL_HOME", str(tmp_path))
    # The handlers run in this process (in `warden local up` they run in the runtime's): keep their
    # JSON logs and metrics off the CLI's stdout.
    # The functions run in this process here, so their log lines share the CLI's stdout (a real CLI
    # talks to functions elsewhere). ERROR: the local targets' expected no-TLS warnings stay out of it.
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "ERROR")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    with LocalAws(server=True) as aws:
        config = LocalConfig.model_validate({"stage": STAGE, "targets": [
            {"name": "graph-local", "engine": "neo4j", "local": "neo4j"},
            {"name": "pg-local", "engine": "postgres", "local": "postgres18"}]})
        register_targets(aws, config, {"neo4j": neo4j_secret(neo4j_server),
                                       "postgres18": postgres_secret(postgres, "cli_source")})
        deployment = deploy_template(aws, local_template, STAGE)
        (tmp_path / "state.json").write_text(json.dumps({
            "stage": STAGE, "pid": 1, "endpoint_url": aws.endpoint_url, "outputs": deployment.outputs(),
            "function_environment": deployment.extra_environment, "services": {}, "targets": [],
        }))
        yield tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the CLI; returns (exit code, stdout); stderr stays in `run.err`."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    run.err = captured.err  # type: ignore[attr-defined]
    return code, captured.out


def test_backup_create_list_verify_restore_and_audit(local_home: Path, capsys: pytest.CaptureFixture[str],
                                                     postgres: PostgresEndpoint) -> None:
    code, out = run(capsys, "backup", "create", "--target", "pg-local", "--wait", "--format", "json")
    assert code == 0, out
    created = json.loads(out)
    assert created["status"] == "COMPLETED" and created["counts"]["public.notes"] == 300

    code, out = run(capsys, "backup", "list", "--target", "pg-local")
    assert code == 0 and created["backup_id"] in out and "COMPLETED" in out

    code, out = run(capsys, "--format", "json", "backup", "verify", "--target", "pg-local",
                    "--backup-id", created["backup_id"])
    assert code == 0 and json.loads(out)["status"] == "VERIFIED"

    create_database(postgres, "cli_restored", replace=True)
    into = postgres.uri("cli_restored").replace(f":{postgres.password}@", "@")
    code, out = run(capsys, "backup", "restore", "--target", "pg-local", "--backup-id", created["backup_id"],
                    "--into", into, "--password-env", "CLI_TEST_PW")
    assert code == 2 and "CLI_TEST_PW is not set" in run.err
    import os

    os.environ["CLI_TEST_PW"] = postgres.password
    try:
        code, out = run(capsys, "backup", "restore", "--target", "pg-local", "--backup-id", created["backup_id"],
                        "--into", into, "--password-env", "CLI_TEST_PW")
    finally:
        del os.environ["CLI_TEST_PW"]
    assert code == 0, out
    with psycopg.connect(postgres.uri("cli_restored")) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 300

    code, out = run(capsys, "audit", "tail", "--target", "pg-local", "--format", "json")
    entries = json.loads(out)
    assert {(e["operation"], e["step"]) for e in entries} >= {("backup", "start"), ("backup", "finish"),
                                                             ("verify", "finish"), ("restore", "finish")}
    assert any("cli:" in e["actor"] for e in entries if e["operation"] == "backup")


def test_hold_and_release_are_recorded_and_audited(local_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(capsys, "--format", "json", "backup", "create", "--target", "pg-local", "--wait")
    backup_id = json.loads(out)["backup_id"]
    assert run(capsys, "backup", "hold", "--target", "pg-local", "--backup-id", backup_id)[0] == 0
    _, out = run(capsys, "--format", "json", "backup", "list", "--target", "pg-local")
    assert json.loads(out)[0]["hold"] is True
    assert run(capsys, "backup", "release", "--target", "pg-local", "--backup-id", backup_id)[0] == 0
    _, out = run(capsys, "--format", "json", "audit", "tail", "--target", "pg-local")
    assert [e["step"] for e in json.loads(out)][:2] == ["release", "hold"]


def test_health_is_unhealthy_without_backups_and_healthy_with_verified_ones(
        local_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "health", "--target", "pg-local")
    assert code == 1 and "pg-local (postgres): unhealthy" in out and "backup_freshness" in out
    for target in ("graph-local", "pg-local"):
        _, created = run(capsys, "--format", "json", "backup", "create", "--target", target, "--wait")
        backup_id = json.loads(created)["backup_id"]
        assert run(capsys, "backup", "verify", "--target", target, "--backup-id", backup_id)[0] == 0
    code, out = run(capsys, "health")
    assert code == 0, out
    assert "graph-local (neo4j): healthy" in out and "pg-local (postgres): healthy" in out


def test_unknown_target_is_a_clear_error(local_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(capsys, "backup", "create", "--target", "nope", "--wait")
    assert code == 2  # bad input: the function refused it, nothing was touched
    assert "TargetNotFound" in run.err and "unknown target 'nope'" in run.err


def test_without_a_running_local_runtime_the_cli_says_how_to_start_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WARDEN_LOCAL_HOME", str(tmp_path))
    assert cli.main(["backup", "list", "--target", "pg-local"]) == 2
    assert "warden local up" in capsys.readouterr().err


@pytest.mark.parametrize(("uri", "expected"), [
    ("postgresql://app:s%40cret@db.internal:6543/orders?sslmode=verify-full",
     {"engine": "postgres", "host": "db.internal", "port": 6543, "username": "app", "dbname": "orders",
      "sslmode": "verify-full"}),
    ("neo4j+s://ops:pw@graph.internal/movies",
     {"engine": "neo4j", "uri": "neo4j+s://graph.internal:7687", "username": "ops", "database": "movies"}),
])
def test_restore_target_uri_parsing(uri: str, expected: dict[str, Any]) -> None:
    secret = cli.secret_from_uri(uri)
    assert secret.model_dump(exclude={"password"}).items() >= expected.items()


def test_restore_target_uri_of_another_kind_is_refused() -> None:
    from warden.errors import ConfigError

    with pytest.raises(ConfigError, match="postgresql:// or neo4j://"):
        cli.secret_from_uri("mysql://u:p@h/db")


def test_recovery_drill_with_manual_approval_answered_by_the_cli(local_home: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:

    _, out = run(capsys, "--format", "json", "backup", "create", "--target", "pg-local", "--wait")
    backup_id = json.loads(out)["backup_id"]
    assert run(capsys, "backup", "verify", "--target", "pg-local", "--backup-id", backup_id)[0] == 0
    code, out = run(capsys, "--format", "json", "recovery", "start", "--target", "pg-local", "--approval", "manual",
                    "--wait")
    assert code == 0 and json.loads(out)["status"] == "AWAITING_APPROVAL", out
    assert run(capsys, "recovery", "approve", "--target", "pg-local")[0] == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, out = run(capsys, "--format", "json", "recovery", "status", "--target", "pg-local")
        status = json.loads(out)
        if status["finished_at"]:
            break
        time.sleep(0.5)
    assert status["status"] == "RECOVERY_SUCCESS" and status["rto_s"] > 0
    assert status["backup_id"] == backup_id
    code, _ = run(capsys, "recovery", "approve", "--target", "pg-local")
    assert code == 2 and "no recovery of pg-local is waiting" in run.err


def test_prune_dry_run_then_apply(local_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(3):
        assert run(capsys, "backup", "create", "--target", "pg-local", "--wait")[0] == 0
    code, out = run(capsys, "prune", "--target", "pg-local", "--dry-run")
    assert code == 0 and "keep 3, would delete 0" in out and "kept: one of the last 7" in out
    code, out = run(capsys, "--format", "json", "prune", "--target", "pg-local", "--apply")
    assert code == 0 and json.loads(out)["applied"] is True


def test_license_reports_community_as_not_applicable(local_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--format", "json", "license")
    assert code == 0, out
    statuses = {t["target"]: t["status"] for t in json.loads(out)["targets"]}
    assert statuses == {"graph-local": "not_applicable", "pg-local": "not_applicable"}


def test_report_is_written_to_s3_and_to_a_file(local_home: Path, capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    assert run(capsys, "backup", "create", "--target", "pg-local", "--wait")[0] == 0
    code, out = run(capsys, "--format", "json", "report")
    assert code == 0, out
    assert json.loads(out)["key"].startswith("reports/local/")
    code, out = run(capsys, "report", "--output", str(tmp_path / "r.html"))
    assert code == 0 and (tmp_path / "r.html").read_text().lstrip().lower().startswith("<!doctype html")


# -- issue 18: one call runs its operation once ------------------------------------------------

@pytest.fixture
def locked_notes(cli_db: str) -> Iterator[Callable[[float], None]]:
    """`lock(seconds)`: an application transaction holds an exclusive lock on `notes` for that long,
    so a backup (pg_dump waits for the lock) takes at least as long."""
    conns: list[psycopg.Connection[Any]] = []
    timers: list[threading.Timer] = []

    def lock(seconds: float) -> None:
        conn = psycopg.connect(cli_db)
        conn.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
        conns.append(conn)
        timers.append(threading.Timer(seconds, conn.rollback))
        timers[-1].start()

    yield lock
    for timer in timers:
        timer.join()
    for conn in conns:
        conn.close()


def _backup_starts(capsys: pytest.CaptureFixture[str]) -> list[str]:
    _, out = run(capsys, "--format", "json", "audit", "tail", "--target", "pg-local", "--limit", "50")
    return [e["outcome"] for e in json.loads(out) if (e["operation"], e["step"]) == ("backup", "start")]


def test_backup_slower_than_the_functions_read_timeout_runs_once_and_reports_its_outcome(
        local_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        locked_notes: Callable[[float], None]) -> None:
    import boto3
    from botocore.config import Config

    from warden.stores import clients

    # Given the layer's Lambda client gives up on a reply after 2 s (60 s in the layer) and retries,
    # and a backup that takes longer: the table is locked for 5 s
    layer_client = clients.aws_client

    def short_lambda_reads(service: str, region: str | None = None) -> Any:
        if service != "lambda":
            return layer_client(service, region)
        config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=2)
        return boto3.session.Session().client("lambda", region_name=region, config=config)

    short_lambda_reads.cache_clear = layer_client.cache_clear  # type: ignore[attr-defined]
    monkeypatch.setattr(clients, "aws_client", short_lambda_reads)
    locked_notes(5)
    # When the operator waits for the backup
    code, out = run(capsys, "--format", "json", "backup", "create", "--target", "pg-local", "--wait")
    # Then the CLI invoked the function once, waited, and reports the backup it made
    assert code == 0, (out, run.err)
    assert json.loads(out)["status"] == "COMPLETED"
    assert _backup_starts(capsys) == ["ok"]


def test_a_call_slower_than_the_clis_read_timeout_is_not_sent_again(
        local_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        locked_notes: Callable[[float], None]) -> None:
    # Given the CLI waits 2 s for a reply and the backup takes 5 s
    monkeypatch.setenv("WARDEN_CLI_READ_TIMEOUT", "2")
    locked_notes(5)
    # When the operator waits for the backup
    code, _ = run(capsys, "backup", "create", "--target", "pg-local", "--wait")
    # Then the CLI says it did not see the outcome, and the function ran once
    assert code == 1 and "no reply from the backup function within 2 s" in run.err, run.err
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "finish" not in _audit_steps(capsys):
        time.sleep(0.5)
    assert _backup_starts(capsys) == ["ok"]
    assert "finish" in _audit_steps(capsys)


def _audit_steps(capsys: pytest.CaptureFixture[str]) -> list[str]:
    _, out = run(capsys, "--format", "json", "audit", "tail", "--target", "pg-local")
    return [e["step"] for e in json.loads(out) if e["operation"] == "backup"]


# -- issue 18: CLI edges -----------------------------------------------------------------------

def test_audit_tail_refuses_a_limit_below_one(local_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for limit in ("0", "-3"):
        with pytest.raises(SystemExit) as exited:
            cli.main(["audit", "tail", "--target", "pg-local", "--limit", limit])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert f"--limit: must be at least 1, got {limit}" in err and "Traceback" not in err


def test_input_the_function_rejects_is_exit_2(local_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(capsys, "backup", "verify", "--target", "pg-local", "--backup-id", "not-a-backup-id")
    assert code == 2 and "backup_id" in run.err, run.err


def test_recovery_start_refuses_a_target_name_step_functions_would_reject(
        local_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ('pg"local', "pg/local", "../../etc/passwd"):
        code, _ = run(capsys, "recovery", "start", "--target", name)
        assert code == 2 and f"{name!r} is not a valid target name" in run.err, run.err


def test_recovery_start_says_why_step_functions_refused(local_home: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Given a stage whose recovery state machine is gone
    state = json.loads((local_home / "state.json").read_text())
    state["outputs"]["RecoveryStateMachine"] += "-gone"
    (local_home / "state.json").write_text(json.dumps(state))
    code, _ = run(capsys, "recovery", "start", "--target", "pg-local")
    assert code == 1 and "cannot start the recovery of pg-local: StateMachineDoesNotExist" in run.err, run.err


def test_backup_list_and_audit_tail_refuse_an_unknown_target(local_home: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    for command in (("backup", "list"), ("audit", "tail")):
        code, out = run(capsys, *command, "--target", "../../etc/passwd")
        assert code == 2 and out == "", out
        assert "unknown target '../../etc/passwd'" in run.err and "pg-local" in run.err, run.err


def test_output_into_a_closed_pipe_ends_quietly(local_home: Path) -> None:
    import os
    import subprocess
    import sys

    # Given a reader that has gone away (`warden ... | head` after head exits)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "warden_cli.main", "backup", "list", "--target", "pg-local"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(write_end)
    assert done.returncode == 0 and done.stderr == "", done.stderr


# -- issue 18: a rejection keeps its reason ----------------------------------------------------

def test_rejected_recovery_keeps_the_operators_reason_on_the_record_and_in_the_audit(
        local_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(capsys, "--format", "json", "backup", "create", "--target", "pg-local", "--wait")
    backup_id = json.loads(out)["backup_id"]
    assert run(capsys, "backup", "verify", "--target", "pg-local", "--backup-id", backup_id)[0] == 0
    code, out = run(capsys, "--format", "json", "recovery", "start", "--target", "pg-local", "--approval", "manual",
                    "--wait")
    assert code == 0 and json.loads(out)["status"] == "AWAITING_APPROVAL", out
    # When the operator rejects it with a reason
    assert run(capsys, "recovery", "reject", "--target", "pg-local", "--reason", "staging counts look wrong")[0] == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, out = run(capsys, "--format", "json", "recovery", "status", "--target", "pg-local")
        status = json.loads(out)
        if status["finished_at"]:
            break
        time.sleep(0.5)
    # Then the record and the audit say who rejected it and why
    assert status["status"] == "RECOVERY_FAILED"
    assert "Rejected" in status["error"] and "cli:" in status["error"], status["error"]
    assert "staging counts look wrong" in status["error"], status["error"]
    while time.monotonic() < deadline:  # Rollback audits last, after it cleans up staging
        _, out = run(capsys, "--format", "json", "audit", "tail", "--target", "pg-local")
        entries = {e["step"]: e for e in json.loads(out) if e["operation"] == "recovery"}
        if "rollback" in entries:
            break
        time.sleep(0.5)
    assert entries["reject"]["details"]["reason"] == "staging counts look wrong"
    assert "staging counts look wrong" in entries["rollback"]["details"]["error"]


# -- issue 17: views that scale ----------------------------------------------------------------

FLEET = [
    {"name": "pay-api", "engine": "postgres", "local": "postgres18", "group": "payments", "tags": {"tier": "gold"}},
    {"name": "pay-ledger", "engine": "postgres", "local": "postgres18", "group": "payments",
     "tags": {"tier": "silver"}},
    {"name": "core-users", "engine": "postgres", "local": "postgres18", "group": "core", "tags": {"tier": "gold"}},
]


@pytest.fixture
def fleet_home(local_home: Path, postgres: PostgresEndpoint, neo4j_server: Any) -> Path:
    """The local stage with three more PostgreSQL targets (on the same database) in two groups."""
    import boto3

    endpoint = json.loads((local_home / "state.json").read_text())["endpoint_url"]

    class Running:  # the moto server local_home started, as register_targets reaches it
        def client(self, service: str) -> Any:
            return boto3.client(service, endpoint_url=endpoint, region_name="eu-west-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing")

    config = LocalConfig.model_validate({"stage": STAGE, "targets": FLEET})
    register_targets(Running(), config, {"postgres18": postgres_secret(postgres, "cli_source")})  # type: ignore[arg-type]
    return local_home


def test_health_summary_filters_by_engine_group_and_tag_and_lists_the_worst_first(
        fleet_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given backups, verified, of pay-api only: the other targets fail backup_freshness
    _, created = run(capsys, "--format", "json", "backup", "create", "--target", "pay-api", "--wait")
    backup_id = json.loads(created)["backup_id"]
    assert run(capsys, "backup", "verify", "--target", "pay-api", "--backup-id", backup_id)[0] == 0
    # When the operator asks for the payments group's summary
    code, out = run(capsys, "--format", "json", "health", "--summary", "--group", "payments")
    summary = json.loads(out)
    # Then only its two targets, worst first, the failing check named, counts on top
    assert code == 1, out
    assert [t["target"] for t in summary["targets"]] == ["pay-ledger", "pay-api"]
    assert summary["targets"][0]["status"] == "unhealthy" and "backup_freshness" in summary["targets"][0]["failing"]
    assert summary["targets"][1]["status"] == "healthy" and summary["counts"]["healthy"] == 1
    code, out = run(capsys, "health", "--summary", "--group", "payments")
    lines = out.splitlines()
    assert lines[0].startswith("stage ") and "1 unhealthy, 0 degraded, 1 healthy" in lines[0], out
    assert lines[1].split()[:2] == ["unhealthy", "pay-ledger"] and "backup_freshness" in lines[1]
    # and tags (all of them) and engine select too
    _, out = run(capsys, "--format", "json", "health", "--summary", "--tag", "tier=gold")
    assert sorted(t["target"] for t in json.loads(out)["targets"]) == ["core-users", "pay-api"]
    _, out = run(capsys, "--format", "json", "health", "--summary", "--tag", "tier=gold", "--group", "core")
    assert [t["target"] for t in json.loads(out)["targets"]] == ["core-users"]
    _, out = run(capsys, "--format", "json", "health", "--summary", "--engine", "neo4j")
    assert [t["target"] for t in json.loads(out)["targets"]] == ["graph-local"]


def test_a_filtered_health_view_checks_only_the_targets_it_selects(
        fleet_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def health_checks(target: str) -> list[dict[str, Any]]:
        _, out = run(capsys, "--format", "json", "audit", "tail", "--target", target)
        return [e for e in json.loads(out) if e["operation"] == "health"]

    # When the operator asks for the gold tier of the core group (one target of five)
    _, out = run(capsys, "--format", "json", "health", "--summary", "--group", "core", "--tag", "tier=gold")
    assert [t["target"] for t in json.loads(out)["targets"]] == ["core-users"], out
    # Then the health function checked that target alone, on the operator's behalf
    (checked,) = health_checks("core-users")
    assert checked["actor"].endswith(f"for {cli.actor()}"), checked
    for other in ("pay-api", "pay-ledger", "pg-local", "graph-local"):
        assert health_checks(other) == [], other
    # And a view of a group checks each of its targets once
    run(capsys, "health", "--group", "payments")
    assert [len(health_checks(t)) for t in ("pay-api", "pay-ledger", "core-users", "pg-local")] == [1, 1, 1, 0]


def test_backup_list_across_targets_puts_those_without_a_good_backup_first(
        fleet_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "backup", "create", "--target", "pay-api", "--wait")[0] == 0
    code, out = run(capsys, "--format", "json", "backup", "list", "--group", "payments")
    rows = json.loads(out)
    assert code == 0 and [r["target"] for r in rows] == ["pay-ledger", "pay-api"]
    assert rows[0]["backup_id"] is None and not rows[0]["good_in_last_day"]
    assert rows[1]["status"] == "COMPLETED" and rows[1]["good_in_last_day"] and rows[1]["size_bytes"] > 0
    code, out = run(capsys, "backup", "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 1 + 5 + 1, out  # header, the five targets, the count
    assert lines[-2].split()[0] == "pay-api" and lines[-1] == "4 of 5 target(s) without a good backup in the last day"


@pytest.mark.parametrize("argv", [("health", "--engine", "mysql"), ("backup", "list", "--engine", "mysql"),
                                  ("health", "--tag", "tier"), ("backup", "list", "--tag", "=gold")])
def test_unknown_engine_or_bad_tag_syntax_is_exit_2(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(list(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert ("invalid choice: 'mysql'" in err or "must be key=value" in err) and "Traceback" not in err


def test_filters_that_match_nothing_or_come_with_a_target_are_exit_2(
        fleet_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "health", "--group", "nobody")
    assert code == 2 and out == "" and "no target matches" in run.err  # type: ignore[attr-defined]
    code, _ = run(capsys, "backup", "list", "--target", "pay-api", "--group", "payments")
    assert code == 2 and "drop --target" in run.err  # type: ignore[attr-defined]


def test_backup_create_wait_follows_a_backup_handed_over_to_fargate(
        local_home: Path, postgres: PostgresEndpoint, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    # Given a target that runs its backups on Fargate (the local runtime runs the task as a process)
    endpoint = json.loads((local_home / "state.json").read_text())["endpoint_url"]

    class Running:
        def client(self, service: str) -> Any:
            return boto3.client(service, endpoint_url=endpoint, region_name="eu-west-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing")

    config = LocalConfig.model_validate({"stage": STAGE, "targets": [
        {"name": "big-pg", "engine": "postgres", "local": "postgres18", "runner": "fargate"}]})
    register_targets(Running(), config, {"postgres18": postgres_secret(postgres, "cli_source")})  # type: ignore[arg-type]
    monkeypatch.setenv("WARDEN_CLI_POLL_S", "0.5")
    # When the operator backs it up and waits
    code, out = run(capsys, "--format", "json", "backup", "create", "--target", "big-pg", "--wait")
    # Then the CLI followed the task's execution to the record the task wrote
    assert code == 0, (out, run.err)  # type: ignore[attr-defined]
    record = json.loads(out)
    assert record["status"] == "COMPLETED" and record["runner"] == "fargate" and record["size_bytes"] > 0, record
    assert "big-pg: on Fargate" in run.err  # type: ignore[attr-defined]
    # and the listing shows it like any other backup
    code, out = run(capsys, "backup", "list", "--target", "big-pg")
    assert code == 0 and record["backup_id"] in out and "COMPLETED" in out, out
