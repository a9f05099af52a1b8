"""Verify function: re-read a stored backup, recompute SHA-256 and size, compare with the manifest
and the catalog; the record becomes VERIFIED or CORRUPT. Without a backup id, verifies the newest
COMPLETED (not yet verified) backup of the target. Metric per target: BackupVerified / BackupCorrupt."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from warden.backup import verify_backup
from warden.config.protection import ReplicaSettings
from warden.events import VerifyRequest, parse
from warden.models import BackupStatus
from warden.observability import MetricUnit, actor, lambda_handler, logger, metrics
from warden.replication import refresh_replicas
from warden.settings import Settings
from warden.stores import Stores

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
from warden.stores.catalog import Catalog
from warden.stores.targets import get_target

SETTINGS = Settings.from_env()
REPLICA = ReplicaSettings.from_env(os.environ)  # None unless the stage replicates its backups


@lambda_handler()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(VerifyRequest, event)
    target = get_target(SETTINGS, request.target)
    metrics.add_dimension(name="Stage", value=SETTINGS.stage)  # stages never share metrics
    metrics.add_dimension(name="Target", value=target.name)
    backup_id = request.backup_id
    if backup_id is None:
        assert SETTINGS.catalog_table
        newest = Catalog(SETTINGS.catalog_table).latest(target.name, frozenset({BackupStatus.COMPLETED}))
        if newest is None:
            metrics.add_metric(name="BackupVerifyNothingToDo", unit=MetricUnit.Count, value=1)
            if REPLICA is not None:  # replicas still PENDING are looked at again all the same
                refresh_replicas(Stores.from_settings(SETTINGS), REPLICA, target.name)
            return {"target": target.name, "status": "nothing to verify"}
        backup_id = newest.backup_id
    record = verify_backup(Stores.from_settings(SETTINGS), target.name, backup_id,
                           actor=actor(context, request.requested_by))
    if REPLICA is not None:  # which backups have a replica in the second region (the catalog says)
        for checked in refresh_replicas(Stores.from_settings(SETTINGS), REPLICA, target.name):
            if checked.backup_id == record.backup_id:
                record = checked
                metrics.add_metric(name=f"Replica{(checked.replica or '').title()}", unit=MetricUnit.Count,
                                   value=1)
    corrupt = record.status is BackupStatus.CORRUPT
    metrics.add_metric(name="BackupCorrupt" if corrupt else "BackupVerified", unit=MetricUnit.Count, value=1)
    (logger.error if corrupt else logger.info)(
        "backup verified", extra={"target": target.name, "backup_id": backup_id, "status": record.status.value})
    return record.model_dump(mode="json")
