"""A deployable stage: where it goes, what it protects, and the rules that hold across its targets."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from warden.config.base import Model
from warden.config.fleet import FleetConfig
from warden.config.network import NetworkConfig, network_problems
from warden.config.protection import BackupProtection, protection_problems
from warden.config.target import Target


class StageConfig(Model):
    """A deployable stage: where it goes and what it protects."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,15}$")]
    account: Annotated[str, Field(pattern=r"^\d{12}$")] | None = None
    region: str = "eu-west-1"
    log_retention_days: int = 30
    notification_emails: list[str] = []
    targets: list[Target] = []
    # Object Lock and cross-region replication of the backup bucket (warden.config.protection).
    backup_protection: BackupProtection = BackupProtection()
    # The VPC the database-facing functions run in, and its endpoints (warden.config.network).
    network: NetworkConfig | None = None
    # One schedule per job: its fan-out over the targets, concurrency cap and window (warden.config.fleet).
    fleet: FleetConfig = FleetConfig()

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
