"""What each function's event may say: one request model per function, matching events/*.json.
Bad input fails here (`parse` raises `BadRequest`), before anything is touched."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from warden.config.base import GROUP_NAME, TAG_KEY, TAG_VALUE, TARGET_NAME, Model
from warden.errors import BadRequest

Request = TypeVar("Request", bound=BaseModel)


def parse(model: type[Request], event: Any) -> Request:
    """The `model` a function's `event` says, or `BadRequest` naming each wrong field and what it
    expected. Every handler parses its event here, before anything is touched; no event is `{}`."""
    if event is None:
        event = {}
    if not isinstance(event, dict):
        raise BadRequest(f"bad {model.__name__}: expected a JSON object, got {_json_kind(event)}")
    try:
        return model.model_validate(event)
    except ValidationError as err:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'event'}: {_expected(e)}" for e in err.errors()]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise BadRequest(f"bad {model.__name__}: {'; '.join(problems[:3])}{more}") from None


def _expected(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "not a field of this request"
    return str(error["msg"]).removeprefix("Value error, ")[:160]


def _json_kind(value: Any) -> str:
    kinds = {str: "a string", list: "an array", bool: "a boolean", int: "a number", float: "a number"}
    return next((kind for python, kind in kinds.items() if isinstance(value, python)), type(value).__name__)


class ScheduledRequest(Model):
    """Fields every schedule sends (infra/schedules.py), accepted by every scheduled function."""

    trigger: Literal["schedule", "manual", "cli", "remediation", "recovery", "backup"] = "manual"
    scheduled_time: str | None = None
    requested_by: Annotated[str, Field(max_length=200)] | None = None  # e.g. "cli:alice", audited


class HealthRequest(ScheduledRequest):
    """Input of the health function: one `target`, the named `targets` (an operator's filtered view),
    or every target of the stage when both are omitted."""

    target: Annotated[str, Field(pattern=TARGET_NAME)] | None = None
    targets: Annotated[list[Annotated[str, Field(pattern=TARGET_NAME)]], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_selection(self) -> HealthRequest:
        if self.target is not None and self.targets is not None:
            raise ValueError("give target or targets, not both")
        return self

    @property
    def names(self) -> list[str] | None:
        """The targets asked for, each once, or None for every target of the stage."""
        if self.targets is not None:
            return list(dict.fromkeys(self.targets))
        return [self.target] if self.target is not None else None


class BackupRequest(ScheduledRequest):
    """Input of the backup function. The schedule sends `scheduled_time`
    (`<aws.scheduler.scheduled-time>`): a retried delivery of the same scheduled event carries the
    same value, so it never produces a second backup. `runner` overrides the runner the backup
    function would choose (warden.runner, docs/fargate.md)."""

    target: Annotated[str, Field(pattern=TARGET_NAME)]
    runner: Literal["lambda", "fargate"] | None = None


# A Step Functions execution name: 1 to 80 characters, none of whitespace, brackets, wildcards or these.
EXECUTION_NAME = r"^[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/]{1,80}$"


class AbandonTaskRequest(Model):
    """What the Task state machine's Abandon step sends the backup function when a task run failed,
    timed out or stopped heartbeating: stop the execution's task, and clean up after it
    (docs/fargate.md). `error` is the state's caught error, `{"Error": ..., "Cause": ...}`; `job` the
    run's job (the execution input's; an execution started before maintenance ran on Fargate has none)."""

    action: Literal["abandon"]
    target: Annotated[str, Field(pattern=TARGET_NAME)]
    execution: Annotated[str, Field(pattern=EXECUTION_NAME)]
    job: Literal["backup", "maintenance"] = "backup"
    error: dict[str, Any] = {}

    @property
    def error_name(self) -> str | None:
        name = self.error.get("Error")
        return str(name) if name else None

    @property
    def error_text(self) -> str:
        cause = str(self.error.get("Cause") or "")[:2000]
        return f"{self.error_name or 'unknown error'}" + (f": {cause}" if cause else "")


class VerifyRequest(ScheduledRequest):
    """Input of the verify function: one backup, or (no `backup_id`) the newest unverified ones."""

    target: Annotated[str, Field(pattern=TARGET_NAME)]
    backup_id: Annotated[str, Field(pattern=r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")] | None = None


class FleetInput(Model):
    """A Fleet state machine's execution input: the stage's schedule sends `trigger` and
    `scheduled_time`; an operator may select targets by name, group or tags (all must match)."""

    trigger: Literal["schedule", "manual", "cli"] = "manual"
    scheduled_time: str | None = None
    requested_by: Annotated[str, Field(max_length=200)] | None = None
    targets: list[Annotated[str, Field(pattern=TARGET_NAME)]] | None = None
    group: Annotated[str, Field(pattern=GROUP_NAME)] | None = None
    tags: dict[Annotated[str, Field(pattern=TAG_KEY)], Annotated[str, Field(pattern=TAG_VALUE)]] = {}


class FleetStep(Model):
    """What a Fleet state machine sends the fleet function (infra/fleet.py): `plan` with the job's
    fleet configuration and the execution input, `delay` with an item's `not_before`, `summarise`
    with the plan and the Map's per-target outcomes."""

    step: Literal["plan", "delay", "summarise"]
    job: Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]
    config: dict[str, Any] | None = None  # warden.config.fleet.FleetJob
    input: Any = None
    not_before: str | None = None
    plan: dict[str, Any] | None = None
    results: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _has_what_the_step_needs(self) -> FleetStep:
        if self.step == "plan" and self.config is None:
            raise ValueError("step 'plan' needs the job's fleet config")
        if self.step == "summarise" and (self.plan is None or self.results is None):
            raise ValueError("step 'summarise' needs the plan and the results")
        return self


class RecoveryInput(Model):
    """What an operator (console, CLI) or the drill schedule gives the Recovery state machine."""

    target: Annotated[str, Field(pattern=TARGET_NAME)]
    backup_id: Annotated[str, Field(pattern=r"^(latest|\d{8}T\d{6}Z-[0-9a-f]{8})$")] = "latest"
    promotion: Literal["swap", "in-place", "none"] = "none"
    approval: Literal["auto", "manual"] = "auto"
    requested_by: Annotated[str, Field(max_length=200)] | None = None
    # Where the backup is read from: the stage's bucket, or its replica in the second region.
    source: Literal["primary", "replica"] = "primary"


RecoveryStepName = Literal["preflight", "restore", "validate", "request_approval", "promote", "finish", "rollback"]


class RecoveryStep(Model):
    """What the Recovery state machine sends the recovery function (infra/recovery.py): `preflight`
    with the execution's `input`; every later step with the `plan` Preflight made."""

    step: RecoveryStepName
    input: Any = None  # the operator's RecoveryInput, validated by Preflight (RecoveryRefused)
    execution: str = ""
    plan: dict[str, Any] | None = None
    task_token: Annotated[str, Field(min_length=1)] | None = None  # request_approval
    error: Any = None  # rollback: what failed

    @model_validator(mode="after")
    def _has_what_the_step_needs(self) -> RecoveryStep:
        if self.step != "preflight" and self.plan is None:
            raise ValueError(f"step {self.step!r} needs the plan Preflight made")
        if self.step == "request_approval" and self.task_token is None:
            raise ValueError("step 'request_approval' needs a task_token")
        return self


class PruneRequest(ScheduledRequest):
    """Input of the prune function. Scheduled runs apply; anything else is a dry run unless `apply`."""

    target: Annotated[str, Field(pattern=TARGET_NAME)]
    apply: bool | None = None

    @property
    def applies(self) -> bool:
        return self.apply if self.apply is not None else self.trigger == "schedule"


class LicenseRequest(ScheduledRequest):
    """Input of the license_check function: one target, or every target of the stage when omitted."""

    target: Annotated[str, Field(pattern=TARGET_NAME)] | None = None


class MaintenanceRequest(ScheduledRequest):
    """Input of the maintenance function: the due tasks of one target, or exactly `tasks`. `runner`
    overrides the runner the function would choose (warden.runner.maintenance_runner_for)."""

    target: Annotated[str, Field(pattern=TARGET_NAME)]
    tasks: list[Task] | None = None
    runner: Literal["lambda", "fargate"] | None = None


class ReportRequest(ScheduledRequest):
    """Input of the report function: the schedule's `scheduled_time` picks the week (the last
    complete ISO week before it); without it, the last complete week before now."""

    @field_validator("scheduled_time")
    @classmethod
    def _is_iso_time(cls, value: str | None) -> str | None:
        if value is not None:
            datetime.fromisoformat(value)  # ValueError -> ValidationError
        return value

    def when(self, default: datetime) -> datetime:
        return _utc(datetime.fromisoformat(self.scheduled_time)) if self.scheduled_time else default


class RotationEvent(BaseModel):
    """What Secrets Manager sends a rotation function: `{"SecretId", "ClientRequestToken", "Step"}`."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)

    secret_id: Annotated[str, Field(alias="SecretId", min_length=1, max_length=2048)]
    token: Annotated[str, Field(alias="ClientRequestToken", min_length=32, max_length=64)]
    step: Annotated[Step, Field(alias="Step")]


class Step(StrEnum):
    CREATE = "createSecret"
    SET = "setSecret"
    TEST = "testSecret"
    FINISH = "finishSecret"


Task = Literal["vacuum", "analyze", "reindex", "neo4j_indexes", "resample"]


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
