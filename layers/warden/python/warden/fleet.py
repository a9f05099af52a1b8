"""Fleet runs: one run of a job over the stage's targets (the Fleet state machines, infra/fleet.py).

`plan_run` lists the targets due (selected by name / group / tags, those on their own schedule
skipped) with the event each job's function gets and, for a job with a window, when each may start:
a stable offset in the window per target, so a target's backup starts at the same minute every
night and the fleet's backups spread over the window. `delay` says how long an item still waits;
`summarise` folds the Map's per-target outcomes into ok / failed / skipped.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from warden.config.fleet import FleetJob, runs_in_fleet
from warden.config.target import Target
from warden.events import FleetInput

DRILL_INPUT = {"backup_id": "latest", "promotion": "none", "approval": "auto", "requested_by": "schedule:drill"}


def selected(target: Target, request: FleetInput) -> bool:
    """The run's selection: names, group and every tag given must match."""
    if request.targets is not None and target.name not in request.targets:
        return False
    if request.group is not None and target.group != request.group:
        return False
    return all(target.tags.get(key) == value for key, value in request.tags.items())


def offset_s(job: str, target: str, window_s: int) -> int:
    """A stable offset in [0, window_s) for `target`: the same every run, spread evenly over a fleet."""
    digest = hashlib.sha256(f"{job}:{target}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % max(window_s, 1)


def job_event(job: str, target: Target, request: FleetInput) -> dict[str, Any]:
    """What the job's function (or, for a drill, the Recovery state machine) is started with."""
    if job == "drill":
        return {"target": target.name, **DRILL_INPUT}
    event: dict[str, Any] = {"target": target.name, "trigger": request.trigger,
                             "requested_by": request.requested_by or f"fleet:{job}"}
    if request.scheduled_time is not None:
        event["scheduled_time"] = request.scheduled_time
    return event


def skip_reason(job: str, target: Target, config: FleetJob) -> str | None:
    if not runs_in_fleet(target, job, config):
        return "own schedule"
    if job == "drill" and target.backup.method == "rds-snapshot":
        return "rds-snapshot: RDS restores its snapshots, nothing to drill"
    return None


def plan_run(targets: Iterable[Target], job: str, config: FleetJob, request: FleetInput,
             now: datetime) -> dict[str, Any]:
    """The run's items (`target`, `event`, `not_before` or None), in start order, and what it skips.

    Offsets count from the scheduled time; a run without one (an operator's) starts everything now.
    """
    items: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    window = config.window_minutes
    start = _parse_time(request.scheduled_time) if request.scheduled_time else None
    for target in sorted(targets, key=lambda t: t.name):
        if not selected(target, request):
            continue
        reason = skip_reason(job, target, config)
        if reason is not None:
            skipped.append({"target": target.name, "reason": reason})
            continue
        not_before = None
        if window is not None and start is not None:
            not_before = start + timedelta(seconds=offset_s(job, target.name, window[1] * 60))
        items.append({"target": target.name, "event": job_event(job, target, request),
                      "not_before": not_before.isoformat() if not_before else None})
    items.sort(key=lambda i: (i["not_before"] or "", i["target"]))
    return {"job": job, "max_concurrency": config.max_concurrency, "planned_at": now.isoformat(),
            "items": items, "skipped": skipped}


def delay(not_before: str | None, now: datetime) -> dict[str, int]:
    """Seconds an item still waits before it starts (0 when due)."""
    if not_before is None:
        return {"wait_s": 0}
    return {"wait_s": max(0, math.ceil((_parse_time(not_before) - now).total_seconds()))}


def summarise(job: str, plan: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """ok / failed / skipped per target, and their counts."""
    ok = sorted(r["target"] for r in results if r.get("outcome") == "ok")
    failed = sorted(({"target": r["target"], "error": str(r.get("error") or "unknown")}
                     for r in results if r.get("outcome") != "ok"), key=lambda f: f["target"])
    skipped = list(plan.get("skipped", []))
    return {"job": job, "counts": {"ok": len(ok), "failed": len(failed), "skipped": len(skipped)},
            "ok": ok, "failed": failed, "skipped": skipped}


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
