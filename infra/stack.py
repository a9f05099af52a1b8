"""The Warden stack of one stage, and the app of all stages. Stacks compose; constructs build."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, CfnOutput, Environment, Stack, Tags
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.alarms import Alarms
from infra.config import load_stages, read_cdk_json_context
from infra.dashboard import Dashboard
from infra.fleet import FleetRuns
from infra.functions import WardenFunction
from infra.jobs import StageFunctions, Trigger
from infra.layers import SharedLayers
from infra.nag import enable_nag
from infra.network import Network, read_lookup_context
from infra.recovery import RecoveryStateMachine
from infra.remediation import AlarmRemediation
from infra.replica import ReplicaStack, replica_stack_id, replicate_backups
from infra.report import schedule_report
from infra.rotation import rotate_secrets
from infra.schedules import TargetSchedules
from infra.storage import Storage, protect_backup_bucket
from infra.targets import TargetContext, TargetGroups
from infra.tasks import TaskRunner
from warden import names
from warden.config.stage import StageConfig


class WardenStack(Stack):
    """Everything one stage deploys. Attributes: `stage`, `storage`, `layers`, `network`, `jobs`
    (StageFunctions), `functions` (WardenFunction by job), `tasks` (TaskRunner, None when the stage
    cannot start tasks), `recovery`, `report`, `remediation`,
    `rotation`, `schedules`, `fleet`, `alarms`, `targets` (TargetGroups: the per-target group stacks),
    `dashboard`."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        stage: StageConfig,
        dependency_layer_dir: Path | None = None,
    ) -> None:
        super().__init__(
            scope,
            id,
            env=Environment(account=stage.account, region=stage.region),
            description=f"Warden {stage.name}: backups, verification and health of Neo4j and PostgreSQL",
            termination_protection=stage.name == "prod",
        )
        Tags.of(self).add("project", "warden")
        Tags.of(self).add("stage", stage.name)
        self.stage = stage
        self.replica_stack: ReplicaStack | None = None  # set by build_app when the stage replicates
        # Per-target resources (parameters, alarms, schedules, ...) are built in group stacks, below.
        self.storage = Storage(self, "Storage", stage=stage, target_parameters=False)
        self.layers = SharedLayers.build(self, "Layers", dependency_layer_dir=dependency_layer_dir)
        # The VPC the database-facing functions run in (infra/network.py); None: no VPC.
        self.network = Network(self, "Network", stage=stage) if stage.network else None
        # Every function of the stage, from the job table (infra/jobs.py).
        self.jobs = StageFunctions.build(self, stage=stage, storage=self.storage, layers=self.layers,
                                         network=self.network)
        self.functions: dict[str, WardenFunction] = self.jobs.by_job
        fns = self.functions
        # Long backups on ECS Fargate, where the stage can start tasks (infra/tasks.py, docs/fargate.md);
        # after every grant of the backup function: the task takes its environment and grant policy.
        self.tasks = (TaskRunner(self, "Tasks", stage=stage, storage=self.storage, layers=self.layers,
                                 backup=fns["backup"], network=self.network, recovery=fns["recovery"])
                      if stage.can_start_tasks else None)
        # A recovery's restore and validation run as tasks too where Preflight says so (docs/fargate.md).
        self.recovery = RecoveryStateMachine(self, "RecoveryWorkflow", stage=stage, storage=self.storage,
                                             function=fns["recovery"], per_target=False, task_runner=self.tasks)
        self.state_machines = {"recovery": self.recovery.state_machine}
        if self.tasks is not None:
            self.state_machines["task"] = self.tasks.state_machine
        self.report = schedule_report(self, stage=stage, function=fns["report"])
        self.remediation = AlarmRemediation(self, "Remediation", stage=stage, remediate=fns["remediate"])
        # Only when a target rotates its credentials.
        self.rotation = (rotate_secrets(self, stage=stage, function=fns["rotate"], per_target=False)
                         if "rotate" in fns else None)

        # The backup bucket's policy: only the functions whose grants write or delete backups may.
        task_roles = [self.tasks.task_role] if self.tasks else []  # the task writes backups as the function does
        protect_backup_bucket(self.storage, writers=[*self.jobs.backup_writers(), *task_roles],
                              deleters=self.jobs.backup_deleters())
        replication = stage.backup_protection.replication
        self.replication_role: iam.Role | None = (
            replicate_backups(self.storage, stage, replication) if replication is not None else None)

        scheduled = self.jobs.triggered_by(Trigger.PER_TARGET_SCHEDULE)
        # Per target only where a target overrides its job's fleet schedule (infra/schedules.py).
        self.schedules = TargetSchedules(self, "Schedules", stage=stage, functions=scheduled, per_target=False)
        # One schedule per job: a Fleet state machine fans the job out over the targets (infra/fleet.py).
        self.fleet = FleetRuns(self, "FleetRuns", stage=stage, storage=self.storage, planner=fns["fleet"],
                               functions=scheduled, recovery=self.recovery.state_machine,
                               group=self.schedules.group)
        self.state_machines.update({f"fleet-{job}": run.state_machine for job, run in self.fleet.runs.items()})
        # Last: alarms and the dashboard cover every function (and state machine) made above.
        self.alarms = Alarms(self, "Alarms", stage=stage, storage=self.storage, functions=self.functions,
                             state_machines=self.state_machines, per_target=False)
        # Every target's own resources, in group stacks (infra/targets.py); their alarms, instance
        # alarms and log alarms join the stage's alarms (and so the dashboard).
        self.targets = TargetGroups(self, "Targets", context=TargetContext(
            stage=stage, alarms=self.alarms, schedules=self.schedules, recovery=self.recovery,
            rotation=self.rotation))
        self.dashboard = Dashboard(self, "Dashboard", alarms=self.alarms)
        self._outputs()

    def _outputs(self) -> None:
        """What the CLI reads to find a deployed stage (`warden --stage <name>`): see warden.names."""
        storage = self.storage
        values = {
            names.OUTPUT_CATALOG_TABLE: storage.catalog.table_name,
            names.OUTPUT_AUDIT_TABLE: storage.audit.table_name,
            names.OUTPUT_STATE_TABLE: storage.state.table_name,
            names.OUTPUT_BUCKET: storage.bucket.bucket_name,
            names.OUTPUT_TOPIC: storage.topic.topic_arn,
            names.OUTPUT_KEY: storage.key.key_arn,
        }
        values.update({names.function_output(job): fn.function.function_name for job, fn in self.functions.items()})
        values[names.OUTPUT_RECOVERY_STATE_MACHINE] = self.recovery.state_machine.state_machine_arn
        values.update({names.fleet_output(job): run.state_machine.state_machine_arn
                       for job, run in self.fleet.runs.items()})
        for name, value in values.items():
            CfnOutput(self, name, value=value)


def stack_id(stage: StageConfig) -> str:
    return names.stack_name(stage.name)


def build_app(
    context: Mapping[str, Any] | None = None,
    *,
    outdir: str | None = None,
    dependency_layer_dir: Path | None = None,
) -> tuple[App, dict[str, WardenStack]]:
    """The CDK app: one WardenStack per selected stage, cdk-nag on.

    Context is cdk.json's, then `context` over it; when the CDK CLI runs the app, its context
    (cdk.json and `-c`) wins over both.
    """
    # cdk.context.json: checked-in lookups (the stages' VPCs), so `python app.py` synthesizes offline.
    app = App(context={**read_lookup_context(), **read_cdk_json_context(), **(context or {})}, outdir=outdir)
    enable_nag(app)
    stages = load_stages({key: app.node.try_get_context(key) for key in ("stages", "stage")})
    stacks = {
        stage.name: WardenStack(app, stack_id(stage), stage=stage, dependency_layer_dir=dependency_layer_dir)
        for stage in stages
    }
    for stage in stages:  # the replica side first: the replication rule needs its bucket to exist
        replication = stage.backup_protection.replication
        if replication is not None:
            replica = ReplicaStack(app, replica_stack_id(stage), stage=stage, replication=replication)
            stacks[stage.name].replica_stack = replica
            stacks[stage.name].add_stack_dependency(replica, "the replication destination must exist first")
    return app, stacks
