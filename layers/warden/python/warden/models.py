"""Validated shapes shared by the CDK app, the handlers and the CLI.

Events and configuration are validated at the edge with these models; past the edge, code trusts
them. Every model forbids unknown fields so that a typo in configuration is an error, not a silent
default.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

TARGET_NAME = r"^[a-z][a-z0-9-]{0,47}$"
# EventBridge Scheduler expressions: rate(5 minutes), cron(0 2 * * ? *), at(...) is not a schedule.
_SCHEDULE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(\S+( \S+){5}\))$")


class Engine(StrEnum):
    NEO4J = "neo4j"
    POSTGRES = "postgres"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedules(_Model):
    """When each job runs for a target (EventBridge Scheduler expressions, UTC)."""

    backup: str = "cron(0 2 * * ? *)"
    verify: str = "cron(0 4 * * ? *)"
    prune: str = "cron(0 5 * * ? *)"
    health: str = "rate(5 minutes)"
    license_check: str = "cron(0 6 * * ? *)"
    maintenance: str = "cron(0 */6 * * ? *)"

    @field_validator("*")
    @classmethod
    def _is_schedule_expression(cls, value: str) -> str:
        if not _SCHEDULE.match(value):
            raise ValueError(f"not an EventBridge schedule expression: {value!r}")
        return value


class Target(_Model):
    """One protected database, as configured per stage.

    Credentials are never part of a target: `secret_name` names the Secrets Manager secret that
    holds them (see `DatabaseSecret`).
    """

    name: Annotated[str, Field(pattern=TARGET_NAME)]
    engine: Engine
    secret_name: Annotated[str, Field(min_length=1, max_length=512)]
    description: str = ""
    schedules: Schedules = Schedules()


class StageConfig(_Model):
    """A deployable stage: where it goes and what it protects."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,15}$")]
    account: Annotated[str, Field(pattern=r"^\d{12}$")] | None = None
    region: str = "eu-west-1"
    log_retention_days: int = 30
    notification_emails: list[str] = []
    targets: list[Target] = []

    @model_validator(mode="after")
    def _target_names_unique(self) -> StageConfig:
        names = [t.name for t in self.targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage {self.name!r}: target names must be unique, repeated: {dupes}")
        return self


class PostgresSecret(_Model):
    """The Secrets Manager secret of a PostgreSQL target (the RDS secret layout)."""

    engine: Literal["postgres"] = "postgres"
    host: str
    port: int = 5432
    username: str
    password: SecretStr
    dbname: str = "postgres"
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "require"

    model_config = ConfigDict(extra="ignore", frozen=True)


class Neo4jSecret(_Model):
    """The Secrets Manager secret of a Neo4j target."""

    engine: Literal["neo4j"] = "neo4j"
    uri: Annotated[str, Field(pattern=r"^(neo4j|bolt)(\+s|\+ssc)?://")]
    username: str = "neo4j"
    password: SecretStr
    database: str = "neo4j"

    model_config = ConfigDict(extra="ignore", frozen=True)


DatabaseSecret = Annotated[PostgresSecret | Neo4jSecret, Field(discriminator="engine")]


class CheckStatus(StrEnum):
    PASS = "pass"  # noqa: S105 - not a password
    WARN = "warn"
    FAIL = "fail"


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class CheckResult(_Model):
    """One check of one target: what was checked, how it went, how long it took."""

    name: str
    status: CheckStatus
    message: str
    duration_ms: float
    details: dict[str, object] = {}


class TargetHealth(_Model):
    target: str
    engine: Engine
    status: HealthStatus
    checked_at: str
    checks: list[CheckResult]


class HealthReport(_Model):
    stage: str
    status: HealthStatus
    targets: list[TargetHealth]


class HealthRequest(_Model):
    """Input of the health function: one target, or every target of the stage when omitted."""

    target: Annotated[str, Field(pattern=TARGET_NAME)] | None = None
