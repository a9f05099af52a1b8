"""Prune function: apply the target's retention policy. Scheduled runs apply; other triggers are a
dry run unless `"apply": true`. Returns every decision with its reasons. Metrics per target:
BackupsKept, BackupsDeleted, BytesFreed, PruneFailures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from warden.events import PruneRequest, parse
from warden.observability import MetricUnit, actor, lambda_handler, logger, metrics
from warden.prune import run_prune
from warden.settings import Settings
from warden.stores import Stores

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
from warden.stores.targets import get_target

SETTINGS = Settings.from_env()


@lambda_handler()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(PruneRequest, event)
    target = get_target(SETTINGS, request.target)
    report = run_prune(Stores.from_settings(SETTINGS), target, apply=request.applies,
                       actor=actor(context, request.requested_by))
    if report.applied:
        metrics.add_dimension(name="Stage", value=SETTINGS.stage)  # stages never share metrics
        metrics.add_dimension(name="Target", value=target.name)
        metrics.add_metric(name="BackupsKept", unit=MetricUnit.Count, value=report.kept)
        metrics.add_metric(name="BackupsDeleted", unit=MetricUnit.Count, value=len(report.deleted))
        metrics.add_metric(name="BytesFreed", unit=MetricUnit.Bytes, value=report.bytes_freed)
        metrics.add_metric(name="PruneFailures", unit=MetricUnit.Count, value=len(report.failed))
    logger.info("prune decided", extra={"target": target.name, "applied": report.applied, "kept": report.kept,
                                        "deleted": len(report.deleted), "failed": len(report.failed)})
    return report.as_dict()
