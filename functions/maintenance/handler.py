"""Maintenance function: the due maintenance tasks of one target (scheduled), or the `tasks` asked
for (on demand). PostgreSQL VACUUM / ANALYZE / REINDEX CONCURRENTLY with statement and lock
timeouts; Neo4j index states and statistics. Metrics per target: MaintenanceDuration,
MaintenanceErrors."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from warden.events import MaintenanceRequest
from warden.maintenance import run_maintenance
from warden.settings import Settings
from warden.stores.targets import get_target

logger = Logger()
tracer = Tracer()
metrics = Metrics()
SETTINGS = Settings.from_env()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = MaintenanceRequest.model_validate(event or {})  # bad input fails here, before anything is touched
    target = get_target(SETTINGS, request.target)
    actor = f"function:{context.function_name}" + (f" for {request.requested_by}" if request.requested_by else "")
    report = run_maintenance(SETTINGS, target, actor=actor, tasks=request.tasks)
    metrics.add_dimension(name="Target", value=target.name)
    metrics.add_metric(name="MaintenanceDuration", unit=MetricUnit.Seconds, value=report.duration_s)
    metrics.add_metric(name="MaintenanceErrors", unit=MetricUnit.Count, value=sum(len(t.errors) for t in report.tasks))
    logger.info("maintenance finished", extra={"target": target.name, "outcome": report.outcome,
                                               "tasks": [t.task for t in report.tasks],
                                               "duration_s": report.duration_s})
    return report.as_dict()
