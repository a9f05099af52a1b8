"""Maintenance function: the due maintenance tasks of one target (scheduled), or the `tasks` asked
for (on demand). PostgreSQL VACUUM / ANALYZE / REINDEX CONCURRENTLY with statement and lock
timeouts; Neo4j index states and statistics. Metrics per target: MaintenanceDuration,
MaintenanceErrors.

Maintenance that does not fit one invocation runs on ECS Fargate (docs/fargate.md, "Maintenance on
Fargate"): the function chooses the runner (warden.runner.maintenance_runner_for) and hands a Fargate
run over to the stage's Task state machine, answering "handed over" with the execution's ARN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from warden import runner
from warden.config.target import Target
from warden.events import MaintenanceRequest, parse
from warden.maintenance import check_tasks, run_maintenance
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
    check_tasks(target, request.tasks)
    metrics.add_dimension(name="Stage", value=SETTINGS.stage)  # stages never share metrics
    metrics.add_dimension(name="Target", value=target.name)
    by = actor(context, request.requested_by)
    stores = Stores.from_settings(SETTINGS)
    choice = runner.maintenance_runner_for(stores, target, tasks=request.tasks, requested=request.runner)
    if choice.runner == "fargate":
        return _hand_over(target, request, by, choice.reason)
    report = run_maintenance(stores, target, actor=by, tasks=request.tasks)
    metrics.add_metric(name="MaintenanceDuration", unit=MetricUnit.Seconds, value=report.duration_s)
    metrics.add_metric(name="MaintenanceErrors", unit=MetricUnit.Count, value=sum(len(t.errors) for t in report.tasks))
    logger.info("maintenance finished", extra={"target": target.name, "outcome": report.outcome,
                                               "tasks": [t.task for t in report.tasks],
                                               "duration_s": report.duration_s})
    return report.as_dict()


def _hand_over(target: Target, request: MaintenanceRequest, by: str, reason: str) -> dict[str, Any]:
    """Start the maintenance as a task run on Fargate; what the function answers."""
    execution_arn = runner.hand_over(SETTINGS, target, "maintenance", request.trigger, by, tasks=request.tasks)
    metrics.add_metric(name="MaintenanceHandedOver", unit=MetricUnit.Count, value=1)
    logger.info("maintenance handed over to Fargate", extra={"target": target.name, "execution_arn": execution_arn,
                                                             "reason": reason})
    return {"target": target.name, "status": "handed over", "runner": "fargate", "execution_arn": execution_arn,
            "reason": reason}
