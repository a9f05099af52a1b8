"""Remediate function: one CloudWatch alarm state change (EventBridge) → at most one safe action.

A malformed, foreign or unknown alarm event is logged and ignored (the invocation succeeds, so
EventBridge does not retry it). Everything else — opt-in, dry run, rate limit, lease, audit, SNS —
lives in warden.remediation. Metric per target and action: RemediationActions (by outcome).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from warden.observability import MetricUnit, actor, lambda_handler, logger, metrics
from warden.remediation import remediate
from warden.settings import Settings
from warden.stores import Stores

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SETTINGS = Settings.from_env()


class RemediateEnvironment(BaseModel):
    """What this function reads beyond Settings: the backup function it starts (infra/remediation.py)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")
    backup_function: str | None = Field(default=None, alias="WARDEN_BACKUP_FUNCTION")


ENVIRONMENT = RemediateEnvironment.model_validate(os.environ)


@lambda_handler()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = remediate(Stores.from_settings(SETTINGS), event, actor=actor(context),
                       backup_function=ENVIRONMENT.backup_function)
    if result.target and result.action:
        metrics.add_dimension(name="Stage", value=SETTINGS.stage)  # stages never share metrics
        metrics.add_dimension(name="Target", value=result.target)
        metrics.add_dimension(name="Action", value=result.action)
        metrics.add_dimension(name="Outcome", value=result.outcome)
        metrics.add_metric(name="RemediationActions", unit=MetricUnit.Count, value=1)
    logger.info("remediation decided", extra=result.as_dict())
    return result.as_dict()
