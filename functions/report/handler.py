"""Report function: the stage's weekly HTML report into S3 (`reports/<stage>/<yyyy>-W<ww>.html`) and
its summary on SNS. The schedule's `scheduled_time` picks the week, so a retried delivery rewrites
the same report. Metric: ReportsPublished."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from warden.events import ReportRequest
from warden.report import run_report
from warden.settings import Settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
SETTINGS = Settings.from_env()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ReportRequest.model_validate(event or {})
    actor = f"function:{context.function_name}" + (f" for {request.requested_by}" if request.requested_by else "")
    result = run_report(SETTINGS, request.when(datetime.now(UTC)), actor)
    metrics.add_metric(name="ReportsPublished", unit=MetricUnit.Count, value=1)
    logger.info("report published", extra={"key": result["key"]})
    return result
