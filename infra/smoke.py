"""A tiny state machine made with the same constructs as the stack, for Step Functions smoke tests.

One `LambdaInvoke` task calls the health function. The local runtime runs its synthesized
definition on moto's interpreter; deployed, it checks a stage end to end.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import App, Duration, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra import nag
from infra.config import read_cdk_json_context
from infra.functions import WardenFunction, encrypted_log_group, grant_health
from infra.layers import SharedLayers
from infra.nag import enable_nag
from infra.storage import Storage, allow_cloudwatch_logs
from warden.config.stage import StageConfig

SMOKE_STAGE = StageConfig(name="smoke")


def build_smoke_state_machine(
    scope: Construct,
    layers: SharedLayers,
    *,
    stage: StageConfig = SMOKE_STAGE,
    storage: Storage | None = None,
    key: kms.IKey | None = None,
    id: str = "Smoke",
) -> sfn.StateMachine:
    """A Standard state machine whose single task invokes a `WardenFunction(job="health")`.

    With `storage`, the function gets the health grants of the real stack and the stage key;
    without, a key of its own (for log groups) and no data access — enough for the local runtime,
    which enforces no IAM. The task's result is the health report (`payload_response_only`).
    """
    container = Construct(scope, id)
    if key is None:
        key = storage.key if storage else _smoke_key(container)
    health = WardenFunction(container, "Health", job="health", layers=layers, stage=stage, key=key)
    if storage is not None:
        grant_health(health, storage)

    invoke = tasks.LambdaInvoke(
        container,
        "CheckHealth",
        lambda_function=health.function,
        payload_response_only=True,
        comment="Health report of one target ({'target': name}) or of all",
    )
    machine = sfn.StateMachine(
        container,
        "StateMachine",
        definition_body=sfn.DefinitionBody.from_chainable(invoke),
        state_machine_type=sfn.StateMachineType.STANDARD,
        timeout=Duration.minutes(5),
        tracing_enabled=True,
        logs=sfn.LogOptions(
            destination=encrypted_log_group(container, "Logs", stage=stage, key=key),
            level=sfn.LogLevel.ALL,
            include_execution_data=True,
        ),
    )
    _acknowledge_state_machine_role(machine, health)
    return machine


def _smoke_key(scope: Construct) -> kms.Key:
    key = kms.Key(scope, "Key", description="Warden smoke test: log encryption", enable_key_rotation=True)
    allow_cloudwatch_logs(key)
    return key


def _acknowledge_state_machine_role(machine: sfn.StateMachine, health: WardenFunction) -> None:
    nag.acknowledge(
        machine.role,
        f"AwsSolutions-IAM5[Resource::{nag.ref(health.function, 'Arn')}:*]",
        "The LambdaInvoke task's grant covers the function and its versions and aliases "
        "(<arn>:*); it is still one function, named.",
    )
    nag.acknowledge(
        machine.role,
        "AwsSolutions-IAM5[Resource::*]",
        "Step Functions log delivery (logs:CreateLogDelivery, ...) and X-Ray tracing "
        "(xray:PutTraceSegments, ...) support no resource-level permissions; '*' is required.",
    )


class SmokeStack(Stack):
    """A stack of only the smoke state machine (and its function, layers and key), for tests.

    Attributes: `layers`, `state_machine`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str = "WardenSmoke",
        *,
        stage: StageConfig = SMOKE_STAGE,
        dependency_layer_dir: Path | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.layers = SharedLayers.build(self, "Layers", dependency_layer_dir=dependency_layer_dir)
        self.state_machine = build_smoke_state_machine(self, self.layers, stage=stage)


def build_smoke_app(*, outdir: str | None = None, dependency_layer_dir: Path | None = None) -> tuple[App, SmokeStack]:
    """An app holding just the SmokeStack, cdk-nag on. `app.synth()` gives its template."""
    app = App(context=read_cdk_json_context(), outdir=outdir)  # the same feature flags as the app
    enable_nag(app)
    return app, SmokeStack(app, dependency_layer_dir=dependency_layer_dir)
