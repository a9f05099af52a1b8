"""Runtime settings of a function, read from its environment once, through a model.

Library code never touches `os.environ`: each handler module calls `Settings.from_env()` once, at
import (the cold start), and passes the result down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from . import names  # relative, so mypy (which sees the layer as layers.warden.python.warden) reads the literals


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    stage: str = Field(alias=names.ENV_STAGE)
    function: str = Field(default="cli", alias=names.ENV_FUNCTION)
    catalog_table: str | None = Field(default=None, alias=names.ENV_CATALOG_TABLE)
    audit_table: str | None = Field(default=None, alias=names.ENV_AUDIT_TABLE)
    state_table: str | None = Field(default=None, alias=names.ENV_STATE_TABLE)
    bucket: str | None = Field(default=None, alias=names.ENV_BUCKET)
    topic_arn: str | None = Field(default=None, alias=names.ENV_TOPIC_ARN)
    kms_key_id: str | None = Field(default=None, alias=names.ENV_KMS_KEY_ID)
    # Where the TLS-capable pg_dump / pg_restore live (see docs/postgres-tools.md); PATH otherwise.
    pg_bin_dir: str | None = Field(default=None, alias=names.ENV_PG_BIN_DIR)
    # Long jobs on ECS Fargate (docs/fargate.md): where the backup function hands a backup over, and
    # the cluster whose tasks the abandon action stops; None on a stage without Fargate.
    task_state_machine_arn: str | None = Field(default=None, alias=names.ENV_TASK_STATE_MACHINE_ARN)
    task_cluster: str | None = Field(default=None, alias=names.ENV_TASK_CLUSTER)
    # A task run's Step Functions task token (set per run by RunTask's override); never logged.
    task_token: str | None = Field(default=None, alias=names.ENV_TASK_TOKEN, repr=False)
    # A task run's execution name, recorded on the lease: the execution's Abandon step cleans up only its own run.
    task_execution: str | None = Field(default=None, alias=names.ENV_TASK_EXECUTION)
    # A task run's lease TTL (None: warden.backup.BACKUP_LEASE_S), renewed every quarter of it.
    task_lease_ttl_s: float | None = Field(default=None, gt=0, alias=names.ENV_TASK_LEASE_TTL_S)
    # How often a running backup records its progress on its RUNNING record.
    progress_interval_s: float = Field(default=5.0, gt=0, alias=names.ENV_PROGRESS_INTERVAL_S)
    # Caps the backup function's Lambda budget at this many seconds (tests: a backup that does not fit).
    lambda_budget_s: float | None = Field(default=None, gt=0, alias=names.ENV_LAMBDA_BUDGET_S)

    @property
    def targets_path(self) -> str:
        """SSM Parameter Store path under which the stack writes each target's configuration."""
        return names.targets_path(self.stage) + "/"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls.model_validate({k: v for k, v in env.items() if k.startswith(names.ENV_PREFIX)})
