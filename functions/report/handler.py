"""Report function: the stage's weekly HTML report into S3 (`reports/<stage>/<yyyy>-W<ww>.html`) and
its summary on SNS. The schedule's `scheduled_time` picks the week, so a retried delivery rewrites
the same report. Metric: ReportsPublished."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from warden.events import ReportRequest, parse
from warden.observability import MetricUnit, actor, lambda_handler, logger, metrics
from warden.report import run_report
from warden.settings import Settings
from warden.stores import Stores

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SETTINGS = Settings.from_env()


@lambda_handler()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(ReportRequest, event)
    result = run_report(Stores.from_settings(SETTINGS), request.when(datetime.now(UTC)),
                        actor(context, request.requested_by))
    metrics.add_dimension(name="Stage", value=SETTINGS.stage)  # stages never share metrics
    metrics.add_metric(name="ReportsPublished", unit=MetricUnit.Count, value=1)
    logger.info("report published", extra={"key": result["key"]})
    return result
