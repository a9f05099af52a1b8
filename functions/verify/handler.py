"""Verify function: re-read a stored backup, recompute SHA-256 and size, compare with the manifest
and the catalog; the record becomes VERIFIED or CORRUPT. Without a backup id, verifies the newest
COMPLETED (not yet verified) backup of the target. Metric per target: BackupVerified / BackupCorrupt."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from warden.backup import verify_backup
from warden.config.protection import ReplicaSettings
from warden.events import VerifyRequest
from warden.models import BackupStatus
from warden.replication import refresh_replicas
from warden.settings import Settings
from warden.stores.catalog import Catalog
from warden.stores.targets import get_target

logger = Logger()
tracer = Tracer()
metrics = Metrics()
SETTINGS = Settings.from_env()
REPLICA = ReplicaSettings.from_env(os.environ)  # None unless the stage replicates its backups


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = VerifyRequest.model_validate(event or {})
    target = get_target(SETTINGS, request.target)
    metrics.add_dimension(name="Target", value=target.name)
    backup_id = request.backup_id
    if backup_id is None:
        assert SETTINGS.catalog_table
        newest = Catalog(SETTINGS.catalog_table).latest(target.name, frozenset({BackupStatus.COMPLETED}))
        if newest is None:
            metrics.add_metric(name="BackupVerifyNothingToDo", unit=MetricUnit.Count, value=1)
            if REPLICA is not None:  # replicas still PENDING are looked at again all the same
                refresh_replicas(SETTINGS, REPLICA, target.name)
            return {"target": target.name, "status": "nothing to verify"}
        backup_id = newest.backup_id
    actor = f"function:{context.function_name}" + (f" for {request.requested_by}" if request.requested_by else "")
    record = verify_backup(SETTINGS, target.name, backup_id, actor=actor)
    if REPLICA is not None:  # which backups have a replica in the second region (the catalog says)
        for checked in refresh_replicas(SETTINGS, REPLICA, target.name):
            if checked.backup_id == record.backup_id:
                record = checked
                metrics.add_metric(name=f"Replica{(checked.replica or '').title()}", unit=MetricUnit.Count,
                                   value=1)
    corrupt = record.status is BackupStatus.CORRUPT
    metrics.add_metric(name="BackupCorrupt" if corrupt else "BackupVerified", unit=MetricUnit.Count, value=1)
    (logger.error if corrupt else logger.info)(
        "backup verified", extra={"target": target.name, "backup_id": backup_id, "status": record.status.value})
    return record.model_dump(mode="json")
