"""The Warden stack of one stage, and the app of all stages. Stacks compose; constructs build."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, CfnOutput, Duration, Environment, Size, Stack, Tags
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import nag
from infra.alarms import Alarms
from infra.config import load_stages, read_cdk_json_context
from infra.dashboard import Dashboard
from infra.functions import (
    WardenFunction,
    grant_audit_append,
    grant_backup_locks_read,
    grant_backups_delete,
    grant_backups_read,
    grant_backups_write,
    grant_catalog_read_write,
    grant_health,
    grant_key_use,
    grant_notify,
    grant_rds_snapshots,
    grant_state_read_write,
    grant_target_config_read,
    grant_target_secrets_read,
    use_pg_tools,
)
from infra.instance_alarms import InstanceAlarms
from infra.layers import SharedLayers
from infra.log_monitoring import LogMonitors
from infra.nag import enable_nag
from infra.network import Network, read_lookup_context
from infra.recovery import RecoveryStateMachine, active_parameter_arns
from infra.remediation import add_remediation_and_maintenance
from infra.replica import (
    ReplicaStack,
    acknowledge_replica_key,
    replica_bucket_arn,
    replica_key_alias_arn,
    replica_key_statement,
    replica_stack_id,
    replicate_backups,
)
from infra.report import add_report
from infra.rotation import add_rotation
from infra.schedules import TargetSchedules
from infra.storage import Storage, protect_backup_bucket
from warden.backup import BACKUP_TIMEOUT_S
from warden.config.protection import ENV_REPLICA_BUCKET, ENV_REPLICA_KMS_KEY, ENV_REPLICA_REGION, replica_bucket_name
from warden.config.stage import StageConfig


class WardenStack(Stack):
    """Everything one stage deploys. Attributes: `stage`, `storage`, `layers`, `functions` (by job)."""

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
        self.storage = Storage(self, "Storage", stage=stage)
        self.layers = SharedLayers.build(self, "Layers", dependency_layer_dir=dependency_layer_dir)
        # The VPC the database-facing functions run in (infra/network.py); None: no VPC.
        self.network = Network(self, "Network", stage=stage) if stage.network else None
        self.functions: dict[str, WardenFunction] = {}

        health = self._function("health", timeout=Duration.minutes(2))
        grant_health(health, self.storage)

        # A backup streams the whole database through one invocation: the longest timeout Lambda allows.
        backup = self._function("backup", timeout=Duration.seconds(BACKUP_TIMEOUT_S), memory_size=1024)
        grant_target_config_read(backup, self.storage)
        grant_target_secrets_read(backup, stage.targets)
        grant_catalog_read_write(backup, self.storage)
        grant_state_read_write(backup, self.storage)  # leases and idempotency records
        grant_audit_append(backup, self.storage)
        grant_backups_write(backup, self.storage)
        use_pg_tools(backup)
        grant_rds_snapshots(backup, stage.targets, "backup")  # only for rds-snapshot targets

        verify = self._function("verify", timeout=Duration.minutes(15), memory_size=512)
        grant_target_config_read(verify, self.storage)
        grant_catalog_read_write(verify, self.storage)
        grant_audit_append(verify, self.storage)
        grant_backups_read(verify, self.storage)
        grant_rds_snapshots(verify, stage.targets, "verify")

        prune = self._function("prune", timeout=Duration.minutes(15), memory_size=1024)
        grant_target_config_read(prune, self.storage)
        grant_catalog_read_write(prune, self.storage)
        grant_state_read_write(prune, self.storage)
        grant_audit_append(prune, self.storage)
        grant_backups_read(prune, self.storage)  # list object versions
        grant_backups_delete(prune, self.storage)
        grant_rds_snapshots(prune, stage.targets, "prune")

        license_check = self._function("license_check", timeout=Duration.minutes(2))
        grant_target_config_read(license_check, self.storage)
        grant_target_secrets_read(license_check, stage.targets)
        grant_key_use(license_check, self.storage)

        # A restore spools the dump to /tmp (pg_restore -j needs a seekable archive): the most Lambda allows.
        recovery = self._function("recovery", timeout=Duration.minutes(15), memory_size=1024,
                                  ephemeral_storage_size=Size.gibibytes(10))
        use_pg_tools(recovery)
        grant_target_config_read(recovery, self.storage)
        staging_secrets = [t.model_copy(update={"secret_name": t.recovery.staging_secret_name})
                           for t in stage.targets if t.recovery.staging_secret_name]
        grant_target_secrets_read(recovery, [*stage.targets, *staging_secrets])
        grant_catalog_read_write(recovery, self.storage)
        grant_state_read_write(recovery, self.storage)
        grant_audit_append(recovery, self.storage)
        grant_backups_read(recovery, self.storage)
        grant_backups_write(recovery, self.storage)  # the safety backup of an in-place promotion
        grant_notify(recovery, self.storage)  # manual approval requests
        if stage.targets:
            recovery.add_to_policy(iam.PolicyStatement(actions=["ssm:GetParameter", "ssm:PutParameter"],
                                                       resources=active_parameter_arns(self, stage)))
        self.recovery = RecoveryStateMachine(self, "RecoveryWorkflow", stage=stage, storage=self.storage,
                                             function=recovery)
        self.state_machines = {"recovery": self.recovery.state_machine}
        self.report = add_report(self)
        self.remediation = add_remediation_and_maintenance(self)
        self.rotation = add_rotation(self)  # only when a target rotates its credentials

        self._protect_backups()

        self.schedules = TargetSchedules(self, "Schedules", stage=stage, functions=self.functions)
        # Last: alarms and the dashboard cover every function (and state machine) made above.
        self.alarms = Alarms(self, "Alarms", stage=stage, storage=self.storage, functions=self.functions,
                             state_machines=self.state_machines)
        # Instance alarms and log metric filters join the stage's alarms (and so the dashboard).
        self.instance_alarms = InstanceAlarms(self, "InstanceAlarms", alarms=self.alarms)
        self.log_monitors = LogMonitors(self, "LogMonitors", alarms=self.alarms)
        self.dashboard = Dashboard(self, "Dashboard", alarms=self.alarms)
        self._outputs()

    def _protect_backups(self) -> None:
        """The backup bucket's policy (only the functions that write or delete backups may), prune's
        view of Object Lock, and replication with what verify and recovery need of the replica."""
        jobs = self.functions
        writers = [jobs[j].role for j in ("backup", "recovery", "report") if j in jobs]  # see README
        deleters = [jobs[j].role for j in ("prune", "remediate") if j in jobs]  # remediate runs prune
        protect_backup_bucket(self.storage, writers=writers, deleters=deleters)
        for job in ("prune", "remediate"):
            if job in jobs:
                grant_backup_locks_read(jobs[job], self.storage)
        replication = self.stage.backup_protection.replication
        self.replication_role: iam.Role | None = None
        if replication is None:
            return
        self.replication_role = replicate_backups(self.storage, self.stage, replication)
        replica_arn = replica_bucket_arn(self.stage, replication)
        for job in ("verify", "recovery"):
            fn = jobs[job]
            fn.function.add_environment(ENV_REPLICA_BUCKET,
                                        replica_bucket_name(self.stage.name, self.account, replication.region))
            fn.function.add_environment(ENV_REPLICA_REGION, replication.region)
            fn.function.add_environment(ENV_REPLICA_KMS_KEY, replica_key_alias_arn(self.stage, replication))
            # verify: HeadObject on the replica (is the copy there?); recovery: read it back.
            fn.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject", "s3:GetObjectVersion"],
                                                 resources=[f"{replica_arn}/*"]))
            nag.acknowledge(
                fn.role,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::"
                f"{replica_bucket_name(self.stage.name, '<AWS::AccountId>', replication.region)}/*]",
                "Backup object keys are <target>/<date>/<backup id>/..., created at run time; the replica "
                "has the same keys. Read actions only.")
        jobs["recovery"].add_to_policy(replica_key_statement(self.stage, replication, ["kms:Decrypt"]))
        acknowledge_replica_key(jobs["recovery"].role, self.stage, replication)

    def _outputs(self) -> None:
        """What the CLI reads to find a deployed stage (`warden --stage <name>`): see OUTPUTS."""
        storage = self.storage
        values = {
            "CatalogTable": storage.catalog.table_name,
            "AuditTable": storage.audit.table_name,
            "StateTable": storage.state.table_name,
            "Bucket": storage.bucket.bucket_name,
            "Topic": storage.topic.topic_arn,
            "Key": storage.key.key_arn,
        }
        values.update({function_output(job): fn.function.function_name for job, fn in self.functions.items()})
        values["RecoveryStateMachine"] = self.recovery.state_machine.state_machine_arn
        for name, value in values.items():
            CfnOutput(self, name, value=value)

    def _function(self, job: str, **options: Any) -> WardenFunction:
        fn = WardenFunction(
            self,
            job.replace("_", " ").title().replace(" ", ""),
            job=job,
            layers=self.layers,
            stage=self.stage,
            key=self.storage.key,
            placement=self.network.placement(job) if self.network else None,
            **options,
        )
        self.functions[job] = fn
        return fn


def function_output(job: str) -> str:
    """The stack output naming the function of `job` (e.g. `BackupFunction`)."""
    return job.replace("_", " ").title().replace(" ", "") + "Function"


def stack_id(stage: StageConfig) -> str:
    return f"Warden-{stage.name}"


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
