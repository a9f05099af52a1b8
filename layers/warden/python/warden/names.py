"""The names the stack, the functions and the CLI must agree on, in one place: the environment
variables the stack sets on a function (read back by `warden.settings.Settings`), the outputs of a
deployed stack (read by the CLI to find a stage), and the Parameter Store paths both sides use.

Plain constants and string formatting only: anything may import this module, a cold start included.
"""

from __future__ import annotations

from typing import Final

# -- environment of a function ------------------------------------------------------------------

ENV_PREFIX: Final = "WARDEN_"  # Settings.from_env reads only the variables that start with it

# Set on every function by infra.functions.WardenFunction.
ENV_STAGE: Final = "WARDEN_STAGE"
ENV_FUNCTION: Final = "WARDEN_FUNCTION"  # the job: functions/<job>/handler.py
ENV_POWERTOOLS_SERVICE_NAME: Final = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_METRICS_NAMESPACE: Final = "POWERTOOLS_METRICS_NAMESPACE"
SERVICE_NAME: Final = "warden"  # POWERTOOLS_SERVICE_NAME: the `service` dimension of every metric
METRICS_NAMESPACE: Final = "Warden"  # POWERTOOLS_METRICS_NAMESPACE of every function (docs/metrics.md)

# Set by the grant that gives a function the resource (infra/functions.py).
ENV_CATALOG_TABLE: Final = "WARDEN_CATALOG_TABLE"
ENV_AUDIT_TABLE: Final = "WARDEN_AUDIT_TABLE"
ENV_STATE_TABLE: Final = "WARDEN_STATE_TABLE"
ENV_BUCKET: Final = "WARDEN_BUCKET"
ENV_TOPIC_ARN: Final = "WARDEN_TOPIC_ARN"
ENV_KMS_KEY_ID: Final = "WARDEN_KMS_KEY_ID"
ENV_PG_BIN_DIR: Final = "WARDEN_PG_BIN_DIR"  # where the TLS-capable pg_dump / pg_restore live
ENV_BACKUP_FUNCTION: Final = "WARDEN_BACKUP_FUNCTION"  # remediate: the function that starts a backup
# verify and recovery, when the stage replicates its backups (warden.config.protection.ReplicaSettings).
ENV_REPLICA_BUCKET: Final = "WARDEN_REPLICA_BUCKET"
ENV_REPLICA_REGION: Final = "WARDEN_REPLICA_REGION"
ENV_REPLICA_KMS_KEY: Final = "WARDEN_REPLICA_KMS_KEY"
# The backup function and the task (docs/fargate.md): the stage's Task state machine and ECS cluster,
# the task run's Step Functions token, and the knobs of a run (tests cut them short).
ENV_TASK_STATE_MACHINE_ARN: Final = "WARDEN_TASK_STATE_MACHINE_ARN"
ENV_TASK_CLUSTER: Final = "WARDEN_TASK_CLUSTER"
ENV_TASK_TOKEN: Final = "WARDEN_TASK_TOKEN"  # noqa: S105 - the variable's name
ENV_TASK_EXECUTION: Final = "WARDEN_TASK_EXECUTION"  # the Task state machine execution's name ($$.Execution.Name)
ENV_TASK_LEASE_TTL_S: Final = "WARDEN_TASK_LEASE_TTL_S"
ENV_PROGRESS_INTERVAL_S: Final = "WARDEN_PROGRESS_INTERVAL_S"
ENV_LAMBDA_BUDGET_S: Final = "WARDEN_LAMBDA_BUDGET_S"

# -- a deployed stage ---------------------------------------------------------------------------

STACK_NAME: Final = "Warden-{stage}"

# Stack outputs (infra.stack.WardenStack): what the CLI reads to find a stage's resources.
OUTPUT_CATALOG_TABLE: Final = "CatalogTable"
OUTPUT_AUDIT_TABLE: Final = "AuditTable"
OUTPUT_STATE_TABLE: Final = "StateTable"
OUTPUT_BUCKET: Final = "Bucket"
OUTPUT_TOPIC: Final = "Topic"
OUTPUT_KEY: Final = "Key"
OUTPUT_RECOVERY_STATE_MACHINE: Final = "RecoveryStateMachine"
# Only a stage with a network; made inside the Network construct, so the output key CloudFormation
# shows is `Network<this><hash>` (match it with `"DbClientsSecurityGroup" in key`).
OUTPUT_DB_CLIENTS_SECURITY_GROUP: Final = "DbClientsSecurityGroup"
FUNCTION_OUTPUT_SUFFIX: Final = "Function"  # one output per function: `<Job>Function`, e.g. `LicenseCheckFunction`

# Output → the environment variable of a function that holds the same value.
OUTPUT_ENV = {
    OUTPUT_CATALOG_TABLE: ENV_CATALOG_TABLE,
    OUTPUT_AUDIT_TABLE: ENV_AUDIT_TABLE,
    OUTPUT_STATE_TABLE: ENV_STATE_TABLE,
    OUTPUT_BUCKET: ENV_BUCKET,
    OUTPUT_TOPIC: ENV_TOPIC_ARN,
    OUTPUT_KEY: ENV_KMS_KEY_ID,
}

# -- Parameter Store ----------------------------------------------------------------------------

TARGETS_PATH: Final = "/warden/{stage}/targets"  # one parameter per target below it, its configuration as JSON
TARGET_PARAMETER: Final = TARGETS_PATH + "/{target}"
ACTIVE_PARAMETER: Final = "/warden/{stage}/active/{target}"  # the endpoint a swap promotion moves

# -- alarms -------------------------------------------------------------------------------------

ALARM_PREFIX: Final = "warden-{stage}-"  # every alarm of a stage is named `warden-<stage>-...`


def stack_name(stage: str) -> str:
    """The CloudFormation stack of a stage: `Warden-<stage>`."""
    return STACK_NAME.format(stage=stage)


def function_output(job: str) -> str:
    """The stack output naming the function of `job`: `license_check` → `LicenseCheckFunction`."""
    return job.replace("_", " ").title().replace(" ", "") + FUNCTION_OUTPUT_SUFFIX


def job_of_output(output: str) -> str:
    """The job of a function output: `LicenseCheckFunction` → `license_check` (function_output's inverse)."""
    stem = output.removesuffix(FUNCTION_OUTPUT_SUFFIX)
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(stem))


def targets_path(stage: str) -> str:
    """The Parameter Store path under which a stage's target configurations live (no trailing slash)."""
    return TARGETS_PATH.format(stage=stage)


def target_parameter(stage: str, target: str) -> str:
    """The Parameter Store name of one target's configuration."""
    return TARGET_PARAMETER.format(stage=stage, target=target)


def active_parameter(stage: str, target: str) -> str:
    """The Parameter Store name of a target's active endpoint (moved by a swap promotion)."""
    return ACTIVE_PARAMETER.format(stage=stage, target=target)


def alarm_prefix(stage: str) -> str:
    """The prefix of every alarm name of a stage."""
    return ALARM_PREFIX.format(stage=stage)


FLEET_OUTPUT_SUFFIX: Final = "FleetStateMachine"  # one output per fleet job: `<Job>FleetStateMachine`


def fleet_output(job: str) -> str:
    """The stack output naming the Fleet state machine of `job`: `license_check` → `LicenseCheckFleetStateMachine`."""
    return job.replace("_", " ").title().replace(" ", "") + FLEET_OUTPUT_SUFFIX
