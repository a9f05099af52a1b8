"""Per-target credential rotation settings (`Target.rotation`); warden.rotation acts on them.

Rotation is off unless enabled. Secrets Manager runs it on `schedule` (its own rotation schedule, in
UTC) by invoking the stage's rotate function; see README "Credential rotation".
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from warden.config.base import SECRET_NAME
from warden.config.schedule import check_schedule

SINGLE_USER: Literal["single-user"] = "single-user"
ALTERNATING: Literal["alternating"] = "alternating"
CLONE_SUFFIX = "_clone"

# Secrets Manager's rotation schedules: rate() in days (1-1000) or hours (4-23), or a cron() expression.
_RATE = re.compile(r"^rate\((\d+) (hour|hours|day|days)\)$")
_WINDOW = re.compile(r"^([1-9]|1\d|2[0-4])h$")


class RotationConfig(BaseModel):
    """How a target's credentials are rotated.

    - `single-user` (default): the secret's own user changes its own password. There is a short
      window (between the password change and the secret's new version becoming current, normally
      seconds) in which a client that read the old value fails to log in.
    - `alternating`: two users, `<user>` and `<user>_clone`, take turns; a master secret (an admin
      of the database: `master_secret_name`) creates the clone and sets the password of the user
      that is *not* current. The current user keeps working during and after a rotation, until the
      next one changes its password.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    strategy: Literal["single-user", "alternating"] = SINGLE_USER
    # Secrets Manager rotation schedule: `rate(30 days)`, `rate(12 hours)` or a `cron(...)` expression.
    schedule: str = "rate(30 days)"
    # How long Secrets Manager may take to start the rotation after the scheduled time (`1h`..`24h`);
    # None: Secrets Manager's default (the whole interval for rate schedules).
    window: str | None = None
    # The secret of a database admin, used by the alternating strategy to create / change the users.
    master_secret_name: Annotated[str, Field(min_length=1, max_length=512, pattern=SECRET_NAME)] | None = None
    password_length: Annotated[int, Field(ge=16, le=128)] = 32

    @field_validator("schedule")
    @classmethod
    def _is_rotation_schedule(cls, value: str) -> str:
        match = _RATE.match(value)
        if match:
            count, unit = int(match.group(1)), match.group(2)
            if unit.startswith("day") and not 1 <= count <= 1000:
                raise ValueError(f"rotation schedule {value!r}: rate in days must be 1 to 1000")
            if unit.startswith("hour") and not 4 <= count <= 23:
                raise ValueError(f"rotation schedule {value!r}: rate in hours must be 4 to 23")
            if (count == 1) != (not unit.endswith("s")):
                raise ValueError(f"rotation schedule {value!r}: the unit is singular for 1 only")
            return value
        if value.startswith("cron("):
            return check_schedule(value)
        raise ValueError(f"rotation schedule {value!r}: use rate(<n> days), rate(<n> hours) or cron(...)")

    @field_validator("window")
    @classmethod
    def _is_window(cls, value: str | None) -> str | None:
        if value is not None and not _WINDOW.match(value):
            raise ValueError(f"rotation window {value!r}: use <hours>h, from 1h to 24h")
        return value

    @model_validator(mode="after")
    def _master_for_alternating(self) -> RotationConfig:
        if self.strategy == ALTERNATING and self.master_secret_name is None:
            raise ValueError("rotation: the alternating strategy needs master_secret_name (a database admin)")
        if self.strategy == SINGLE_USER and self.master_secret_name is not None:
            raise ValueError("rotation: master_secret_name is for the alternating strategy only")
        return self


def check_rotation(target: str, secret_name: str, rotation: RotationConfig) -> None:
    """Cross-field rule of a target: the master secret is not the target's own secret."""
    if rotation.master_secret_name is not None and rotation.master_secret_name == secret_name:
        raise ValueError(f"target {target!r}: rotation.master_secret_name must be another secret than secret_name")
