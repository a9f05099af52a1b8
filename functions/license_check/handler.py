"""License check function: edition, version and licence expiry of one target (or every target).

Scheduled daily per target by EventBridge Scheduler (`{"target": "<name>"}`). Returns the JSON
licence report; emits `LicenseDaysLeft` per target where the days left are known (docs/metrics.md).
Community and PostgreSQL targets report "not_applicable".
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from warden.emf import publish
from warden.events import LicenseRequest
from warden.license import check_licenses, license_metric_points
from warden.settings import Settings
from warden.stores.targets import select_targets

logger = Logger()
tracer = Tracer()
metrics = Metrics()
SETTINGS = Settings.from_env()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = LicenseRequest.model_validate(event or {})
    config = SETTINGS
    targets = select_targets(config, request.target)
    report = check_licenses(config.stage, targets)
    publish(license_metric_points(report), metrics.namespace)
    metrics.add_metric(name="LicensesChecked", unit=MetricUnit.Count, value=len(report.targets))
    logger.info("licences checked", extra={
        "status": report.status.value, "targets": {t.target: t.status.value for t in report.targets}})
    return report.model_dump(mode="json")
