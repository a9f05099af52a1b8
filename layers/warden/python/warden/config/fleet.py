"""How a stage fans its scheduled jobs out over its targets: one schedule per job and stage starts
the job's Fleet state machine, whose Map runs the job for every due target, at most
`max_concurrency` at once; a `window` spreads the runs over a stable offset per target.

A target whose `schedules.<job>` (for drills: `recovery.drill_schedule`) is neither the fleet's
expression nor the model's default keeps its own per-target schedule, and the fleet plan skips it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator

from warden.config.base import Model
from warden.config.schedule import check_schedule
from warden.config.target import RecoveryConfig, Schedules, Target

# Step Functions runs at most 40 iterations of an inline Map at once.
INLINE_MAP_LIMIT = 40
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
FLEET_JOBS = (*Schedules.model_fields, "drill")


class FleetJob(Model):
    """One job's fan-out: how many targets at once, when (the stage's expression), and over what
    window the runs spread (`HH:MM-HH:MM` UTC; may wrap midnight)."""

    max_concurrency: Annotated[int, Field(ge=1, le=INLINE_MAP_LIMIT)]
    window: str | None = None
    schedule: str | None = None  # the fleet's expression; default: the window's start, else the target default

    @field_validator("window")
    @classmethod
    def _is_window(cls, value: str | None) -> str | None:
        if value is not None:
            match = _WINDOW.match(value)
            if match is None:
                raise ValueError(f"window {value!r}: expected HH:MM-HH:MM (UTC), e.g. 02:00-06:00")
            start, end = int(match[1]) * 60 + int(match[2]), int(match[3]) * 60 + int(match[4])
            if start == end:
                raise ValueError(f"window {value!r} is empty")
        return value

    @field_validator("schedule")
    @classmethod
    def _is_schedule(cls, value: str | None) -> str | None:
        return check_schedule(value) if value is not None else None

    @property
    def window_minutes(self) -> tuple[int, int] | None:
        """(start minute of the day, length in minutes), or None without a window."""
        if self.window is None:
            return None
        start_s, end_s = self.window.split("-")
        start = int(start_s[:2]) * 60 + int(start_s[3:])
        end = int(end_s[:2]) * 60 + int(end_s[3:])
        return start, (end - start) % (24 * 60)


class FleetConfig(Model):
    """Per job: its fan-out. Defaults size a stage of 500 targets (docs/fleets.md, Fleet scheduling)."""

    health: FleetJob = FleetJob(max_concurrency=40)
    backup: FleetJob = FleetJob(max_concurrency=4, window="02:00-06:00")
    verify: FleetJob = FleetJob(max_concurrency=8)
    prune: FleetJob = FleetJob(max_concurrency=8)
    license_check: FleetJob = FleetJob(max_concurrency=20)
    maintenance: FleetJob = FleetJob(max_concurrency=4)
    drill: FleetJob = FleetJob(max_concurrency=1)

    def job(self, name: str) -> FleetJob:
        if name not in FLEET_JOBS:
            raise ValueError(f"no fleet job {name!r}; known: {list(FLEET_JOBS)}")
        job: FleetJob = getattr(self, name)
        return job


def default_expression(job: str) -> str:
    """What a target runs `job` on when it says nothing."""
    if job == "drill":
        return str(RecoveryConfig.model_fields["drill_schedule"].default)
    return str(Schedules.model_fields[job].default)


def fleet_expression(job: str, config: FleetJob) -> str:
    """The one schedule expression of `job` for the stage."""
    if config.schedule is not None:
        return config.schedule
    window = config.window_minutes
    if window is not None and job != "drill":
        hour, minute = divmod(window[0], 60)
        return f"cron({minute} {hour} * * ? *)"
    return default_expression(job)


def target_expression(target: Target, job: str) -> str:
    return target.recovery.drill_schedule if job == "drill" else str(getattr(target.schedules, job))


def runs_in_fleet(target: Target, job: str, config: FleetJob) -> bool:
    """True when the fleet run schedules `job` for `target`; False: it keeps its own schedule."""
    own = target_expression(target, job)
    return own in (fleet_expression(job, config), default_expression(job))
