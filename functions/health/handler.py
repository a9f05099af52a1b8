"""Health function: checks one target (or every target of the stage) and reports.

Scheduled per target by EventBridge Scheduler (`{"target": "<name>"}`); the CLI and the smoke state
machine invoke it too. Returns the JSON health report; emits one metric per target and check.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from warden.config import get_target, load_targets
from warden.health import check_targets
from warden.models import HealthRequest, HealthStatus
from warden.settings import Settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
SETTINGS = Settings.from_env()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = HealthRequest.model_validate(event or {})
    config = SETTINGS
    targets = [get_target(config, request.target)] if request.target else list(load_targets(config).values())
    report = check_targets(config.stage, targets)
    for target in report.targets:
        healthy = 1.0 if target.status is HealthStatus.HEALTHY else 0.0
        with single_metric(name="Healthy", unit=MetricUnit.Count, value=healthy,
                           namespace=metrics.namespace) as metric:
            metric.add_dimension(name="Target", value=target.target)
        for check in target.checks:
            with single_metric(name="CheckDuration", unit=MetricUnit.Milliseconds, value=check.duration_ms,
                               namespace=metrics.namespace) as metric:
                metric.add_dimension(name="Target", value=target.target)
                metric.add_dimension(name="Check", value=check.name)
    metrics.add_metric(name="TargetsChecked", unit=MetricUnit.Count, value=len(report.targets))
    logger.info("health checked", extra={"status": report.status.value, "targets": len(report.targets)})
    return report.model_dump(mode="json")
