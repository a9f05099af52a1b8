"""Rotate function: Secrets Manager's rotation function for the stage's targets' credentials.

Secrets Manager invokes it with `{"SecretId", "ClientRequestToken", "Step"}` four times per rotation
(createSecret, setSecret, testSecret, finishSecret; see warden.rotation). The secret must be the
`secret_name` of a target of this stage with `rotation.enabled`. A failing step raises, which stops
the rotation with AWSCURRENT unchanged; the failure is audited. Passwords are never logged.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from warden.events import RotationEvent
from warden.rotation import Step, rotate_step, target_of_secret
from warden.settings import Settings
from warden.stores.audit import audit
from warden.stores.targets import load_targets

logger = Logger()
tracer = Tracer()
metrics = Metrics()
SETTINGS = Settings.from_env()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = RotationEvent.model_validate(event or {})
    target = target_of_secret(list(load_targets(SETTINGS).values()), request.secret_id)
    actor = f"function:{getattr(context, 'function_name', 'rotate')}"
    try:
        result = rotate_step(target, request.secret_id, request.token, request.step.value)
    except Exception as err:
        logger.warning("rotation step failed", extra={"target": target.name, "step": request.step.value,
                                                      "version": request.token,
                                                      "error": type(err).__name__})
        metrics.add_metric(name="RotationStepFailed", unit=MetricUnit.Count, value=1)
        audit(SETTINGS.audit_table, target=target.name, operation="rotate", step=request.step.value,
              outcome="failed", actor=actor, version=request.token, error=str(err)[:500])
        raise
    if request.step.value == Step.FINISH.value and result.outcome == "done":
        metrics.add_metric(name="CredentialsRotated", unit=MetricUnit.Count, value=1)
        audit(SETTINGS.audit_table, target=target.name, operation="rotate", step="finish", outcome="ok",
              actor=actor, version=request.token, username=result.username,
              strategy=target.rotation.strategy)
    return result.as_dict()
