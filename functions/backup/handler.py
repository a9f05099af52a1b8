"""Backup function: one backup of one target (scheduled per target, or on demand).

A retried delivery of the same scheduled event returns the first result (idempotency on
`target` + `scheduled_time`); a second trigger while a backup runs returns "already running".
Metrics per target: BackupSuccess / BackupFailure, BackupDuration, BackupSize.
A backup still running FINISH_MARGIN_S before the invocation would end is stopped, its upload
aborted and its record FAILED with the reason (BackupOutOfTime), instead of being killed mid-write.

Long backups run on ECS Fargate (docs/fargate.md): the function chooses the runner (warden.runner)
and hands a Fargate backup over to the stage's Task state machine; an `auto` target's backup that
runs out of time on Lambda is handed over in the same invocation. `{"action": "abandon", ...}` is
the Task state machine's Abandon step, for every job it runs (a backup, a maintenance run): stop the
execution's task and clean up after it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from warden import runner
from warden.backup import BACKUP_TIMEOUT_S, FINISH_MARGIN_S, BackupOutOfTime, run_backup
from warden.config.target import Target
from warden.events import AbandonTaskRequest, BackupRequest, parse
from warden.models import BackupStatus
from warden.observability import MetricUnit, actor, lambda_handler, logger, metrics
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.catalog import Catalog
from warden.stores.targets import get_target

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
    from aws_lambda_powertools.utilities.typing import LambdaContext

SETTINGS = Settings.from_env()


def back_up(request: dict[str, Any], actor: str, deadline: float | None = None) -> dict[str, Any]:
    parsed = BackupRequest.model_validate(request)
    target = get_target(SETTINGS, parsed.target)
    metrics.add_dimension(name="Stage", value=SETTINGS.stage)  # stages never share metrics
    metrics.add_dimension(name="Target", value=target.name)
    stores = Stores.from_settings(SETTINGS)
    budget = deadline - time.monotonic() if deadline is not None else float(BACKUP_TIMEOUT_S - FINISH_MARGIN_S)
    choice = runner.runner_for(stores, target, requested=parsed.runner, lambda_budget_s=budget)
    if choice.runner == "fargate":
        return _hand_over(target, parsed, actor, choice.reason)
    try:
        outcome = run_backup(stores, target, actor=actor, trigger=parsed.trigger, deadline=deadline)
    except BackupOutOfTime as err:
        if parsed.runner is None and target.runner == "auto" and runner.fargate_available(SETTINGS):
            handed = _hand_over(target, parsed, actor, f"the Lambda attempt ran out of time: {err}")
            handed["backup_id"] = err.backup_id  # the Lambda attempt's FAILED record
            handed["error"] = runner.continue_on_fargate(stores, target, err.backup_id, handed["execution_arn"])
            return handed
        metrics.add_metric(name="BackupFailure", unit=MetricUnit.Count, value=1)
        raise
    except Exception:
        metrics.add_metric(name="BackupFailure", unit=MetricUnit.Count, value=1)
        raise
    if outcome.record is None:
        logger.info("backup already running", extra={"target": target.name})
        return {"target": target.name, "status": "already running", "detail": outcome.already_running}
    record = outcome.record
    if record.status is BackupStatus.RUNNING:  # an RDS snapshot still being made: settled by a later run
        logger.info("snapshot still being created", extra={"target": target.name, "backup_id": record.backup_id})
        return record.model_dump(mode="json")
    metrics.add_metric(name="BackupSuccess", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="BackupDuration", unit=MetricUnit.Seconds, value=record.duration_s or 0)
    metrics.add_metric(name="BackupSize", unit=MetricUnit.Bytes, value=record.size_bytes or 0)
    if SETTINGS.catalog_table:  # what the target keeps in S3 now: the storage-budget alarm watches it
        metrics.add_metric(name="StoredBytes", unit=MetricUnit.Bytes,
                           value=Catalog(SETTINGS.catalog_table).stored_bytes(target.name))
    logger.info("backup finished", extra={"target": target.name, "backup_id": record.backup_id,
                                          "size_bytes": record.size_bytes})
    return record.model_dump(mode="json")


def _hand_over(target: Target, request: BackupRequest, actor: str, reason: str) -> dict[str, Any]:
    """Start the backup as a task run on Fargate; what the function answers."""
    execution_arn = runner.hand_over(SETTINGS, target, "backup", request.trigger, actor)
    metrics.add_metric(name="BackupHandedOver", unit=MetricUnit.Count, value=1)
    logger.info("backup handed over to Fargate", extra={"target": target.name, "execution_arn": execution_arn,
                                                        "reason": reason})
    return {"target": target.name, "status": "handed over", "runner": "fargate", "execution_arn": execution_arn,
            "reason": reason}


def abandon(request: AbandonTaskRequest, actor: str) -> dict[str, Any]:
    """The Task state machine's Abandon step: the execution's task stopped, its leftovers cleaned up."""
    metrics.add_dimension(name="Stage", value=SETTINGS.stage)
    metrics.add_dimension(name="Target", value=request.target)
    result = runner.abandon(Stores.from_settings(SETTINGS), request.target, request.execution, request.error_name,
                            request.error_text, actor, job=request.job)
    if result["counts_failure"]:  # the job's own failure count: a maintenance run is no failed backup
        failure = "MaintenanceErrors" if result["job"] == "maintenance" else "BackupFailure"
        metrics.add_metric(name=failure, unit=MetricUnit.Count, value=1)
    logger.info("task run abandoned", extra={k: v for k, v in result.items() if k != "counts_failure"})
    return result


@functools.cache
def _idempotent_back_up() -> tuple[IdempotencyConfig, Callable[..., dict[str, Any]], type[Exception]]:
    """`back_up` made idempotent on the scheduled event (`target` + `scheduled_time`) in the state
    table; built on the first scheduled run, since powertools' idempotency imports boto3."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

    persistence = DynamoDBPersistenceLayer(table_name=SETTINGS.state_table or "unset", key_attr="pk",
                                           sort_key_attr="sk")
    config = IdempotencyConfig(event_key_jmespath="[target, scheduled_time]", expires_after_seconds=2 * 86400,
                               raise_on_no_idempotency_key=True)
    once = idempotent_function(data_keyword_argument="request", persistence_store=persistence, config=config)(back_up)
    return config, once, IdempotencyAlreadyInProgressError


@lambda_handler()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, dict) and "action" in event:  # the Task state machine's Abandon step
        return abandon(parse(AbandonTaskRequest, event), actor(context))
    request = parse(BackupRequest, event)  # bad input fails here, before anything is touched
    by = actor(context, request.requested_by)
    # The export must stop while there is time left to abort the upload and record why.
    budget = context.get_remaining_time_in_millis() / 1000 - FINISH_MARGIN_S
    if SETTINGS.lambda_budget_s is not None:  # a knob: tests make a backup not fit
        budget = min(budget, SETTINGS.lambda_budget_s)
    deadline = time.monotonic() + budget
    if request.scheduled_time is None:
        return back_up(request=request.model_dump(mode="json"), actor=by, deadline=deadline)
    # Scheduled runs carry `scheduled_time`: a retried delivery returns the first run's result, and
    # one that arrives while the first still runs answers like a second trigger does.
    config, back_up_once, in_progress = _idempotent_back_up()
    config.register_lambda_context(context)
    try:
        return back_up_once(request=request.model_dump(mode="json"), actor=by, deadline=deadline)
    except in_progress:
        logger.info("backup already running", extra={"target": request.target,
                                                     "scheduled_time": request.scheduled_time})
        return {"target": request.target, "status": "already running",
                "detail": f"the delivery of the run scheduled at {request.scheduled_time} is still in progress"}
