"""Maintenance function: the due maintenance tasks of one target (scheduled), or the `tasks` asked
for (on demand). PostgreSQL VACUUM / ANALYZE / REINDEX CONCURRENTLY with statement and lock
timeouts; Neo4j index states and statistics. Metrics per target: MaintenanceDuration,
MaintenanceErrors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from warden.events import MaintenanceRequest, parse
from warden.maintenance import run_maintenance
from warden.observability import MetricUnit, actor, lambda_handler, logger, metrics
from warden.settings import Settings
from warden.stores import Stores

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
from warden.stores.targets import get_target

SETTINGS = Settings.from_env()


@lambda_handler()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(MaintenanceRequest, event)  # bad input fails here, before anything is touched
    target = get_target(SETTINGS, request.target)
    report = run_maintenance(Stores.from_settings(SETTINGS), target, actor=actor(context, request.requested_by),
                             tasks=request.tasks)
    metrics.add_dimension(name="Stage", value=SETTINGS.stage)  # stages never share metrics
    metrics.add_dimension(name="Target", value=target.name)
    metrics.add_metric(name="MaintenanceDuration", unit=MetricUnit.Seconds, value=report.duration_s)
    metrics.add_metric(name="MaintenanceErrors", unit=MetricUnit.Count, value=sum(len(t.errors) for t in report.tasks))
    logger.info("maintenance finished", extra={"target": target.name, "outcome": report.outcome,
                                               "tasks": [t.task for t in report.tasks],
                                               "duration_s": report.duration_s})
    return report.as_dict()
