"""Backup function: one backup of one target (scheduled per target, or on demand).

A retried delivery of the same scheduled event returns the first result (idempotency on
`target` + `scheduled_time`); a second trigger while a backup runs returns "already running".
Metrics per target: BackupSuccess / BackupFailure, BackupDuration, BackupSize.
A backup still running FINISH_MARGIN_S before the invocation would end is stopped, its upload
aborted and its record FAILED with the reason (BackupOutOfTime), instead of being killed mid-write.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from warden.backup import FINISH_MARGIN_S, run_backup
from warden.events import BackupRequest
from warden.models import BackupStatus
from warden.settings import Settings
from warden.stores.catalog import Catalog
from warden.stores.targets import get_target

logger = Logger()
tracer = Tracer()
metrics = Metrics()
SETTINGS = Settings.from_env()
_persistence = DynamoDBPersistenceLayer(table_name=SETTINGS.state_table or "unset", key_attr="pk",
                                        sort_key_attr="sk")
_idempotency = IdempotencyConfig(event_key_jmespath="[target, scheduled_time]",
                                 expires_after_seconds=2 * 86400, raise_on_no_idempotency_key=True)


def back_up(request: dict[str, Any], actor: str, deadline: float | None = None) -> dict[str, Any]:
    parsed = BackupRequest.model_validate(request)
    target = get_target(SETTINGS, parsed.target)
    metrics.add_dimension(name="Target", value=target.name)
    try:
        outcome = run_backup(SETTINGS, target, actor=actor, trigger=parsed.trigger, deadline=deadline)
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


# Scheduled runs carry `scheduled_time`: a retried delivery returns the first run's result.
back_up_once = idempotent_function(data_keyword_argument="request", persistence_store=_persistence,
                                   config=_idempotency)(back_up)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = BackupRequest.model_validate(event or {})  # bad input fails here, before anything is touched
    actor = f"function:{context.function_name}" + (f" for {request.requested_by}" if request.requested_by else "")
    # The export must stop while there is time left to abort the upload and record why.
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - FINISH_MARGIN_S
    if request.scheduled_time is None:
        return back_up(request=request.model_dump(mode="json"), actor=actor, deadline=deadline)
    _idempotency.register_lambda_context(context)
    return back_up_once(request=request.model_dump(mode="json"), actor=actor, deadline=deadline)
