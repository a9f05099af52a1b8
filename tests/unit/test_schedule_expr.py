"""EventBridge schedule expressions: what AWS accepts passes, anything else names its problem."""

from __future__ import annotations

import pytest

from warden.config.schedule import ScheduleError, check_schedule
from warden.config.target import Schedules

VALID = [
    "rate(1 minute)", "rate(5 minutes)", "rate(1 hour)", "rate(12 hours)", "rate(1 day)", "rate(30 days)",
    "cron(0 2 * * ? *)", "cron(0/15 * * * ? *)", "cron(0 */6 * * ? *)", "cron(0 3 ? * SUN *)",
    "cron(30 1 ? * MON-FRI *)", "cron(0 9 L * ? *)", "cron(0 9 15W * ? *)", "cron(0 9 LW * ? *)",
    "cron(0 9 ? * 6#3 *)", "cron(0 9 ? * 6L *)", "cron(0 8 1 JAN,JUL ? 2027-2030)", "cron(5,35 14 * * ? *)",
    "cron(0 2 ? * 1,7 *)",
]
INVALID = {
    "daily": "use rate",
    "rate(5 minute)": "say rate(5 minutes)",
    "rate(1 days)": "say rate(1 day)",
    "rate(0 hours)": "at least 1",
    "rate(5 weeks)": "a rate is",
    "rate(1.5 hours)": "a rate is",
    "cron(0 2 * * ?)": "six fields",
    "cron(0  2 * * ? *)": "six fields",
    "cron(60 2 * * ? *)": "minutes '60': 60 is outside 0-59",
    "cron(0 2 32 * ? *)": "day-of-month '32'",
    "cron(0 2 ? 13 MON *)": "month '13'",
    "cron(0 2 ? * 8 *)": "day-of-week '8'",
    "cron(0 2 ? * MON 1969)": "year '1969'",
    "cron(0 2 * * MON *)": "exactly one of day-of-month and day-of-week",
    "cron(0 2 ? * ? *)": "exactly one of day-of-month and day-of-week",
    "cron(0 ? * * ? *)": "'?' is only for",
    "cron(0 */0 * * ? *)": "step '0'",
    "cron(0 20-10 * * ? *)": "runs backwards",
    "cron(0 2 ? * MON#6 *)": "1-5",
    "cron(0 2 ? FOO * *)": "not a number or one of JAN",
    "at(2027-01-01T00:00:00)": "use rate",
}


@pytest.mark.parametrize("expression", VALID)
def test_expressions_aws_accepts_pass_unchanged(expression: str) -> None:
    assert check_schedule(expression) == expression


@pytest.mark.parametrize("expression, problem", INVALID.items(), ids=list(INVALID))
def test_bad_expressions_name_their_problem(expression: str, problem: str) -> None:
    with pytest.raises(ScheduleError) as error:
        check_schedule(expression)
    assert problem in str(error.value)


def test_every_default_schedule_is_valid() -> None:
    for expression in Schedules().model_dump().values():
        assert check_schedule(expression) == expression
