"""The functions' handlers against moto: what a malformed event, a duplicate scheduled delivery and
a second invocation in the same container come to. No database: the domain calls that would reach
one are replaced."""

from __future__ import annotations

import importlib.util
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from local.aws import LambdaContext, LocalAws
from tests.conftest import load_event
from warden.backup import BackupOutcome
from warden.config.target import Engine, Target
from warden.errors import BadRequest
from warden.models import BackupRecord, BackupStatus
from warden.recovery import Plan
from warden.stores.clients import reset_clients

REPO = Path(__file__).resolve().parents[2]
STAGE = "local"
STATE_TABLE = "warden-local-state"


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    reset_clients()
    with LocalAws() as local_aws:
        yield local_aws
    reset_clients()


@pytest.fixture
def load_handler(monkeypatch: pytest.MonkeyPatch, aws: LocalAws) -> Callable[..., ModuleType]:
    """A fresh import of functions/<job>/handler.py with the environment a function gets (its cold start)."""

    def load(job: str, **env: str) -> ModuleType:
        for name, value in {"WARDEN_STAGE": STAGE, "WARDEN_FUNCTION": job, **env}.items():
            monkeypatch.setenv(name, value)
        spec = importlib.util.spec_from_file_location(f"test_handler_{job}_{uuid.uuid4().hex}",
                                                      REPO / "functions" / job / "handler.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def context(job: str) -> LambdaContext:
    return LambdaContext(function_name=f"warden-{STAGE}-{job}", aws_request_id=str(uuid.uuid4()))


# -- malformed events ---------------------------------------------------------------------------

NOT_AN_OBJECT: list[Any] = ["backup pg-local", ["pg-local"], 42]
# (job, an object with a wrong field, the field the message must name)
WRONG_FIELDS = [
    ("backup", load_event("backup_bad_input"), "trigger"),
    ("backup", {"tagret": "pg-local"}, "tagret"),
    ("health", load_event("health_bad_input"), "target"),
    ("prune", {"target": "pg-local", "apply": "sometimes"}, "apply"),
    ("verify", {"target": "pg-local", "backup_id": "yesterday"}, "backup_id"),
    ("license_check", load_event("license_bad_input"), "target"),
    ("maintenance", load_event("maintenance_bad_input"), "tasks"),
    ("report", load_event("report_bad_input"), "scheduled_time"),
    ("rotate", load_event("rotate_bad_input"), "Step"),
    ("recovery", {"step": "sideways"}, "step"),
    ("recovery", load_event("recovery_bad_input"), "step"),  # the state machine's input, not a step's event
    ("fleet", load_event("fleet_bad_input"), "step"),
    ("fleet", load_event("fleet_plan", input={"group": "Not A Group"}), "group"),
]
JOBS = sorted({job for job, _, _ in WRONG_FIELDS})


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize("event", NOT_AN_OBJECT, ids=["string", "list", "number"])
def test_an_event_that_is_not_an_object_is_a_bad_request_before_anything_is_touched(
        load_handler: Callable[..., ModuleType], job: str, event: Any) -> None:
    handler = load_handler(job)
    with pytest.raises(BadRequest, match=r"expected a JSON object") as raised:
        handler.handler(event, context(job))
    assert "pydantic" not in str(raised.value)


@pytest.mark.parametrize(("job", "event", "field"), WRONG_FIELDS,
                         ids=[f"{job}-{field}" for job, _, field in WRONG_FIELDS])
def test_an_event_with_a_wrong_field_is_a_bad_request_naming_the_field(
        load_handler: Callable[..., ModuleType], job: str, event: dict[str, Any], field: str) -> None:
    # Given no target is configured: anything past the parse would fail another way (TargetNotFound)
    handler = load_handler(job)
    # When the malformed event arrives, Then it fails as a bad request that names the field
    with pytest.raises(BadRequest) as raised:
        handler.handler(event, context(job))
    message = str(raised.value)
    assert field in message
    assert "pydantic" not in message and "For further information" not in message
    assert len(message) < 300


# -- two deliveries of one scheduled backup at once ----------------------------------------------

def test_two_deliveries_of_one_scheduled_backup_at_once_make_one_backup_and_the_second_answers_already_running(
        aws: LocalAws, load_handler: Callable[..., ModuleType], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the stage's state table, one target, and a backup that runs until it is let go
    aws.client("dynamodb").create_table(
        TableName=STATE_TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])
    target = Target(name="pg-local", engine=Engine.POSTGRES, secret_name=f"warden/{STAGE}/pg-local",
                    tls={"required": False})
    aws.client("ssm").put_parameter(Name=f"/warden/{STAGE}/targets/pg-local", Type="String",
                                    Value=json.dumps(target.model_dump(mode="json")))
    started, let_go = threading.Event(), threading.Event()
    backups: list[str] = []

    def slow_backup(*args: Any, **kwargs: Any) -> BackupOutcome:
        backups.append("made")
        started.set()
        assert let_go.wait(30)
        return BackupOutcome(record=BackupRecord(
            target="pg-local", backup_id="20261124T020000Z-0000abcd", engine=Engine.POSTGRES, method="pg_dump",
            status=BackupStatus.COMPLETED, started_at=datetime(2026, 11, 24, 2, tzinfo=UTC), duration_s=1.0,
            size_bytes=10))

    monkeypatch.setattr("warden.backup.run_backup", slow_backup)
    handler = load_handler("backup", WARDEN_STATE_TABLE=STATE_TABLE)
    monkeypatch.setattr(handler, "run_backup", slow_backup, raising=False)
    event = load_event("backup_scheduled", scheduled_time="2026-11-24T02:00:00Z")
    first: dict[str, Any] = {}
    delivery = threading.Thread(target=lambda: first.update(handler.handler(event, context("backup"))))
    # When the same scheduled event is delivered twice at once
    delivery.start()
    try:
        assert started.wait(30)
        second = handler.handler(dict(event), context("backup"))
    finally:
        let_go.set()
        delivery.join(30)
    # Then one backup is made, and the second delivery answers "already running" (no function error)
    assert backups == ["made"]
    assert first["status"] == "COMPLETED"
    assert second["status"] == "already running" and second["target"] == "pg-local"


# -- log keys of one invocation stay in it -------------------------------------------------------

def test_a_recovery_step_logs_no_target_or_backup_of_an_earlier_invocation(
        load_handler: Callable[..., ModuleType], monkeypatch: pytest.MonkeyPatch) -> None:
    handler = load_handler("recovery")
    plan = Plan(target="pg-local", backup_id="20261124T020000Z-0000abcd", promotion="swap", approval="auto",
                execution="exec-1", staging={"kind": "database", "name": "pg_local_staging"})
    keys_seen: list[dict[str, Any]] = []

    def restore(*args: Any, **kwargs: Any) -> dict[str, Any]:
        keys_seen.append(dict(handler.logger.get_current_keys()))
        return {"restored": True}

    def preflight(*args: Any, **kwargs: Any) -> Plan:
        keys_seen.append(dict(handler.logger.get_current_keys()))
        return plan

    monkeypatch.setattr("warden.recovery.restore", restore)
    monkeypatch.setattr("warden.recovery.preflight", preflight)
    # Given a restore step ran in this container for one target and backup
    handler.handler({"step": "restore", "plan": plan.as_dict()}, context("recovery"))
    # When the next invocation is another execution's preflight
    handler.handler({"step": "preflight", "input": {"target": "graph-local"}, "execution": "exec-2"},
                    context("recovery"))
    # Then its logs carry its own step, and no target or backup id of the earlier one
    during_restore, during_preflight = keys_seen
    assert during_restore["target"] == "pg-local" and during_restore["backup_id"] == plan.backup_id
    assert during_preflight["step"] == "preflight"
    assert "target" not in during_preflight and "backup_id" not in during_preflight


# -- stage-level counts carry the stage ----------------------------------------------------------

def _fakes(job: str) -> dict[str, Any]:
    """What the job's domain call returns here instead of reaching a database, S3 or SNS."""
    from warden.license import LicenseReport
    from warden.maintenance import MaintenanceReport, TaskResult
    from warden.models import HealthReport, HealthStatus
    from warden.prune import PruneReport
    from warden.remediation import Remediation
    from warden.rotation import StepResult

    fakes: dict[str, dict[str, Any]] = {
        "health": {"check_targets": lambda stage, targets, **_: HealthReport(stage=stage, status=HealthStatus.HEALTHY,
                                                                              targets=[]),
                   "record_health": lambda *a, **k: None},
        "license_check": {"check_licenses": lambda stage, targets: LicenseReport(stage=stage, status="ok",
                                                                                   targets=[])},
        "prune": {"run_prune": lambda *a, **k: PruneReport(target="pg-local", applied=True, decisions=[])},
        "maintenance": {"run_maintenance": lambda *a, **k: MaintenanceReport(
            target="pg-local", tasks=[TaskResult(task="analyze", duration_s=0.1, summary="analyzed")],
            duration_s=0.1)},
        "remediate": {"remediate": lambda *a, **k: Remediation(outcome="dry-run", why="test", target="pg-local",
                                                               action="cancel_long_queries")},
        "report": {"run_report": lambda *a, **k: {"key": "reports/local/2026-W47.html", "summary": ""}},
        "rotate": {"target_of_secret": lambda targets, secret: targets[0],
                   "rotate_step": lambda target, secret, token, step: StepResult(
                       step=step, target=target.name, version=token, outcome="done", username="warden"),
                   "audit": lambda *a, **k: None},
    }
    return fakes[job]


STAGE_COUNT_EVENTS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "health": ({"target": "pg-local"}, {"TargetsChecked"}),
    "license_check": ({"target": "pg-local"}, {"LicensesChecked"}),
    "prune": ({"target": "pg-local", "trigger": "schedule"},
              {"BackupsKept", "BackupsDeleted", "BytesFreed", "PruneFailures"}),
    "maintenance": ({"target": "pg-local", "tasks": ["analyze"]}, {"MaintenanceDuration", "MaintenanceErrors"}),
    "remediate": ({}, {"RemediationActions"}),
    "report": ({}, {"ReportsPublished"}),
    "rotate": ({"SecretId": "warden/local/pg-local", "ClientRequestToken": "a" * 32, "Step": "finishSecret"},
               {"CredentialsRotated"}),
}


@pytest.mark.parametrize("job", sorted(STAGE_COUNT_EVENTS))
def test_a_functions_counts_carry_the_stage_so_two_stages_in_one_account_never_share_them(
        aws: LocalAws, load_handler: Callable[..., ModuleType], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], job: str) -> None:
    # Given one target, and the job's domain call answering without a database
    target = Target(name="pg-local", engine=Engine.POSTGRES, secret_name=f"warden/{STAGE}/pg-local")
    aws.client("ssm").put_parameter(Name=f"/warden/{STAGE}/targets/pg-local", Type="String",
                                    Value=json.dumps(target.model_dump(mode="json")))
    handler = load_handler(job)
    for name, fake in _fakes(job).items():
        monkeypatch.setattr(handler, name, fake)
    event, counts = STAGE_COUNT_EVENTS[job]
    capsys.readouterr()
    # When the function runs
    handler.handler(event, context(job))
    # Then each of its counts is sent with the Stage dimension, valued the function's stage
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    sent = {m["Name"]: (tuple(d), e.get("Stage")) for e in emf for block in e["_aws"]["CloudWatchMetrics"]
            for m in block["Metrics"] for d in block["Dimensions"]}
    assert counts <= set(sent), sent
    for name in counts:
        dims, stage = sent[name]
        assert {"Stage", "service"} <= set(dims) and stage == STAGE, (name, dims)
