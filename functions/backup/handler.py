"""Backup function: one backup of one target (scheduled per target, or on demand).

A retried delivery of the same scheduled event returns the first result (idempotency on
`target` + `scheduled_time`); a second trigger while a backup runs returns "already running".
Metrics per target: BackupSuccess / BackupFailure, BackupDuration, BackupSize.
A backup still running FINISH_MARGIN_S before the invocation would end is stopped, its upload
aborted and its record FAILED with the reason (BackupOutOfTime), instead of being killed mid-write.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from warden.backup import FINISH_MARGIN_S, run_backup
from warden.events import BackupRequest, parse
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
    try:
        outcome = run_backup(Stores.from_settings(SETTINGS), target, actor=actor, trigger=parsed.trigger,
                             deadline=deadline)
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
    request = parse(BackupRequest, event)  # bad input fails here, before anything is touched
    by = actor(context, request.requested_by)
    # The export must stop while there is time left to abort the upload and record why.
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - FINISH_MARGIN_S
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
