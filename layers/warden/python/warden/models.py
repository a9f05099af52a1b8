"""The records Warden keeps and reports: a backup (BackupRecord and its status), a health report,
an audit entry, a recovery's state. What a stage or target may say is `warden.config`; what a
function's event may say is `warden.events`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from warden.config.backup import SnapshotRef
from warden.config.base import Model
from warden.config.target import Engine


class CheckStatus(StrEnum):
    PASS = "pass"  # noqa: S105 - not a password
    WARN = "warn"
    FAIL = "fail"


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class CheckResult(Model):
    """One check of one target: what was checked, how it went, how long it took."""

    name: str
    status: CheckStatus
    message: str
    duration_ms: float
    details: dict[str, object] = {}


class TargetHealth(Model):
    target: str
    engine: Engine
    status: HealthStatus
    checked_at: str
    checks: list[CheckResult]
    server_version: str | None = None  # as the server reported it (check `server_version` judges it)


class HealthReport(Model):
    stage: str
    status: HealthStatus
    targets: list[TargetHealth]






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

    model_config = ConfigDict(extra="forbid", defer_build=True)

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
    # The manifest's own SHA-256 and the S3 version ids of the data and the manifest the backup wrote:
    # verify, restore and recovery read exactly those versions. None on records written before.
    manifest_sha256: str | None = None
    data_version_id: str | None = None
    manifest_version_id: str | None = None
    counts: dict[str, int] = {}
    server_version: str | None = None
    format_version: str | None = None
    consistency: str | None = None
    duration_s: float | None = None
    error: str | None = None
    warnings: list[str] = []  # what a good backup should tell (e.g. an index FAILED in the source)
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
    # Where the backup ran ("lambda", "fargate"; None on records written before), and, while it runs,
    # how far it got: {"bytes", "rate_bytes_s", "eta_s", "updated_at"} (warden.backup).
    runner: str | None = None
    progress: dict[str, Any] | None = None






class RecoveryStatus(StrEnum):
    NOT_RECOVERING = "NOT_RECOVERING"
    RECOVERING = "RECOVERING"
    VALIDATION = "VALIDATION"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    RECOVERY_SUCCESS = "RECOVERY_SUCCESS"
    PROMOTED = "PROMOTED"
    RECOVERY_FAILED = "RECOVERY_FAILED"


class AuditEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    target: str
    at: datetime
    operation: str  # "backup", "verify", "restore", "prune", ...
    step: str  # "start", "finish", "fail", "delete", ...
    outcome: str  # "ok", "failed", "refused", "skipped", ...
    actor: str  # "function:<name>", "execution:<arn>", "cli:<user>"
    backup_id: str | None = None
    details: dict[str, Any] = {}


class RecoveryState(BaseModel):
    """The target's recovery record, as `warden recovery status` shows it."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    target: str
    status: RecoveryStatus = RecoveryStatus.NOT_RECOVERING
    execution: str | None = None
    backup_id: str | None = None
    promotion: str | None = None
    approval: str | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    progress: list[str] = []
    validation_errors: list[str] = []
    error: str | None = None
    safety_backup_id: str | None = None
    previous_database: str | None = None
    previous_active: str | None = None
    task_token: str | None = None
    rto_s: float | None = None
