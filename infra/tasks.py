"""Long jobs on ECS Fargate (docs/fargate.md): the stage's one task definition and the Task state
machine `warden-<stage>-task` that runs it, for a stage that can start tasks (`network:` or
`fargate:`, StageConfig.can_start_tasks):

    RunTask (ecs:runTask.waitForTaskToken; HeartbeatSecondsPath, TimeoutSecondsPath from the input)
      ├─ the task's SendTaskSuccess → Done
      └─ any error (the task's SendTaskFailure, States.HeartbeatTimeout, States.Timeout, RunTask's)
           → Abandon (the backup function, `{"action": "abandon", "job": ..., ...}`) → Failed

The backup function starts it (`WARDEN_TASK_STATE_MACHINE_ARN`) and stops the cluster's tasks of an
abandoned execution (`WARDEN_TASK_CLUSTER`); the maintenance function starts it too
(`grant_start_tasks`, a job-table grant): the task runs maintenance with the backup function's grants,
which hold what it needs (the state table, the targets' secrets and configuration, the audit table).
One task definition serves every target, sized per run by RunTask's overrides: nothing here grows
with the targets.

The task runs the backup function's code and grants: the Lambda base image (no image is built, no
Docker), the same layer zips as S3 assets unpacked by infra/task_bootstrap.py, the function's
environment, and a role holding the function's own grant policy.

The Recovery state machine runs the same task definition for a recovery's restore and validation on
Fargate (`run_task_state`, `grant_run`; infra/recovery.py): the task then also has what those two
steps of the recovery function read (RECOVERY_TASK_ENV) and may do (`_grant_recovery`), and the
recovery function may stop a rolled-back execution's task.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import ArnFormat, Duration, Stack, Token
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct, IValidation

from infra import nag, task_bootstrap
from infra.functions import (
    TRANSIENT_ERRORS,
    WardenFunction,
    backups_read_statements,
    encrypted_log_group,
    staging_targets,
    target_secret_arns,
)
from infra.layers import SharedLayers
from infra.network import Network
from infra.replica import acknowledge_replica_key, replica_bucket_arn, replica_key_statement
from infra.storage import Storage
from warden import names
from warden.config.stage import DEFAULT_TASK_IMAGE, StageConfig
from warden.runner import TASK_GROUP_PREFIX

ENV_TASK_CODE = task_bootstrap.ENV_CODE  # the layer zips the bootstrap unpacks
# The recovery function's variables that its restore and validate steps read and the backup function's
# lack: where the replica a recovery may read from is (warden.config.protection.ReplicaSettings).
RECOVERY_TASK_ENV = frozenset({names.ENV_REPLICA_BUCKET, names.ENV_REPLICA_REGION, names.ENV_REPLICA_KMS_KEY})
# Its other variables of its own, for steps that never run in a task: request_approval's topic.
RECOVERY_FUNCTION_ONLY_ENV = frozenset({names.ENV_TOPIC_ARN})
CONTAINER = "job"
# The task definition's own size; every run overrides it with its target's `fargate:` block.
DEFAULT_CPU, DEFAULT_MEMORY_MIB = 1024, 4096
# SIGTERM (StopTask, Abandon) to SIGKILL: time for the job to abort its upload and record FAILED.
STOP_TIMEOUT = Duration.seconds(120)
# The longest run a target may ask for (FargateSize.timeout_hours), plus time for Abandon.
MAX_RUN = Duration.hours(48)
MACHINE_TIMEOUT = MAX_RUN.plus(Duration.hours(1))
ABANDON_TIMEOUT = Duration.minutes(5)
ECS_TASKS = "ecs-tasks.amazonaws.com"
# <account>.dkr.ecr.<region>.amazonaws.com/<repository>[:tag | @digest]: a private ECR image (a pull-through cache).
_ECR_IMAGE = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/"
                        r"(?P<repository>[a-z0-9][a-z0-9._/-]*)(?::(?P<tag>[\w.-]+)|@(?P<digest>sha256:[0-9a-f]{64}))?$")


def bootstrap_source() -> str:
    """The container's entry point: the text of infra/task_bootstrap.py, run as `python3 -c`."""
    return Path(task_bootstrap.__file__).read_text()


def cluster_name(stage: StageConfig) -> str:
    """The ECS cluster the stage's tasks run in: the configured one, else `warden-<stage>`."""
    return (stage.fargate.cluster_name if stage.fargate and stage.fargate.cluster_name
            else f"warden-{stage.name}")


def state_machine_name(stage: StageConfig) -> str:
    return f"warden-{stage.name}-task"


def state_machine_arn(stack: Stack, stage: StageConfig) -> str:
    """The Task state machine's ARN, formatted from its name: a grant or a variable holding it makes
    no dependency on the machine (which depends on the functions it invokes)."""
    return stack.format_arn(service="states", resource="stateMachine", resource_name=state_machine_name(stage),
                            arn_format=ArnFormat.COLON_RESOURCE_NAME)


def grant_start_tasks(fn: WardenFunction, stage: StageConfig) -> None:
    """Let a function hand runs over to the stage's Task state machine (`warden.runner.hand_over`): its
    ARN in WARDEN_TASK_STATE_MACHINE_ARN and StartExecution on that machine only. Nothing on a stage
    that cannot start tasks: the function then keeps every run (`runner: auto` is Lambda there)."""
    if not stage.can_start_tasks:
        return
    arn = state_machine_arn(Stack.of(fn), stage)
    fn.function.add_environment(names.ENV_TASK_STATE_MACHINE_ARN, arn)
    fn.add_to_policy(iam.PolicyStatement(actions=["states:StartExecution"], resources=[arn]))


def task_family(stage: StageConfig) -> str:
    return f"warden-{stage.name}-jobs"


def function_environment(fn: WardenFunction) -> dict[str, str]:
    """The function's environment variables as they stand, references kept (as tokens).

    Read from the CfnFunction's properties: the L2 has no getter, and the L1's `environment`
    reaches Python as an empty struct (the value is a lazy the grants keep adding to).
    """
    cfn = fn.function.node.default_child
    assert isinstance(cfn, lambda_.CfnFunction)
    resolved = Stack.of(fn).resolve(cfn._cfn_properties.get("environment")) or {}
    return {name: value if isinstance(value, str) else Token.as_string(value)
            for name, value in (resolved.get("variables") or {}).items()}


def task_environment(backup: WardenFunction, recovery: WardenFunction | None) -> dict[str, str]:
    """The task's variables: the backup function's, and the recovery function's RECOVERY_TASK_ENV
    (where both set one, as WARDEN_FUNCTION, the backup function's value)."""
    environment = function_environment(backup)
    if recovery is not None:
        environment.update({name: value for name, value in function_environment(recovery).items()
                            if name in RECOVERY_TASK_ENV and name not in environment})
    return environment


@jsii.implements(IValidation)
class _SameEnvironment:
    """The task's environment is the backup function's (plus the recovery steps' and the code to
    unpack) at synthesis too: a variable a function got after the task definition was made would be
    missing in the task; and a new variable of the recovery function's must be placed in
    RECOVERY_TASK_ENV (its restore or validate reads it) or RECOVERY_FUNCTION_ONLY_ENV."""

    def __init__(self, backup: WardenFunction, recovery: WardenFunction | None, task: dict[str, str]) -> None:
        self.backup, self.recovery, self.task = backup, recovery, set(task) - {ENV_TASK_CODE}

    def validate(self) -> list[str]:
        problems = []
        expected = set(task_environment(self.backup, self.recovery))
        if expected != self.task:
            problems.append(
                f"the task's environment differs from the backup function's (and the recovery steps'): only the "
                f"functions have {sorted(expected - self.task)}, only the task {sorted(self.task - expected)}; "
                "build the TaskRunner after every grant of the backup and recovery functions")
        if self.recovery is not None:
            unplaced = (set(function_environment(self.recovery)) - set(function_environment(self.backup))
                        - RECOVERY_TASK_ENV - RECOVERY_FUNCTION_ONLY_ENV)
            if unplaced:
                problems.append(f"the recovery function's {sorted(unplaced)}: add each to RECOVERY_TASK_ENV (its "
                                "restore or validate reads it) or to RECOVERY_FUNCTION_ONLY_ENV (infra/tasks.py)")
        return problems


class TaskRunner(Construct):
    """The stage's ECS cluster (or the configured one), its one Fargate task definition and the Task
    state machine, and the backup function's part in them.

    Attributes: `cluster_name`, `cluster_arn`, `cluster` (None when the cluster is an existing one),
    `task_definition`, `container`, `task_role`, `execution_role`, `log_group`, `code` (the layer
    zips, S3 assets), `state_machine`, `state_machine_arn`, `subnet_ids`, `security_group_ids`.

    With `recovery` (the recovery function) the task can also run a recovery's restore and
    validation (`python -m warden.task recovery`), which the Recovery state machine starts.
    """

    def __init__(self, scope: Construct, id: str, *, stage: StageConfig, storage: Storage, layers: SharedLayers,
                 backup: WardenFunction, network: Network | None, recovery: WardenFunction | None = None) -> None:
        super().__init__(scope, id)
        if not stage.can_start_tasks:
            raise ValueError(f"stage {stage.name!r} cannot start tasks: it has neither `network:` nor `fargate:`")
        self.stage = stage
        stack = Stack.of(self)
        self._placement(stage, network)
        self._cluster(stage)
        self.state_machine_arn = state_machine_arn(stack, stage)
        # The backup function learns where the tasks are first: the task's environment is the function's.
        backup.function.add_environment(names.ENV_TASK_STATE_MACHINE_ARN, self.state_machine_arn)
        backup.function.add_environment(names.ENV_TASK_CLUSTER, self.cluster_name)
        if recovery is not None:  # it may run steps as tasks (warden.runner.fargate_available) and stop them
            recovery.function.add_environment(names.ENV_TASK_STATE_MACHINE_ARN, self.state_machine_arn)
            recovery.function.add_environment(names.ENV_TASK_CLUSTER, self.cluster_name)
        self.code = layers.code_assets(self, "Code", pgtools=True)
        self._task_definition(stage, storage, backup, recovery)
        self._state_machine(stage, storage, backup)
        self._grant_backup(backup)
        if recovery is not None:
            self._grant_recovery(stage, storage, recovery)

    # -- where the tasks run ---------------------------------------------------------------------

    def _placement(self, stage: StageConfig, network: Network | None) -> None:
        fargate = stage.fargate
        self.subnet_ids: list[str] = list(fargate.subnet_ids) if fargate and fargate.subnet_ids else []
        self.security_group_ids: list[str] = (list(fargate.security_group_ids)
                                              if fargate and fargate.security_group_ids else [])
        if network is not None:  # the database-facing functions' subnets and group, unless configured
            self.subnet_ids = self.subnet_ids or [s.subnet_id for s in network.subnets]
            self.security_group_ids = self.security_group_ids or [network.security_group.security_group_id]
        self.assign_public_ip = bool(fargate and fargate.assign_public_ip)

    def _cluster(self, stage: StageConfig) -> None:
        self.cluster_name = cluster_name(stage)
        self.cluster: ecs.CfnCluster | None = None
        if stage.fargate and stage.fargate.cluster_name:
            self.cluster_arn = Stack.of(self).format_arn(service="ecs", resource="cluster",
                                                         resource_name=self.cluster_name)
            return
        # The L1: the L2 Cluster makes a VPC of its own when given none, and tasks need no VPC object.
        self.cluster = ecs.CfnCluster(self, "Cluster", cluster_name=self.cluster_name, cluster_settings=[
            ecs.CfnCluster.ClusterSettingsProperty(name="containerInsights", value="enabled")])
        self.cluster_arn = self.cluster.attr_arn

    # -- the task definition ---------------------------------------------------------------------

    def _task_definition(self, stage: StageConfig, storage: Storage, backup: WardenFunction,
                         recovery: WardenFunction | None) -> None:
        stack = Stack.of(self)
        # Only ECS tasks of this account and region may assume the task role (confused deputy), as
        # the ECS guide recommends for task roles; the execution role is ECS's own, assumed plainly.
        tasks_here = iam.ServicePrincipal(ECS_TASKS, conditions={
            "ArnLike": {"aws:SourceArn": stack.format_arn(service="ecs", resource="*", resource_name=None,
                                                          arn_format=ArnFormat.NO_RESOURCE_NAME)},
            "StringEquals": {"aws:SourceAccount": stack.account}})
        self.task_role = iam.Role(self, "TaskRole", assumed_by=tasks_here,
                                  description=f"Warden {stage.name} long jobs (ECS Fargate tasks)")
        self.execution_role = iam.Role(self, "ExecutionRole", assumed_by=iam.ServicePrincipal(ECS_TASKS),
                                       description=f"ECS: pull the image and write the logs of Warden "
                                                   f"{stage.name}'s tasks")
        self._grant_task(backup)
        self.log_group = encrypted_log_group(self, "Logs", stage=stage, key=storage.key)
        self.task_definition = ecs.FargateTaskDefinition(
            self, "TaskDefinition", family=task_family(stage), cpu=DEFAULT_CPU, memory_limit_mib=DEFAULT_MEMORY_MIB,
            runtime_platform=ecs.RuntimePlatform(cpu_architecture=ecs.CpuArchitecture.ARM64,
                                                 operating_system_family=ecs.OperatingSystemFamily.LINUX),
            task_role=self.task_role, execution_role=self.execution_role)
        environment = {**task_environment(backup, recovery),
                       ENV_TASK_CODE: ",".join(asset.s3_object_url for asset in self.code)}
        self.container = self.task_definition.add_container(
            "Job", container_name=CONTAINER, image=self._image(stage), essential=True,
            entry_point=["python3", "-c", bootstrap_source()], command=["--help"],  # each run names its job
            environment=environment, stop_timeout=STOP_TIMEOUT,
            # The job logs JSON lines (Powertools' logger, as the functions do).
            logging=ecs.LogDrivers.aws_logs(stream_prefix=CONTAINER, log_group=self.log_group))
        self.node.add_validation(_SameEnvironment(backup, recovery, environment))
        nag.acknowledge(
            self.task_definition, "AwsSolutions-ECS2",
            "The environment is the backup function's: table, bucket, topic and key names and ARNs, the "
            "state machine and cluster, and the layer zips' S3 URIs. No secret: database credentials are "
            "read from Secrets Manager at run time, and the per-run task token comes in RunTask's overrides.")

    def _image(self, stage: StageConfig) -> ecs.ContainerImage:
        image = stage.fargate.image if stage.fargate else DEFAULT_TASK_IMAGE
        ecr_image = _ECR_IMAGE.match(image)
        if ecr_image is None:  # a public registry: nothing to grant
            return ecs.ContainerImage.from_registry(image)
        # A private ECR repository, typically a pull-through cache of public.ecr.aws (docs/fargate.md):
        # the execution role may pull it and, on the first pull of a tag, import it from upstream.
        account, region, name = ecr_image["account"], ecr_image["region"], ecr_image["repository"]
        arn = f"arn:{Stack.of(self).partition}:ecr:{region}:{account}:repository/{name}"
        repository = ecr.Repository.from_repository_attributes(self, "Image", repository_arn=arn,
                                                               repository_name=name)
        self.execution_role.add_to_policy(iam.PolicyStatement(
            actions=["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"], resources=[arn]))
        nag.acknowledge(
            self.execution_role, "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken (the registry login before any pull) supports no resource-level "
            "permissions; the pulls themselves are granted on the one repository.")
        return ecs.ContainerImage.from_ecr_repository(repository, ecr_image["digest"] or ecr_image["tag"] or "latest")

    def _grant_task(self, backup: WardenFunction) -> None:
        """The task role: the backup function's own grant policy (the same AWS::IAM::Policy on both
        roles, so the two runners of one job can never drift apart), then what only a task does."""
        policy = backup.role.node.try_find_child("DefaultPolicy")
        if not isinstance(policy, iam.Policy):
            raise ValueError(f"{backup.node.path}: the backup function's role has no grants to share")
        policy.attach_to_role(self.task_role)
        # Its run's outcome and heartbeats, to its own state machine (and the Recovery one: grant_task_response).
        self._task_response = iam.PolicyStatement(
            actions=["states:SendTaskFailure", "states:SendTaskHeartbeat", "states:SendTaskSuccess"],
            resources=[self.state_machine_arn])
        statements = [
            self._task_response,
            # Metrics with the function's names: the task has no EMF extraction from its logs.
            iam.PolicyStatement(actions=["cloudwatch:PutMetricData"], resources=["*"],
                                conditions={"StringEquals": {"cloudwatch:namespace": names.METRICS_NAMESPACE}}),
            # The layer zips it unpacks, each by its key.
            iam.PolicyStatement(actions=["s3:GetObject"],
                                resources=[asset.bucket.arn_for_objects(asset.s3_object_key) for asset in self.code]),
        ]
        task_policy = iam.Policy(self, "TaskPolicy", roles=[self.task_role], statements=statements)
        nag.acknowledge(
            task_policy, "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData supports no resource-level permissions; the statement is limited to the "
            "Warden namespace by the cloudwatch:namespace condition.")

    # -- the Task state machine ------------------------------------------------------------------

    def run_task_state(self, scope: Construct, id: str, *, command: str, sizes: str = "$", result_path: str,
                       comment: str) -> sfn.CustomState:
        """A state that runs the task definition with a task token, in `scope` (its state name is `id`):
        RunTask as its ASL (CDK's EcsRunTask sets no Group, ephemeral storage or paths for the sizes,
        and would make a security group of its own).

        `command`: a path or an intrinsic function giving what follows `python -m warden.task`.
        `sizes`: the path of the run's sizes and limits (warden.runner.task_sizes: cpu, memory,
        ephemeral_gib, heartbeat_s, timeout_s). The task's SendTaskSuccess output goes to `result_path`.
        A state machine running it needs `grant_run`; its task's callbacks, `grant_task_response`.
        """
        partition = Stack.of(self).partition
        container_override = {
            "Name": CONTAINER,
            "Command.$": command,
            "Environment": [
                {"Name": names.ENV_TASK_TOKEN, "Value.$": "$$.Task.Token"},
                {"Name": names.ENV_TASK_EXECUTION, "Value.$": "$$.Execution.Name"},
            ],
        }
        parameters: dict[str, Any] = {
            "Cluster": self.cluster_arn,
            "TaskDefinition": self.task_definition.task_definition_arn,
            "LaunchType": "FARGATE",
            "PlatformVersion": "LATEST",
            # The execution's tasks are found by it (warden.runner.stop_task_runs: Abandon, Rollback).
            "Group.$": f"States.Format('{TASK_GROUP_PREFIX}{{}}', $$.Execution.Name)",
            "NetworkConfiguration": {"AwsvpcConfiguration": {
                "Subnets": self.subnet_ids, "SecurityGroups": self.security_group_ids,
                "AssignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED"}},
            "Overrides": {"Cpu.$": f"{sizes}.cpu", "Memory.$": f"{sizes}.memory",
                          "EphemeralStorage": {"SizeInGiB.$": f"{sizes}.ephemeral_gib"},
                          "ContainerOverrides": [container_override]},
        }
        return sfn.CustomState(scope, id, state_json={
            "Type": "Task",
            "Comment": comment,
            "Resource": f"arn:{partition}:states:::ecs:runTask.waitForTaskToken",
            "HeartbeatSecondsPath": f"{sizes}.heartbeat_s",
            "TimeoutSecondsPath": f"{sizes}.timeout_s",
            "Parameters": parameters,
            "ResultPath": result_path,
        })

    def grant_run(self, role: iam.IRole) -> None:
        """Let a state machine's role run the task definition (in the stage's cluster only) and pass
        its two roles to ECS."""
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["ecs:RunTask"], resources=[self.task_definition.task_definition_arn],
            conditions={"ArnEquals": {"ecs:cluster": self.cluster_arn}}))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["iam:PassRole"], resources=[self.task_role.role_arn, self.execution_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": ECS_TASKS}}))

    def grant_task_response(self, state_machine_arn: str) -> None:
        """Let the task answer (SendTaskSuccess / Failure / Heartbeat) the tokens of another state
        machine that runs it. An ARN formatted from the machine's name: a reference would make the
        task role depend on the machine that depends on it (grant_run)."""
        self._task_response.add_resources(state_machine_arn)

    def _state_machine(self, stage: StageConfig, storage: Storage, backup: WardenFunction) -> None:
        run = self.run_task_state(
            self, "RunTask", command="$.command", result_path="$.result",
            comment="One run of a long job; the task reports with its token and heartbeats while it progresses")
        abandon = tasks.LambdaInvoke(
            self, "Abandon", lambda_function=backup.function,
            payload=sfn.TaskInput.from_object({"action": "abandon", "target.$": "$.target", "job.$": "$.job",
                                               "execution.$": "$$.Execution.Name", "error.$": "$.error"}),
            payload_response_only=True, result_path="$.abandon", retry_on_service_exceptions=False,
            task_timeout=sfn.Timeout.duration(ABANDON_TIMEOUT))
        abandon.add_retry(errors=TRANSIENT_ERRORS, interval=Duration.seconds(5), max_attempts=3, backoff_rate=2.0)
        # The run's error as Abandon names it (a Fail state may not end with a `States.*` error:
        # States.HeartbeatTimeout ends as TaskHeartbeatTimeout; warden.runner.failure_name).
        failed = sfn.Fail(self, "Failed", comment="The run failed, timed out or stopped heartbeating; abandoned",
                          error_path="$.abandon.error_name", cause_path="$.error.Cause")
        abandon_failed = sfn.Fail(self, "AbandonFailed", error="AbandonFailed",
                                  comment="The run failed and Abandon did not finish: see the audit trail and the "
                                          "record; a task left running loses its lease",
                                  cause_path="$.abandon_error.Cause")
        run.add_catch(abandon, errors=["States.ALL"], result_path="$.error")
        abandon.add_catch(abandon_failed, errors=["States.ALL"], result_path="$.abandon_error")
        abandon.next(failed)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            state_machine_name=state_machine_name(stage),
            definition_body=sfn.DefinitionBody.from_chainable(run.next(sfn.Succeed(self, "Done"))),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=MACHINE_TIMEOUT,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=encrypted_log_group(self, "StateMachineLogs", stage=stage,
                                                                key=storage.key),
                                level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        role = self.state_machine.role
        self.grant_run(role)
        nag.acknowledge(role, f"AwsSolutions-IAM5[Resource::{nag.ref(backup.function, 'Arn')}:*]",
                        "The Abandon task's grant covers the backup function and its versions and aliases "
                        "(<arn>:*); it is still one function, named.")
        nag.acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                        "Step Functions log delivery (logs:CreateLogDelivery, ...) and X-Ray tracing "
                        "(xray:PutTraceSegments, ...) support no resource-level permissions; '*' is required.")

    # -- the backup function ---------------------------------------------------------------------

    def _grant_backup(self, backup: WardenFunction) -> None:
        """Start task runs, and stop the cluster's tasks of an abandoned execution (ListTasks and
        DescribeTasks find them by group). A policy of its own: the task role shares the function's
        default policy, and a task starts no task runs."""
        policy = iam.Policy(self, "BackupFunctionPolicy", roles=[backup.role], statements=[
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[self.state_machine.state_machine_arn]),
            *self._stop_statements(),
        ])
        self._acknowledge_stop(policy)

    def _stop_statements(self) -> list[iam.PolicyStatement]:
        """List, describe and stop the stage cluster's tasks (found by their group)."""
        on_cluster = {"ArnEquals": {"ecs:cluster": self.cluster_arn}}
        return [iam.PolicyStatement(actions=["ecs:ListTasks"], resources=["*"], conditions=on_cluster),
                iam.PolicyStatement(actions=["ecs:DescribeTasks", "ecs:StopTask"], resources=[self._tasks_arn()],
                                    conditions=on_cluster)]

    def _tasks_arn(self) -> str:
        return Stack.of(self).format_arn(service="ecs", resource="task", resource_name=f"{self.cluster_name}/*")

    def _acknowledge_stop(self, policy: iam.Policy) -> None:
        nag.acknowledge(policy, "AwsSolutions-IAM5[Resource::*]",
                        "ecs:ListTasks is authorized on the cluster through the ecs:cluster condition, which the "
                        "statement sets to the stage's cluster; it takes no task resource.")
        nag.acknowledge(policy, f"AwsSolutions-IAM5[Resource::{nag.spelling(Stack.of(self), self._tasks_arn())}]",
                        "Task ids are made by ECS at each run; the grant covers the tasks of the stage's cluster "
                        "only (and the ecs:cluster condition says so again).")

    # -- the recovery function's steps -----------------------------------------------------------

    def _grant_recovery(self, stage: StageConfig, storage: Storage, recovery: WardenFunction) -> None:
        """The task role may do what the recovery function's restore and validate do beyond the backup
        function's grants — read the staging secrets, read backups (the restore re-verifies them) and
        the replica — but not its other steps' (approval requests, promotion's endpoint parameters).
        The recovery function may stop a rolled-back execution's task (warden.recovery.rollback)."""
        stack = Stack.of(self)
        statements = backups_read_statements(storage)
        staging = target_secret_arns(stack, staging_targets(stage.targets))
        if staging:
            statements.append(iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=staging))
        replication = stage.backup_protection.replication
        if replication is not None:
            statements += [iam.PolicyStatement(actions=["s3:GetObject", "s3:GetObjectVersion"],
                                               resources=[f"{replica_bucket_arn(stage, replication)}/*"]),
                           replica_key_statement(stage, replication, ["kms:Decrypt"])]
        steps = iam.Policy(self, "RecoveryStepsPolicy", roles=[self.task_role], statements=statements)
        nag.acknowledge(steps, f"AwsSolutions-IAM5[Resource::{nag.ref(storage.bucket, 'Arn')}/*]",
                        "Backup object keys are <target>/<date>/<backup id>/..., created at run time; a restore "
                        "reads the backup it recovers. Read actions only, listed one by one.")
        if replication is not None:
            replica_objects = nag.spelling(stack, replica_bucket_arn(stage, replication))
            nag.acknowledge(steps, f"AwsSolutions-IAM5[Resource::{replica_objects}/*]",
                            "The replica has the backups' keys, made at run time; a recovery from the replica reads "
                            "the backup it recovers. Read actions only.")
            acknowledge_replica_key(steps, stage, replication)
        stop = iam.Policy(self, "RecoveryFunctionPolicy", roles=[recovery.role],
                          statements=self._stop_statements())
        self._acknowledge_stop(stop)
