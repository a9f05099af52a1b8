"""License check function: edition, version and licence expiry of one target (or every target).

Scheduled daily per target by EventBridge Scheduler (`{"target": "<name>"}`). Returns the JSON
licence report; emits `LicenseDaysLeft` per target where the days left are known (docs/metrics.md).
Community and PostgreSQL targets report "not_applicable".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from warden.emf import publish
from warden.events import LicenseRequest, parse
from warden.license import check_licenses, license_metric_points
from warden.observability import MetricUnit, lambda_handler, logger, metrics
from warden.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
from warden.stores.targets import select_targets

SETTINGS = Settings.from_env()


@lambda_handler()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(LicenseRequest, event)
    config = SETTINGS
    targets = select_targets(config, request.target)
    report = check_licenses(config.stage, targets)
    publish(license_metric_points(report), metrics.namespace)
    metrics.add_dimension(name="Stage", value=config.stage)  # stages never share metrics
    metrics.add_metric(name="LicensesChecked", unit=MetricUnit.Count, value=len(report.targets))
    logger.info("licences checked", extra={
        "status": report.status.value, "targets": {t.target: t.status.value for t in report.targets}})
    return report.model_dump(mode="json")
