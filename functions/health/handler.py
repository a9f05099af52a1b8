"""Health function: checks one target (or every target of the stage) and reports.

Scheduled per target by EventBridge Scheduler (`{"target": "<name>"}`); the CLI and the smoke state
machine invoke it too. Returns the JSON health report; emits the report's metrics in Embedded Metric
Format (names and dimension sets: docs/metrics.md). Backup freshness is checked when the function
knows the catalog table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from warden.emf import publish
from warden.events import HealthRequest, parse
from warden.health import check_targets, log_checks, metric_points, record_health
from warden.observability import MetricUnit, lambda_handler, logger, metrics
from warden.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
from warden.stores.audit import AuditLog
from warden.stores.catalog import Catalog
from warden.stores.targets import select_targets

SETTINGS = Settings.from_env()


@lambda_handler()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(HealthRequest, event)
    config = SETTINGS
    targets = select_targets(config, request.target)
    catalog = Catalog(config.catalog_table) if config.catalog_table else None
    report = check_targets(config.stage, targets, catalog=catalog)
    publish(metric_points(report), metrics.namespace)
    log_checks(report)  # check durations and values: the log, not CloudWatch metrics
    record_health(AuditLog(config.audit_table), report, actor=f"function:{context.function_name}")
    metrics.add_metric(name="TargetsChecked", unit=MetricUnit.Count, value=len(report.targets))
    logger.info("health checked", extra={
        "status": report.status.value, "targets": len(report.targets),
        "server_versions": {t.target: t.server_version for t in report.targets},
        "not_passing": [f"{t.target}/{c.name}:{c.status.value}" for t in report.targets
                        for c in t.checks if c.status.value != "pass"]})
    return report.model_dump(mode="json")
