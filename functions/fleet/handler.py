"""Fleet function: the steps of a Fleet state machine (infra/fleet.py) around its Map.

`plan`: the targets due for the job (targets store, the run's selection, own schedules skipped) and
when each may start; `delay`: how long an item still waits for its offset in the window;
`summarise`: ok / failed / skipped per target. Opens no database connection.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from warden.config.fleet import FleetJob
from warden.events import FleetInput, FleetStep, parse
from warden.fleet import delay, plan_run, summarise
from warden.observability import lambda_handler, logger
from warden.settings import Settings
from warden.stores.targets import ParameterStoreTargets

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SETTINGS = Settings.from_env()


@lambda_handler()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = parse(FleetStep, event)
    now = datetime.now(UTC)
    if step.step == "delay":
        return delay(step.not_before, now)
    if step.step == "summarise":
        assert step.plan is not None and step.results is not None  # FleetStep checked
        summary = summarise(step.job, step.plan, step.results)
        logger.info("fleet run finished", extra={"job": step.job, **summary["counts"],
                                                 "failed": summary["failed"][:20]})
        return summary
    request = parse(FleetInput, step.input or {})
    config = FleetJob.model_validate(step.config)
    plan = plan_run(ParameterStoreTargets(SETTINGS).all().values(), step.job, config, request, now)
    logger.info("fleet run planned", extra={"job": step.job, "items": len(plan["items"]),
                                            "skipped": len(plan["skipped"])})
    return plan
