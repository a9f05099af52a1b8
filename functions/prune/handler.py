"""Prune function: apply the target's retention policy. Scheduled runs apply; other triggers are a
dry run unless `"apply": true`. Returns every decision with its reasons. Metrics per target:
BackupsKept, BackupsDeleted, BytesFreed, PruneFailures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from warden.events import PruneRequest
from warden.prune import run_prune
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
    request = PruneRequest.model_validate(event or {})
    target = get_target(SETTINGS, request.target)
    actor = f"function:{context.function_name}" + (f" for {request.requested_by}" if request.requested_by else "")
    report = run_prune(SETTINGS, target, apply=request.applies, actor=actor)
    if report.applied:
        metrics.add_dimension(name="Target", value=target.name)
        metrics.add_metric(name="BackupsKept", unit=MetricUnit.Count, value=report.kept)
        metrics.add_metric(name="BackupsDeleted", unit=MetricUnit.Count, value=len(report.deleted))
        metrics.add_metric(name="BytesFreed", unit=MetricUnit.Bytes, value=report.bytes_freed)
        metrics.add_metric(name="PruneFailures", unit=MetricUnit.Count, value=len(report.failed))
    logger.info("prune decided", extra={"target": target.name, "applied": report.applied, "kept": report.kept,
                                        "deleted": len(report.deleted), "failed": len(report.failed)})
    return report.as_dict()
