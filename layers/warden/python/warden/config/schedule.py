"""EventBridge (Scheduler) schedule expressions, checked field by field before anything is deployed.

`rate(<n> <unit>)` and `cron(<min> <hour> <day-of-month> <month> <day-of-week> <year>)`, as AWS
documents them: a bad expression is an error in the stage configuration, not a failed deploy. The
rules (https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html):
- rate: a positive whole number; the unit is singular for 1 (`rate(1 hour)`), plural otherwise.
- cron: six fields, in UTC. Minutes 0-59, hours 0-23, day-of-month 1-31 (also `L`, `W`, `LW`),
  month 1-12 or JAN-DEC, day-of-week 1-7 or SUN-SAT (also `L`, `#`), year 1970-2199. Values,
  ranges `a-b`, lists `a,b`, steps `*/n` and `a/n`, `*` wildcards. Exactly one of day-of-month and
  day-of-week is `?`.
"""

from __future__ import annotations

import re

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                        "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (  # name, low, high, names
    ("minutes", 0, 59, {}),
    ("hours", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _DAYS),
    ("year", 1970, 2199, {}),
)


class ScheduleError(ValueError):
    """Not a valid EventBridge schedule expression; the message says which part is wrong."""


def check_schedule(expression: str) -> str:
    """`expression` unchanged when valid; otherwise ScheduleError naming the problem."""
    if not isinstance(expression, str):
        raise ScheduleError(f"a schedule expression is a string, got {type(expression).__name__}")
    if expression.startswith("rate("):
        _check_rate(expression)
    elif expression.startswith("cron("):
        _check_cron(expression)
    else:
        raise ScheduleError(f"{expression!r}: use rate(<n> <unit>) or cron(<6 fields>)")
    return expression


def _check_rate(expression: str) -> None:
    match = _RATE.match(expression)
    if not match:
        raise ScheduleError(f"{expression!r}: a rate is rate(<whole number> minute(s)|hour(s)|day(s))")
    value, unit = int(match[1]), match[2]
    if value < 1:
        raise ScheduleError(f"{expression!r}: the rate must be at least 1")
    if (value == 1) != (not unit.endswith("s")):
        wanted = unit.rstrip("s") if value == 1 else unit.rstrip("s") + "s"
        raise ScheduleError(f"{expression!r}: say rate({value} {wanted}) (singular for 1, plural otherwise)")


def _check_cron(expression: str) -> None:
    match = _CRON.match(expression)
    fields = match[1].split(" ") if match else []
    if len(fields) != 6 or any(not f for f in fields):
        raise ScheduleError(f"{expression!r}: cron takes six fields separated by single spaces: "
                            "minutes hours day-of-month month day-of-week year")
    for (name, low, high, names), field in zip(_FIELDS, fields, strict=True):
        try:
            _check_field(field, name, low, high, names)
        except ScheduleError as err:
            raise ScheduleError(f"{expression!r}: {name} {field!r}: {err}") from None
    dom, dow = fields[2], fields[4]
    if (dom == "?") == (dow == "?"):
        raise ScheduleError(f"{expression!r}: exactly one of day-of-month and day-of-week must be '?' "
                            f"(got {dom!r} and {dow!r})")


def _check_field(field: str, name: str, low: int, high: int, names: dict[str, int]) -> None:
    if field == "?":
        if name not in ("day-of-month", "day-of-week"):
            raise ScheduleError("'?' is only for day-of-month or day-of-week")
        return
    if name == "day-of-month" and field in ("L", "LW"):
        return
    if name == "day-of-week" and field == "L":
        return
    for item in field.split(","):
        _check_item(item, name, low, high, names)


def _check_item(item: str, name: str, low: int, high: int, names: dict[str, int]) -> None:
    if name == "day-of-month" and item.endswith("W") and item[:-1].isdigit():
        _value(item[:-1], low, high, names)  # nearest weekday to that day
        return
    if name == "day-of-week" and "#" in item:
        day, _, nth = item.partition("#")
        _value(day, low, high, names)
        if not nth.isdigit() or not 1 <= int(nth) <= 5:
            raise ScheduleError(f"'#{nth}': the week of the month is 1-5")
        return
    if name == "day-of-week" and item.endswith("L") and len(item) > 1:
        _value(item[:-1], low, high, names)  # last such day of the month
        return
    base, slash, step = item.partition("/")
    if slash and (not step.isdigit() or int(step) < 1):
        raise ScheduleError(f"step {step!r} must be a positive whole number")
    if base == "*":
        return
    start, dash, end = base.partition("-")
    first = _value(start, low, high, names)
    if dash:
        last = _value(end, low, high, names)
        if last < first and name != "day-of-week":
            raise ScheduleError(f"range {base!r} runs backwards")


def _value(text: str, low: int, high: int, names: dict[str, int]) -> int:
    if text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ScheduleError(f"{text!r} is not a number" + (f" or one of {', '.join(names)}" if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise ScheduleError(f"{value} is outside {low}-{high}")
    return value
