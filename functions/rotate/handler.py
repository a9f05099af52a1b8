"""Rotate function: Secrets Manager's rotation function for the stage's targets' credentials.

Secrets Manager invokes it with `{"SecretId", "ClientRequestToken", "Step"}` four times per rotation
(createSecret, setSecret, testSecret, finishSecret; see warden.rotation). The secret must be the
`secret_name` of a target of this stage with `rotation.enabled`. A failing step raises, which stops
the rotation with AWSCURRENT unchanged; the failure is audited. Passwords are never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from warden.events import RotationEvent, parse
from warden.observability import MetricUnit, actor, lambda_handler, logger, metrics
from warden.rotation import Step, rotate_step, target_of_secret
from warden.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
from warden.stores.audit import audit
from warden.stores.targets import load_targets

SETTINGS = Settings.from_env()


@lambda_handler()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(RotationEvent, event)
    target = target_of_secret(list(load_targets(SETTINGS).values()), request.secret_id)
    by = actor(context)
    metrics.add_dimension(name="Stage", value=SETTINGS.stage)  # stages never share metrics
    try:
        result = rotate_step(target, request.secret_id, request.token, request.step.value)
    except Exception as err:
        logger.warning("rotation step failed", extra={"target": target.name, "step": request.step.value,
                                                      "version": request.token,
                                                      "error": type(err).__name__})
        metrics.add_metric(name="RotationStepFailed", unit=MetricUnit.Count, value=1)
        audit(SETTINGS.audit_table, target=target.name, operation="rotate", step=request.step.value,
              outcome="failed", actor=by, version=request.token, error=str(err)[:500])
        raise
    if request.step.value == Step.FINISH.value and result.outcome == "done":
        metrics.add_metric(name="CredentialsRotated", unit=MetricUnit.Count, value=1)
        audit(SETTINGS.audit_table, target=target.name, operation="rotate", step="finish", outcome="ok",
              actor=by, version=request.token, username=result.username,
              strategy=target.rotation.strategy)
    return result.as_dict()
