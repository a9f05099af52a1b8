"""Validated shapes shared by the CDK app, the handlers and the CLI.

Events and configuration are validated at the edge with these models; past the edge, code trusts
them. Every model forbids unknown fields so that a typo in configuration is an error, not a silent
default.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from warden.backup_config import BackupConfig, SnapshotRef, check_backup_method
from warden.health_config import HealthThresholds, LicenseConfig, RequiredSchema
from warden.monitoring_config import InstanceMonitoring, LogMonitoring, check_monitoring
from warden.network_config import NetworkConfig, TlsConfig, network_problems
from warden.ops_config import MaintenanceConfig, RemediationConfig
from warden.protection_config import BackupProtection, protection_problems
from warden.rotation_config import RotationConfig, check_rotation
from warden.schedule_expr import check_schedule

TARGET_NAME = r"^[a-z][a-z0-9-]{0,47}$"


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
        return check_schedule(value)


class RetentionPolicy(_Model):
    """How long backups of a target are kept (see warden.retention). All rules work in UTC.

    A backup is kept when any rule keeps it, except that `max_age_days` is a hard ceiling over the
    keep rules; the ceiling never deletes the newest VERIFIED backup, a backup on hold or the
    `min_keep` newest good backups. Calendar rules count periods that have a good backup
    (restic/borg). Only COMPLETED / VERIFIED backups count towards the rules. See warden.retention.
    """

    keep_last: Annotated[int, Field(ge=0)] = 7
    keep_daily: Annotated[int, Field(ge=0)] = 7
    keep_weekly: Annotated[int, Field(ge=0)] = 4
    keep_monthly: Annotated[int, Field(ge=0)] = 12
    keep_yearly: Annotated[int, Field(ge=0)] = 0
    max_age_days: Annotated[int, Field(ge=1)] | None = None
    min_keep: Annotated[int, Field(ge=1)] = 1
    failed_retention_days: Annotated[int, Field(ge=0)] = 7
    # Bytes of backups a target may keep in S3; over it, the storage alarm fires (and, when enabled,
    # remediation prunes). None: no budget.
    storage_budget_gb: Annotated[float, Field(gt=0)] | None = None


class RecoveryConfig(_Model):
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


_SECRET_NAME = r"^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:)?[A-Za-z0-9/_+=.@-]+$"  # noqa: S105 - a name pattern


class RdsRef(_Model):
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


class Target(_Model):
    """One protected database, as configured per stage.

    Credentials are never part of a target: `secret_name` names the Secrets Manager secret that
    holds them (see `DatabaseSecret`).
    """

    name: Annotated[str, Field(pattern=TARGET_NAME)]
    engine: Engine
    # A Secrets Manager name (letters, digits and /_+=.@-) or a secret's ARN; a target without one has
    # no credentials.
    secret_name: Annotated[str, Field(min_length=1, max_length=512, pattern=_SECRET_NAME)]
    description: str = ""
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
    # How it is backed up: the engine's logical method by default, or rds-snapshot (warden.backup_config).
    backup: BackupConfig = BackupConfig()
    # Instance alarms (EC2 instances of a self-hosted target; thresholds of an RDS one) and log
    # monitoring (warden.monitoring_config, docs/monitoring.md).
    instances: InstanceMonitoring | None = None
    logs: LogMonitoring | None = None
    # TLS to the database: required unless explicitly turned off here (warden.network_config, README).
    tls: TlsConfig = TlsConfig()
    # Secrets Manager rotation of the target's credentials (warden.rotation_config, README).
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
    def _monitoring_fits_the_target(self) -> Target:
        check_monitoring(self.name, self.engine.value, self.rds is not None, self.instances, self.logs)
        return self


class StageConfig(_Model):
    """A deployable stage: where it goes and what it protects."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,15}$")]
    account: Annotated[str, Field(pattern=r"^\d{12}$")] | None = None
    region: str = "eu-west-1"
    log_retention_days: int = 30
    notification_emails: list[str] = []
    targets: list[Target] = []
    # Object Lock and cross-region replication of the backup bucket (warden.protection_config).
    backup_protection: BackupProtection = BackupProtection()
    # The VPC the database-facing functions run in, and its endpoints (warden.network_config).
    network: NetworkConfig | None = None

    @model_validator(mode="after")
    def _target_names_unique(self) -> StageConfig:
        names = [t.name for t in self.targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage {self.name!r}: target names must be unique, repeated: {dupes}")
        return self

    @model_validator(mode="after")
    def _protection_fits_the_stage(self) -> StageConfig:
        problems = protection_problems(self.backup_protection, stage=self.name, region=self.region,
                                       policies=[(t.name, t.retention) for t in self.targets])
        if problems:
            raise ValueError(f"stage {self.name!r}: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _network_fits_the_stage(self) -> StageConfig:
        problems = network_problems(self.network, account=self.account)
        if problems:
            raise ValueError(f"stage {self.name!r}: " + "; ".join(problems))
        return self


class PostgresSecret(_Model):
    """The Secrets Manager secret of a PostgreSQL target (the RDS secret layout)."""

    engine: Literal["postgres"] = "postgres"
    host: str
    port: int = 5432
    username: str
    password: SecretStr
    dbname: str = "postgres"
    # TLS by default, verified against the RDS CA bundle shipped in the layer (warden.tls); a
    # weaker mode needs the target's explicit `tls: {"required": false}`.
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "verify-full"
    # The CA certificate(s) a verify-* mode trusts: a file path; default the RDS global bundle.
    sslrootcert: str | None = None

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
    server_version: str | None = None  # as the server reported it (check `server_version` judges it)


class HealthReport(_Model):
    stage: str
    status: HealthStatus
    targets: list[TargetHealth]


class ScheduledRequest(_Model):
    """Fields every schedule sends (infra/schedules.py), accepted by every scheduled function."""

    trigger: Literal["schedule", "manual", "cli", "remediation", "recovery", "backup"] = "manual"
    scheduled_time: str | None = None
    requested_by: Annotated[str, Field(max_length=200)] | None = None  # e.g. "cli:alice", audited


class HealthRequest(ScheduledRequest):
    """Input of the health function: one target, or every target of the stage when omitted."""

    target: Annotated[str, Field(pattern=TARGET_NAME)] | None = None


class BackupStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    VERIFIED = "VERIFIED"
    CORRUPT = "CORRUPT"
    EXPIRED = "EXPIRED"


GOOD_BACKUP = frozenset({BackupStatus.COMPLETED, BackupStatus.VERIFIED})


class BackupRecord(BaseModel):
    """One backup in the catalog. `backup_id` sorts by time: `YYYYMMDDTHHMMSSZ-<8 hex>`."""

    model_config = ConfigDict(extra="forbid")

    target: str
    backup_id: Annotated[str, Field(pattern=r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")]
    engine: Engine
    method: str
    status: BackupStatus
    started_at: datetime
    finished_at: datetime | None = None
    data_key: str | None = None
    manifest_key: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    counts: dict[str, int] = {}
    server_version: str | None = None
    format_version: str | None = None
    consistency: str | None = None
    duration_s: float | None = None
    error: str | None = None
    hold: bool = False
    verified_at: datetime | None = None
    upload_id: str | None = None
    trigger: str = "schedule"
    actor: str = ""
    # Evidence of the newest restore drill of this backup: when, RTO, validated counts, execution.
    last_drill: dict[str, Any] | None = None
    # Cross-region replica of the data and manifest (warden.replication): None until checked.
    replica: Literal["COMPLETED", "PENDING", "FAILED"] | None = None
    replica_checked_at: datetime | None = None
    # method rds-snapshot: the RDS snapshot this backup is (RDS keeps the data; see warden.snapshot_backup).
    snapshot: SnapshotRef | None = None


class BackupRequest(ScheduledRequest):
    """Input of the backup function. The schedule sends `scheduled_time`
    (`<aws.scheduler.scheduled-time>`): a retried delivery of the same scheduled event carries the
    same value, so it never produces a second backup."""

    target: Annotated[str, Field(pattern=TARGET_NAME)]


class VerifyRequest(ScheduledRequest):
    """Input of the verify function: one backup, or (no `backup_id`) the newest unverified ones."""

    target: Annotated[str, Field(pattern=TARGET_NAME)]
    backup_id: Annotated[str, Field(pattern=r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")] | None = None


class RecoveryStatus(StrEnum):
    NOT_RECOVERING = "NOT_RECOVERING"
    RECOVERING = "RECOVERING"
    VALIDATION = "VALIDATION"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    RECOVERY_SUCCESS = "RECOVERY_SUCCESS"
    PROMOTED = "PROMOTED"
    RECOVERY_FAILED = "RECOVERY_FAILED"


class RecoveryInput(_Model):
    """What an operator (console, CLI) or the drill schedule gives the Recovery state machine."""

    target: Annotated[str, Field(pattern=TARGET_NAME)]
    backup_id: Annotated[str, Field(pattern=r"^(latest|\d{8}T\d{6}Z-[0-9a-f]{8})$")] = "latest"
    promotion: Literal["swap", "in-place", "none"] = "none"
    approval: Literal["auto", "manual"] = "auto"
    requested_by: Annotated[str, Field(max_length=200)] | None = None
    # Where the backup is read from: the stage's bucket, or its replica in the second region.
    source: Literal["primary", "replica"] = "primary"


class PruneRequest(ScheduledRequest):
    """Input of the prune function. Scheduled runs apply; anything else is a dry run unless `apply`."""

    target: Annotated[str, Field(pattern=TARGET_NAME)]
    apply: bool | None = None

    @property
    def applies(self) -> bool:
        return self.apply if self.apply is not None else self.trigger == "schedule"
