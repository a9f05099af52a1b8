"""Credential rotation: the rotate function (functions/rotate) and one Secrets Manager rotation
schedule per target with `rotation.enabled`. Nothing at all when no target rotates.

The targets' secrets are the operator's, not the stack's; `AWS::SecretsManager::RotationSchedule`
takes any secret by name or ARN in `SecretId`, so the stack attaches rotation to them without owning
them (deleting the stack removes the schedule, never the secret).

The function may read, write and relabel the rotated secrets and nothing else (and read the master
secrets of alternating targets); Secrets Manager may invoke it from this account only.

The rotate function is a row of the job table (infra/jobs.py), made only when a target rotates:
`grant_rotated_secrets` is its own grant, `rotate_secrets` attaches the schedules to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra import nag
from infra.functions import WardenFunction
from warden.config.stage import StageConfig
from warden.config.target import Target

ROTATE_JOB = "rotate"
SECRETS_MANAGER = "secretsmanager.amazonaws.com"
# What each rotation step does to a rotated secret (warden.rotation), and nothing more.
ROTATED_SECRET_ACTIONS = [
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
]


@dataclass(frozen=True)
class Rotation:
    function: WardenFunction
    schedules: dict[str, secretsmanager.CfnRotationSchedule]  # by target name
    permission: lambda_.CfnPermission | None = None  # Secrets Manager's invoke permission

    def build_target(self, scope: Construct, target: Target) -> None:
        """`target`'s rotation schedule (when it rotates), in `scope` (its group stack's TargetResources)."""
        if not target.rotation.enabled:
            return
        schedule = secretsmanager.CfnRotationSchedule(
            scope,
            f"Rotation{_pascal(target.name)}",
            secret_id=target.secret_name,
            rotation_lambda_arn=self.function.function.function_arn,
            rotation_rules=secretsmanager.CfnRotationSchedule.RotationRulesProperty(
                schedule_expression=target.rotation.schedule,
                duration=target.rotation.window,
            ),
            # The first rotation waits for the schedule; `aws secretsmanager rotate-secret` starts one now.
            rotate_immediately_on_update=False,
        )
        schedule.node.add_dependency(self.function.function)
        if self.permission is not None:
            schedule.node.add_dependency(self.permission)
        self.schedules[target.name] = schedule


def rotated_targets(targets: list[Target]) -> list[Target]:
    return [t for t in targets if t.rotation.enabled]


def secret_arn(stack: Stack, name_or_arn: str) -> str:
    """The IAM resource of a secret given by name (`<name>-??????`: Secrets Manager appends six
    random characters to the ARN) or by ARN (as is)."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    return stack.format_arn(service="secretsmanager", resource="secret", resource_name=f"{name_or_arn}-??????",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME)


def stage_rotates(stage: StageConfig) -> bool:
    """Whether any target of `stage` rotates its credentials (else there is no rotate function)."""
    return bool(rotated_targets(stage.targets))


def grant_rotated_secrets(fn: WardenFunction, targets: list[Target]) -> None:
    """Read, write and relabel the rotated secrets of `targets` (and read the master secrets of
    alternating ones); GetRandomPassword, which acts on no resource."""
    targets = rotated_targets(targets)
    stack = Stack.of(fn)
    rotated = sorted({secret_arn(stack, t.secret_name) for t in targets})
    fn.add_to_policy(iam.PolicyStatement(actions=ROTATED_SECRET_ACTIONS, resources=rotated))
    masters = sorted({secret_arn(stack, t.rotation.master_secret_name) for t in targets
                      if t.rotation.master_secret_name})
    if masters:
        fn.add_to_policy(iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=masters))
    fn.add_to_policy(iam.PolicyStatement(actions=["secretsmanager:GetRandomPassword"], resources=["*"]))
    nag.acknowledge(
        fn.role,
        "AwsSolutions-IAM5[Resource::*]",
        "secretsmanager:GetRandomPassword acts on no resource and supports no resource-level permission; "
        "'*' is the only resource it accepts. Every other secret action is limited to the rotated secrets.",
    )


def rotate_secrets(scope: Construct, *, stage: StageConfig, function: WardenFunction,
                   per_target: bool = True) -> Rotation:
    """A rotation schedule on each rotating target's secret, in `scope` (the stage's stack), run by
    `function`, which Secrets Manager of this account only may invoke. `per_target` False: each
    target's schedule is built by `Rotation.build_target` (infra/targets.py)."""
    fn = function
    permission = fn.function.add_permission(
        "SecretsManagerInvoke",
        principal=iam.ServicePrincipal(SECRETS_MANAGER),
        source_account=Stack.of(scope).account,
    )
    rotation = Rotation(function=fn, schedules={}, permission=permission)
    if per_target:
        for target in rotated_targets(stage.targets):
            rotation.build_target(scope, target)
    return rotation


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))

