"""Rotation configuration (`Target.rotation`) and the rotate function's input: bad values are refused
with a message that names the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from warden.config.rotation import RotationConfig
from warden.config.target import Target
from warden.events import RotationEvent
from warden.rotation import EXCLUDE_CHARACTERS, Step, other_user

EVENTS = Path(__file__).resolve().parents[2] / "events"


def target(**rotation: object) -> Target:
    return Target.model_validate({"name": "pg", "engine": "postgres", "secret_name": "warden/dev/pg",
                                  "rotation": rotation})


def test_rotation_is_off_single_user_and_monthly_by_default() -> None:
    config = Target(name="pg", engine="postgres", secret_name="warden/dev/pg").rotation
    assert (config.enabled, config.strategy, config.schedule, config.window) == (False, "single-user",
                                                                                 "rate(30 days)", None)


@pytest.mark.parametrize("schedule", ["rate(1 day)", "rate(30 days)", "rate(1000 days)", "rate(4 hours)",
                                      "rate(23 hours)", "cron(0 4 ? * SUN *)"])
def test_secrets_manager_schedules_are_accepted(schedule: str) -> None:
    assert RotationConfig(enabled=True, schedule=schedule).schedule == schedule


@pytest.mark.parametrize(("schedule", "problem"), [
    ("rate(0 days)", "1 to 1000"), ("rate(1001 days)", "1 to 1000"), ("rate(3 hours)", "4 to 23"),
    ("rate(1 days)", "singular"), ("rate(5 minutes)", "use rate"), ("cron(0 4 * * * *)", "day-of-week"),
    ("monthly", "use rate"),
])
def test_bad_schedules_are_refused_with_the_reason(schedule: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem.replace("(", r"\(")):
        RotationConfig(enabled=True, schedule=schedule)


def test_window_is_whole_hours_up_to_a_day() -> None:
    assert RotationConfig(window="3h").window == "3h"
    for bad in ("0h", "25h", "90m", "3"):
        with pytest.raises(ValidationError, match="rotation window"):
            RotationConfig(window=bad)


def test_alternating_needs_a_master_secret_other_than_the_targets_own() -> None:
    with pytest.raises(ValidationError, match="needs master_secret_name"):
        target(enabled=True, strategy="alternating")
    with pytest.raises(ValidationError, match="must be another secret"):
        target(enabled=True, strategy="alternating", master_secret_name="warden/dev/pg")
    with pytest.raises(ValidationError, match="for the alternating strategy only"):
        target(enabled=True, master_secret_name="warden/dev/admin")
    assert target(enabled=True, strategy="alternating", master_secret_name="warden/dev/admin").rotation.enabled


def test_unknown_rotation_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        target(enabled=True, strategy_name="single-user")


def test_alternating_users_swap_between_the_user_and_its_clone() -> None:
    assert other_user("app") == "app_clone" and other_user("app_clone") == "app"


def test_generated_passwords_leave_out_what_breaks_uris_and_quoting() -> None:
    assert set("/@:?#[]%&+'\"\\ `") <= set(EXCLUDE_CHARACTERS)


def test_sample_rotation_events_parse_and_the_bad_one_is_refused() -> None:
    good = RotationEvent.model_validate(json.loads((EVENTS / "rotate_create_secret.json").read_text()))
    assert good.step is Step.CREATE and good.secret_id.endswith("pg-main-AbCdEf")
    with pytest.raises(ValidationError, match="Step"):
        RotationEvent.model_validate(json.loads((EVENTS / "rotate_bad_input.json").read_text()))
