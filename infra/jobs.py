"""The job table: every Warden function of a stage, declared in one row each, and `StageFunctions`,
which builds them all from it.

A row says what the function is (its name: `functions/<name>/handler.py`, `WARDEN_FUNCTION`),
how it runs (timeout, memory, /tmp, inside the stage's VPC or not), what it may touch (its grants,
in the order they are applied, each a name in GRANTS), what starts it (its triggers), and when the
stage has it at all. Environment variables come with the grants: each grant sets the variable that
tells the function where its resource is (`WARDEN_CATALOG_TABLE`, ..., warden.names).

To add a function: `functions/<name>/handler.py`, a row here, and if its trigger is new, the
construct that starts it (composed in infra/stack.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from aws_cdk import Duration, Size, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.functions import (
    FUNCTIONS_DIR,
    WardenFunction,
    grant_audit_append,
    grant_backup_locks_read,
    grant_backups_delete,
    grant_backups_read,
    grant_backups_write,
    grant_catalog_read,
    grant_catalog_read_write,
    grant_health,
    grant_key_use,
    grant_notify,
    grant_rds_snapshots,
    grant_state_read_write,
    grant_target_config_read,
    grant_target_secrets_read,
    staging_targets,
    use_pg_tools,
)
from infra.layers import SharedLayers
from infra.network import Network
from infra.recovery import active_parameter_arns
from infra.remediation import grant_fleet_alarm_read, grant_invoke_backup
from infra.replica import grant_replica_decrypt, grant_replica_read
from infra.report import grant_report_access
from infra.rotation import grant_rotated_secrets, stage_rotates
from infra.storage import Storage
from infra.tasks import grant_start_tasks
from warden.backup import BACKUP_TIMEOUT_S
from warden.config.stage import StageConfig


class Trigger(StrEnum):
    """What starts a function (besides an operator: the CLI may invoke any of them)."""

    # Per target: the job's Fleet state machine on the stage's one schedule (infra/fleet.py), or the
    # target's own schedule when its `schedules.<job>` overrides the fleet's (infra/schedules.py).
    PER_TARGET_SCHEDULE = "per-target schedule"
    WEEKLY_SCHEDULE = "weekly schedule"  # one schedule for the stage (infra/report.py)
    ALARM_RULE = "alarm rule"  # EventBridge rule on the stage's alarms going into ALARM (infra/remediation.py)
    SECRET_ROTATION = "secret rotation"  # noqa: S105 (not a password) Secrets Manager rotation (infra/rotation.py)
    # the Recovery state machine's tasks (infra/recovery.py), the Fleet ones' (infra/fleet.py)
    STATE_MACHINE = "state machine"
    FUNCTION = "function"  # another Warden function (remediate starts a backup)


@dataclass(frozen=True)
class JobContext:
    """What a grant may use: the stage, its storage, and the functions built before this one."""

    stage: StageConfig
    storage: Storage
    functions: Mapping[str, WardenFunction]


Grant = Callable[[WardenFunction, JobContext], None]


@dataclass(frozen=True)
class Job:
    """One row of the job table."""

    name: str  # functions/<name>/handler.py; WARDEN_FUNCTION
    timeout: Duration
    grants: tuple[str, ...]  # names in GRANTS, applied in this order
    triggers: tuple[Trigger, ...]
    memory: int = 512  # MB
    vpc: bool = False  # in the stage's VPC (when it has a network): the functions that open database connections
    ephemeral_storage: Size | None = None  # /tmp beyond Lambda's 512 MB
    description: str | None = None  # after "Warden <stage> "; the job's name when None
    only_when: Callable[[StageConfig], bool] | None = None  # the stage has the function only when this holds

    @property
    def handler_dir(self) -> Path:
        return FUNCTIONS_DIR / self.name

    @property
    def construct_id(self) -> str:
        """`license_check` → `LicenseCheck` (the function's construct, so its logical ids)."""
        return self.name.replace("_", " ").title().replace(" ", "")


def _staging_secrets(fn: WardenFunction, ctx: JobContext) -> None:
    """The targets' secrets and the staging secrets their recoveries restore into."""
    targets = ctx.stage.targets
    grant_target_secrets_read(fn, [*targets, *staging_targets(targets)])


def _active_endpoints(fn: WardenFunction, ctx: JobContext) -> None:
    """Read and move each target's active-endpoint parameter (a swap promotion)."""
    if ctx.stage.targets:
        fn.add_to_policy(iam.PolicyStatement(actions=["ssm:GetParameter", "ssm:PutParameter"],
                                             resources=active_parameter_arns(Stack.of(fn), ctx.stage)))


# Every grant a row may name. Each is one helper of infra/functions.py or of the module of the
# concern it belongs to; what each allows is in that helper's docstring.
GRANTS: dict[str, Grant] = {
    "target-config": lambda fn, ctx: grant_target_config_read(fn, ctx.storage),
    "target-secrets": lambda fn, ctx: grant_target_secrets_read(fn, ctx.stage.targets),
    "target-and-staging-secrets": _staging_secrets,
    "catalog": lambda fn, ctx: grant_catalog_read_write(fn, ctx.storage),
    "catalog-read": lambda fn, ctx: grant_catalog_read(fn, ctx.storage),
    "state": lambda fn, ctx: grant_state_read_write(fn, ctx.storage),
    "audit-append": lambda fn, ctx: grant_audit_append(fn, ctx.storage),
    "backups-read": lambda fn, ctx: grant_backups_read(fn, ctx.storage),
    "backups-write": lambda fn, ctx: grant_backups_write(fn, ctx.storage),
    "backups-delete": lambda fn, ctx: grant_backups_delete(fn, ctx.storage),
    "backup-locks-read": lambda fn, ctx: grant_backup_locks_read(fn, ctx.storage),
    "key": lambda fn, ctx: grant_key_use(fn, ctx.storage),
    "notify": lambda fn, ctx: grant_notify(fn, ctx.storage),
    "pg-tools": lambda fn, ctx: use_pg_tools(fn),
    "rds-snapshots": lambda fn, ctx: grant_rds_snapshots(fn, ctx.stage.targets, fn.job),
    "health": lambda fn, ctx: grant_health(fn, ctx.storage),
    "active-endpoints": _active_endpoints,
    "replica-read": lambda fn, ctx: grant_replica_read(fn, ctx.stage),
    "replica-decrypt": lambda fn, ctx: grant_replica_decrypt(fn, ctx.stage),
    "invoke-backup": lambda fn, ctx: grant_invoke_backup(fn, ctx.functions.get("backup")),
    "fleet-alarms-read": lambda fn, ctx: grant_fleet_alarm_read(fn, ctx.stage),
    "report-access": lambda fn, ctx: grant_report_access(fn, ctx.storage),
    "rotated-secrets": lambda fn, ctx: grant_rotated_secrets(fn, ctx.stage.targets),
    # Where the stage can start tasks: hand runs over to the Task state machine (infra/tasks.py).
    "start-tasks": lambda fn, ctx: grant_start_tasks(fn, ctx.stage),
}
# The grants that let a function put / delete backup-bucket objects: the bucket policy denies
# those actions to every other role (infra/storage.py, protect_backup_bucket).
WRITES_BACKUP_OBJECTS = frozenset({"backups-write", "report-access"})
DELETES_BACKUP_OBJECTS = frozenset({"backups-delete"})

_15_MIN = Duration.minutes(15)

# Built in this order (a grant may use a function built before it: remediate starts backup).
JOBS: tuple[Job, ...] = (
    Job("health", timeout=Duration.minutes(2), vpc=True, triggers=(Trigger.PER_TARGET_SCHEDULE,),
        grants=("health",)),
    # A backup streams the whole database through one invocation: the longest timeout Lambda allows.
    Job("backup", timeout=Duration.seconds(BACKUP_TIMEOUT_S), memory=1024, vpc=True,
        triggers=(Trigger.PER_TARGET_SCHEDULE, Trigger.FUNCTION),
        grants=("target-config", "target-secrets", "catalog",
                "state",  # leases and idempotency records
                "audit-append", "backups-write", "pg-tools",
                "rds-snapshots")),  # only for rds-snapshot targets
    Job("verify", timeout=_15_MIN, triggers=(Trigger.PER_TARGET_SCHEDULE,),
        grants=("target-config", "catalog", "audit-append", "backups-read", "rds-snapshots",
                "replica-read")),  # is the replica's copy there?
    Job("prune", timeout=_15_MIN, memory=1024, triggers=(Trigger.PER_TARGET_SCHEDULE,),
        grants=("target-config", "catalog", "state", "audit-append",
                "backups-read",  # list object versions
                "backups-delete", "rds-snapshots",
                "backup-locks-read")),  # a locked version is not deleted
    Job("license_check", timeout=Duration.minutes(2), vpc=True, triggers=(Trigger.PER_TARGET_SCHEDULE,),
        grants=("target-config", "target-secrets", "key")),
    # A restore spools the dump to /tmp (pg_restore -j needs a seekable archive): the most Lambda allows.
    Job("recovery", timeout=_15_MIN, memory=1024, ephemeral_storage=Size.gibibytes(10), vpc=True,
        triggers=(Trigger.STATE_MACHINE,),
        grants=("pg-tools", "target-config", "target-and-staging-secrets", "catalog", "state", "audit-append",
                "backups-read",
                "backups-write",  # the safety backup of an in-place promotion
                "notify",  # manual approval requests
                "active-endpoints", "replica-read", "replica-decrypt")),
    Job("report", timeout=Duration.minutes(5), description="weekly report", triggers=(Trigger.WEEKLY_SCHEDULE,),
        grants=("target-config", "catalog-read", "report-access")),
    # Long enough for a prune of a large catalog or a health re-check; a backup runs in its own function.
    Job("remediate", timeout=_15_MIN, vpc=True, description="remediation of alarms", triggers=(Trigger.ALARM_RULE,),
        grants=("target-config",
                "target-secrets",  # cancel / terminate sessions, health re-check
                "catalog",  # prune marks EXPIRED; health reads backup freshness
                "state",  # leases and the per-hour rate-limit counters
                "audit-append",
                "backups-read",  # prune lists object versions
                "backups-delete",
                "notify",  # every action is announced
                "key", "invoke-backup",
                "backup-locks-read",  # remediate runs prune
                "fleet-alarms-read")),  # which targets a fleet alarm fires for
    # VACUUM and REINDEX CONCURRENTLY of a large table take minutes; each statement has its own timeout.
    # A run that does not fit goes to Fargate (docs/fargate.md, "Maintenance on Fargate").
    Job("maintenance", timeout=_15_MIN, memory=256, vpc=True, description="database maintenance",
        triggers=(Trigger.PER_TARGET_SCHEDULE,),
        grants=("target-config", "target-secrets",
                "state",  # the lease, the last run and duration of each task
                "audit-append", "key",
                "start-tasks")),  # only where the stage can start tasks
    # Plans a Fleet state machine's run and sums it up: reads the targets' config, no database.
    Job("fleet", timeout=Duration.minutes(1), memory=256, description="fleet runs (plan, delay, summary)",
        triggers=(Trigger.STATE_MACHINE,), grants=("target-config",)),
    Job("rotate", timeout=Duration.minutes(1), memory=256, vpc=True,
        description="credential rotation (Secrets Manager)", triggers=(Trigger.SECRET_ROTATION,),
        only_when=stage_rotates,
        grants=("target-config",  # which target a secret is, and how it rotates
                "audit-append", "key", "rotated-secrets")),
)


@dataclass(frozen=True)
class StageFunctions:
    """The functions of one stage, built from the job table. Attributes: `by_job` {job: WardenFunction}
    (in table order), `jobs` {job: Job} (the rows the stage has).

    Not a construct of its own: each function stays a direct child of `scope`, so its logical ids
    (and those of its role and retained log group) are those it was deployed with.
    """

    by_job: dict[str, WardenFunction]
    jobs: dict[str, Job]

    @classmethod
    def build(cls, scope: Construct, *, stage: StageConfig, storage: Storage, layers: SharedLayers,
              network: Network | None, table: tuple[Job, ...] = JOBS) -> StageFunctions:
        """Every function of `table` the stage has, in `scope`, with its grants applied in order."""
        built: dict[str, WardenFunction] = {}
        jobs: dict[str, Job] = {}
        context = JobContext(stage=stage, storage=storage, functions=built)
        for job in table:
            if job.only_when is not None and not job.only_when(stage):
                continue
            unknown = [g for g in job.grants if g not in GRANTS]
            if unknown:
                raise ValueError(f"job {job.name!r}: no grant named {unknown}; known: {sorted(GRANTS)}")
            fn = WardenFunction(
                scope,
                job.construct_id,
                job=job.name,
                layers=layers,
                stage=stage,
                key=storage.key,
                timeout=job.timeout,
                memory_size=job.memory,
                description=f"Warden {stage.name} {job.description}" if job.description else "",
                ephemeral_storage_size=job.ephemeral_storage,
                placement=network.placement() if network is not None and job.vpc else None,
            )
            for grant in job.grants:
                GRANTS[grant](fn, context)
            built[job.name] = fn
            jobs[job.name] = job
        return cls(by_job=built, jobs=jobs)

    def triggered_by(self, trigger: Trigger) -> dict[str, WardenFunction]:
        """The functions `trigger` starts, by job, in table order."""
        return {name: self.by_job[name] for name, job in self.jobs.items() if trigger in job.triggers}

    def backup_writers(self) -> list[iam.IRole]:
        """The roles that may put backup-bucket objects (every other role is denied)."""
        return self._roles_with(WRITES_BACKUP_OBJECTS)

    def backup_deleters(self) -> list[iam.IRole]:
        """The roles that may delete backup-bucket objects (every other role is denied)."""
        return self._roles_with(DELETES_BACKUP_OBJECTS)

    def _roles_with(self, grants: frozenset[str]) -> list[iam.IRole]:
        return [self.by_job[name].role for name, job in self.jobs.items() if grants & set(job.grants)]
