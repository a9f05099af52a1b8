"""Recovery function: one step of the Recovery state machine per invocation.

Event: {"step": "preflight", "input": <RecoveryInput>, "execution": <execution id>} for the first
step; {"step": <name>, "plan": <Plan>, ...} for the others (`task_token` for request_approval,
`error` for rollback). Errors are raised with Warden's own types, so the state machine's Retry
(transient: DatabaseUnavailable) and Catch (everything else → Rollback) can name them.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from warden import recovery
from warden.config.protection import ReplicaSettings
from warden.errors import ConfigError
from warden.settings import Settings

logger = Logger()
tracer = Tracer()
SETTINGS = Settings.from_env()
REPLICA = ReplicaSettings.from_env(os.environ)  # None unless the stage replicates its backups
STEPS = ("preflight", "restore", "validate", "request_approval", "promote", "finish", "rollback")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = (event or {}).get("step")
    if step not in STEPS:
        raise ConfigError(f"unknown recovery step {step!r}; expected one of {', '.join(STEPS)}")
    logger.append_keys(step=step)
    if step == "preflight":
        plan = recovery.preflight(SETTINGS, event.get("input") or {}, str(event.get("execution", "")), REPLICA)
        return plan.as_dict()
    plan = recovery.Plan.from_event(event["plan"])
    logger.append_keys(target=plan.target, backup_id=plan.backup_id)
    if step == "restore":
        return recovery.restore(SETTINGS, plan, REPLICA)
    if step == "validate":
        return recovery.validate(SETTINGS, plan, REPLICA)
    if step == "request_approval":
        recovery.request_approval(SETTINGS, plan, str(event["task_token"]))
        return {"requested": True}
    if step == "promote":
        return recovery.promote(SETTINGS, plan, REPLICA)
    if step == "finish":
        return recovery.finish(SETTINGS, plan)
    return recovery.rollback(SETTINGS, plan, event.get("error"))
