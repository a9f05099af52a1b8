"""A deployable stage: where it goes, what it protects, and the rules that hold across its targets."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from warden.config.base import Model
from warden.config.fleet import FleetConfig
from warden.config.network import NetworkConfig, network_problems
from warden.config.protection import BackupProtection, protection_problems
from warden.config.target import Target

# AWS's Lambda base image (Amazon Linux 2023, Python 3.12, boto3): no image is built (docs/fargate.md).
DEFAULT_TASK_IMAGE = "public.ecr.aws/lambda/python:3.12-arm64"
SUBNET_ID = r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$"
SECURITY_GROUP_ID = r"^sg-([0-9a-f]{8}|[0-9a-f]{17})$"
# A task's awsvpc configuration takes at most 16 subnets and 5 security groups.
MAX_TASK_SUBNETS, MAX_TASK_SECURITY_GROUPS = 16, 5


class StageFargate(Model):
    """Where a stage's ECS Fargate tasks run (long jobs, docs/fargate.md).

    `cluster_name`: an existing ECS cluster; None: Warden creates `warden-<stage>` (Container
    Insights on). `image`: the container image (the Lambda base image; in subnets without NAT, its
    name in an ECR pull-through cache of public.ecr.aws). `subnet_ids` / `security_group_ids`: where
    the tasks run; on a stage with `network:` they default to its subnets and db-clients group, on
    one without they are required. `assign_public_ip`: for public subnets without NAT only.
    """

    cluster_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,255}$")] | None = None
    image: Annotated[str, Field(pattern=r"^[^\s]+$", max_length=1024)] = DEFAULT_TASK_IMAGE
    subnet_ids: Annotated[list[Annotated[str, Field(pattern=SUBNET_ID)]], Field(max_length=MAX_TASK_SUBNETS)] = []
    security_group_ids: Annotated[list[Annotated[str, Field(pattern=SECURITY_GROUP_ID)]],
                                  Field(max_length=MAX_TASK_SECURITY_GROUPS)] = []
    assign_public_ip: bool = False

    @field_validator("subnet_ids", "security_group_ids")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        dupes = sorted({v for v in value if value.count(v) > 1})
        if dupes:
            raise ValueError(f"repeats {dupes}")
        return value


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
    # Where its long jobs' ECS Fargate tasks run (docs/fargate.md); a stage with `network:` has them
    # without this block.
    fargate: StageFargate | None = None

    @property
    def can_start_tasks(self) -> bool:
        """The stage has a Task state machine: a network, or a `fargate:` block (with its subnets)."""
        return self.network is not None or self.fargate is not None

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

    @model_validator(mode="after")
    def _tasks_have_a_place_to_run(self) -> StageConfig:
        problems = []
        if self.fargate is not None and self.network is None:
            if not self.fargate.subnet_ids:
                problems.append("fargate.subnet_ids: a stage without `network:` must name the subnets its "
                                "Fargate tasks run in")
            if not self.fargate.security_group_ids:
                problems.append("fargate.security_group_ids: a stage without `network:` must name the security "
                                "groups of its Fargate tasks")
        if not self.can_start_tasks:
            pinned = sorted(t.name for t in self.targets if t.runner == "fargate")
            if pinned:
                problems.append(f"targets {pinned} have runner fargate, but the stage cannot start tasks: give it "
                                "`network:` or `fargate:` with subnet_ids and security_group_ids (docs/fargate.md)")
        if problems:
            raise ValueError(f"stage {self.name!r}: " + "; ".join(problems))
        return self
