"""Recovery function: one step of the Recovery state machine per invocation.

Event: {"step": "preflight", "input": <RecoveryInput>, "execution": <execution id>} for the first
step; {"step": <name>, "plan": <Plan>, ...} for the others (`task_token` for request_approval,
`error` for rollback). Errors are raised with Warden's own types, so the state machine's Retry
(transient: DatabaseUnavailable) and Catch (everything else → Rollback) can name them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from warden import recovery
from warden.config.protection import ReplicaSettings
from warden.events import RecoveryStep, parse
from warden.observability import lambda_handler, logger
from warden.settings import Settings
from warden.stores import Stores

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SETTINGS = Settings.from_env()
REPLICA = ReplicaSettings.from_env(os.environ)  # None unless the stage replicates its backups


@lambda_handler(with_metrics=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(RecoveryStep, event)
    step = request.step
    logger.append_keys(step=step)
    if step == "preflight":
        plan = recovery.preflight(Stores.from_settings(SETTINGS), request.input or {}, request.execution, REPLICA)
        return plan.as_dict()
    assert request.plan is not None  # RecoveryStep requires it past preflight
    plan = recovery.Plan.from_event(request.plan)
    logger.append_keys(target=plan.target, backup_id=plan.backup_id)
    if step == "restore":
        return recovery.restore(Stores.from_settings(SETTINGS), plan, REPLICA)
    if step == "validate":
        return recovery.validate(Stores.from_settings(SETTINGS), plan, REPLICA)
    if step == "request_approval":
        recovery.request_approval(Stores.from_settings(SETTINGS), plan, str(request.task_token))
        return {"requested": True}
    if step == "promote":
        return recovery.promote(Stores.from_settings(SETTINGS), plan, REPLICA)
    if step == "finish":
        return recovery.finish(Stores.from_settings(SETTINGS), plan)
    return recovery.rollback(Stores.from_settings(SETTINGS), plan, request.error)
