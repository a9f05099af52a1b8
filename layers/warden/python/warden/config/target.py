"""One protected database as a stage configures it: engine, secret, schedules, retention, recovery,
thresholds and the rest (each concern's model lives in its own module of warden.config).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from warden.config.backup import BackupConfig, check_backup_method
from warden.config.base import GROUP_NAME, SECRET_NAME, TAG_KEY, TAG_VALUE, TARGET_NAME, Model
from warden.config.fargate import FargateSize
from warden.config.health import HealthThresholds, LicenseConfig, RequiredSchema
from warden.config.monitoring import InstanceMonitoring, LogMonitoring, check_monitoring
from warden.config.network import TlsConfig
from warden.config.operations import MaintenanceConfig, RemediationConfig
from warden.config.retention import RetentionPolicy
from warden.config.rotation import RotationConfig, check_rotation
from warden.config.schedule import check_schedule


class Engine(StrEnum):
    NEO4J = "neo4j"
    POSTGRES = "postgres"


class Schedules(Model):
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
        return check_schedule(value)


class RecoveryConfig(Model):
    """Where a recovery restores before promotion, and how it promotes.

    Staging is either a database on the target's own server (`staging_database`; PostgreSQL, or
    Neo4j Enterprise) or a separate database Warden owns (`staging_secret_name`; required for Neo4j
    Community, which has one user database per server). By default a PostgreSQL target stages in
    `<dbname>_warden_staging` on its own server.
    """

    staging_secret_name: str | None = None
    staging_database: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")] | None = None
    approval_timeout_s: Annotated[int, Field(ge=60, le=7 * 86400)] = 86400
    drill_schedule: str = "cron(0 3 ? * SUN *)"

    @field_validator("drill_schedule")
    @classmethod
    def _drill_is_schedule(cls, value: str) -> str:
        return check_schedule(value)


class RdsRef(Model):
    """The RDS instance or Aurora cluster a PostgreSQL target runs on (exactly one of the two).

    Used by the `rds-snapshot` backup method and by the RDS instance alarms.
    """

    instance_id: Annotated[str, Field(pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")] | None = None
    cluster_id: Annotated[str, Field(pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RdsRef:
        if (self.instance_id is None) == (self.cluster_id is None):
            raise ValueError("rds: give exactly one of instance_id (RDS) or cluster_id (Aurora)")
        return self


class Target(Model):
    """One protected database, as configured per stage.

    Credentials are never part of a target: `secret_name` names the Secrets Manager secret that
    holds them (see `DatabaseSecret`).
    """

    name: Annotated[str, Field(pattern=TARGET_NAME)]
    engine: Engine
    # A Secrets Manager name (letters, digits and /_+=.@-) or a secret's ARN; a target without one has
    # no credentials.
    secret_name: Annotated[str, Field(min_length=1, max_length=512, pattern=SECRET_NAME)]
    description: str = ""
    # The group it belongs to (fleet fan-out, dashboards, the report) and free-form tags (team, tier…).
    group: Annotated[str, Field(pattern=GROUP_NAME)] = "default"
    tags: dict[Annotated[str, Field(pattern=TAG_KEY)], Annotated[str, Field(pattern=TAG_VALUE)]] = {}
    schedules: Schedules = Schedules()
    retention: RetentionPolicy = RetentionPolicy()
    recovery: RecoveryConfig = RecoveryConfig()
    health: HealthThresholds = HealthThresholds()
    required_schema: RequiredSchema = RequiredSchema()
    license: LicenseConfig = LicenseConfig()
    remediation: RemediationConfig = RemediationConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()
    # Where an RDS / Aurora PostgreSQL target runs (rds-snapshot backups, RDS instance alarms).
    rds: RdsRef | None = None
    # How it is backed up: the engine's logical method by default, or rds-snapshot (warden.config.backup).
    backup: BackupConfig = BackupConfig()
    # Where its backup runs: Lambda, an ECS Fargate task, or (auto) whichever fits (warden.runner,
    # docs/fargate.md); `fargate` sizes the task.
    runner: Literal["auto", "lambda", "fargate"] = "auto"
    fargate: FargateSize = FargateSize()
    # Instance alarms (EC2 instances of a self-hosted target; thresholds of an RDS one) and log
    # monitoring (warden.config.monitoring, docs/monitoring.md).
    instances: InstanceMonitoring | None = None
    logs: LogMonitoring | None = None
    # TLS to the database: required unless explicitly turned off here (warden.config.network, README).
    tls: TlsConfig = TlsConfig()
    # Secrets Manager rotation of the target's credentials (warden.config.rotation, README).
    rotation: RotationConfig = RotationConfig()

    @model_validator(mode="after")
    def _rotation_fits_the_target(self) -> Target:
        check_rotation(self.name, self.secret_name, self.rotation)
        return self

    @model_validator(mode="after")
    def _rds_only_for_postgres(self) -> Target:
        if self.rds is not None and self.engine is not Engine.POSTGRES:
            raise ValueError(f"target {self.name!r}: rds is for PostgreSQL targets on RDS / Aurora")
        check_backup_method(self.name, self.engine.value, self.rds is not None, self.backup)
        return self

    @model_validator(mode="after")
    def _runner_fits_the_method(self) -> Target:
        if self.runner == "fargate" and self.backup.method == "rds-snapshot":
            raise ValueError(f"target {self.name!r}: runner fargate runs logical backups; an rds-snapshot "
                             "backup is made by RDS (leave runner out or set it to lambda)")
        return self

    @model_validator(mode="after")
    def _monitoring_fits_the_target(self) -> Target:
        check_monitoring(self.name, self.engine.value, self.rds is not None, self.instances, self.logs)
        return self
