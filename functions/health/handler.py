"""Health function: checks one target, the named targets, or every target of the stage, and reports.

Run per target by the stage's fleet health run (one schedule, a Map with a concurrency cap:
infra/fleet.py) or by a target's own schedule (`{"target": "<name>"}`); the CLI and the smoke state
machine invoke it too (a filtered `warden health` names its `targets`; an unknown name fails the
request before anything is checked). Returns the JSON health report; emits the report's metrics in
Embedded Metric Format (names and dimension sets: docs/metrics.md). Backup freshness is checked
when the function knows the catalog table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from warden.emf import publish
from warden.events import HealthRequest, parse
from warden.health import check_targets, log_checks, metric_points, record_health
from warden.observability import MetricUnit, actor, lambda_handler, logger, metrics
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.targets import named_targets

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SETTINGS = Settings.from_env()


@lambda_handler()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(HealthRequest, event)
    stores = Stores.from_settings(SETTINGS)
    targets = named_targets(stores.targets.all(), request.names, SETTINGS.stage)
    # Backup freshness is checked where the function knows the catalog.
    catalog = None if stores.missing("catalog") else stores.catalog
    report = check_targets(SETTINGS.stage, targets, catalog=catalog)
    publish(metric_points(report), metrics.namespace)
    log_checks(report)  # check durations and values: the log, not CloudWatch metrics
    record_health(stores.audit, report, actor=actor(context, request.requested_by))
    metrics.add_dimension(name="Stage", value=SETTINGS.stage)  # stages never share metrics
    metrics.add_metric(name="TargetsChecked", unit=MetricUnit.Count, value=len(report.targets))
    logger.info("health checked", extra={
        "status": report.status.value, "targets": len(report.targets),
        "server_versions": {t.target: t.server_version for t in report.targets},
        "not_passing": [f"{t.target}/{c.name}:{c.status.value}" for t in report.targets
                        for c in t.checks if c.status.value != "pass"]})
    return report.model_dump(mode="json")
