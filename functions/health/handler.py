"""Health function: checks one target (or every target of the stage) and reports.

Scheduled per target by EventBridge Scheduler (`{"target": "<name>"}`); the CLI and the smoke state
machine invoke it too. Returns the JSON health report; emits the report's metrics in Embedded Metric
Format (names and dimension sets: docs/metrics.md). Backup freshness is checked when the function
knows the catalog table.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from warden.emf import publish
from warden.events import HealthRequest
from warden.health import check_targets, metric_points
from warden.settings import Settings
from warden.stores.catalog import Catalog
from warden.stores.targets import select_targets

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
    targets = select_targets(config, request.target)
    catalog = Catalog(config.catalog_table) if config.catalog_table else None
    report = check_targets(config.stage, targets, catalog=catalog)
    publish(metric_points(report), metrics.namespace)
    metrics.add_metric(name="TargetsChecked", unit=MetricUnit.Count, value=len(report.targets))
    logger.info("health checked", extra={
        "status": report.status.value, "targets": len(report.targets),
        "server_versions": {t.target: t.server_version for t in report.targets},
        "not_passing": [f"{t.target}/{c.name}:{c.status.value}" for t in report.targets
                        for c in t.checks if c.status.value != "pass"]})
    return report.model_dump(mode="json")
