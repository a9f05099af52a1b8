"""Server versions and the support policy that judges them.

`parse_version` reads what the servers report: PostgreSQL `18.1`, `15.18 (Debian 15.18-1.pgdg120+1)`,
`17beta2`, `9.6.24`; Neo4j `5.26.30`, `4.4.44`, `2025.10.1`. Versions compare numerically
(`compare_versions`); a pre-release (`beta`, `rc`, `devel`) sorts before its release.

A support series is what an end-of-support date belongs to: PostgreSQL's major version (`15`; before
10 the first two numbers, `9.6`), Neo4j's `major.minor` (`5.26` LTS, `4.4` LTS, `2025.10`).
`SupportPolicy` (per target, `health.support`) names a minimum version, end-of-support dates by
series and how many days ahead to warn; built-in dates cover PostgreSQL community releases and the
Neo4j LTS releases, and the policy's own dates override them. `judge_support` is the whole
decision, pure: engine, version, policy and today in; a verdict out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from warden.errors import ConfigError

# PostgreSQL: the community's final minor release dates (postgresql.org/support/versioning).
# Neo4j: the LTS releases. Neo4j announces a month, not a day ("5.26 LTS will be supported until
# June 2028", "support for 4.4.x LTS will cease in November 2025"), so the last day of that month.
# Neo4j's monthly CalVer releases (2025.x) have no published end date: configure one if you need it.
BUILTIN_END_OF_SUPPORT: dict[str, dict[str, date]] = {
    "postgres": {
        "10": date(2022, 11, 10),
        "11": date(2023, 11, 9),
        "12": date(2024, 11, 21),
        "13": date(2025, 11, 13),
        "14": date(2026, 11, 12),
        "15": date(2027, 11, 11),
        "16": date(2028, 11, 9),
        "17": date(2029, 11, 8),
        "18": date(2030, 11, 14),
    },
    "neo4j": {
        "4.4": date(2025, 11, 30),
        "5.26": date(2028, 6, 30),
    },
}

_VERSION = re.compile(r"^\s*v?(\d+(?:\.\d+)*)(.*)$", re.DOTALL)
_PRERELEASE = re.compile(r"^[.-]?(devel|alpha|beta|rc)\d*", re.IGNORECASE)


class VersionError(ConfigError):
    """Text that is not a server version."""


@dataclass(frozen=True)
class ServerVersion:
    """A parsed server version: its numbers, and what followed them (`beta2`, ` (Debian ...)`)."""

    raw: str
    numbers: tuple[int, ...]
    suffix: str = ""

    @property
    def prerelease(self) -> bool:
        return bool(_PRERELEASE.match(self.suffix))

    def __str__(self) -> str:
        return self.raw


def parse_version(text: str) -> ServerVersion:
    """Parse a version as a server reports it; raises VersionError for anything else."""
    match = _VERSION.match(text or "")
    if match is None:
        raise VersionError(f"not a server version: {text!r}")
    numbers = tuple(int(n) for n in match.group(1).split("."))
    return ServerVersion(raw=text.strip(), numbers=numbers, suffix=match.group(2).strip())


def compare_versions(a: ServerVersion | str, b: ServerVersion | str) -> int:
    """-1, 0 or 1 as `a` is older than, the same as or newer than `b` (missing numbers count as 0)."""
    left = a if isinstance(a, ServerVersion) else parse_version(a)
    right = b if isinstance(b, ServerVersion) else parse_version(b)
    width = max(len(left.numbers), len(right.numbers))
    ln = left.numbers + (0,) * (width - len(left.numbers))
    rn = right.numbers + (0,) * (width - len(right.numbers))
    if ln != rn:
        return -1 if ln < rn else 1
    if left.prerelease != right.prerelease:  # 18beta1 comes before 18(.0)
        return -1 if left.prerelease else 1
    return 0


def support_series(engine: str, version: ServerVersion | str) -> str:
    """The series an end-of-support date belongs to (PostgreSQL `15` / `9.6`, Neo4j `5.26`)."""
    v = version if isinstance(version, ServerVersion) else parse_version(version)
    if engine == "postgres" and v.numbers[0] >= 10:
        return str(v.numbers[0])
    return ".".join(str(n) for n in (*v.numbers, 0)[:2])


class SupportPolicy(BaseModel):
    """When a server's version makes its target degraded (`health.support` of a target).

    - `minimum_version`: older servers are `outdated` (e.g. "16", "5.26.10").
    - `end_of_support`: series -> last day of support ("15": "2027-11-11", "5.26": "2028-06-30"),
      over the built-in dates (`builtin_dates`); a series is PostgreSQL's major version or Neo4j's
      major.minor, and a more specific key (a full version) wins over a shorter one.
    - `warn_days_before`: a series ending within this many days warns.
    - `outdated`: how a server below the minimum or past its end of support counts (warn / fail).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    minimum_version: str | None = None
    end_of_support: dict[str, date] = {}
    warn_days_before: Annotated[int, Field(ge=0)] = 90
    builtin_dates: bool = True
    outdated: Literal["warn", "fail"] = "warn"

    @field_validator("minimum_version")
    @classmethod
    def _minimum_is_a_version(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_version(value)
            except VersionError as err:
                raise ValueError(str(err)) from None
        return value

    @field_validator("end_of_support")
    @classmethod
    def _keys_are_versions(cls, value: dict[str, date]) -> dict[str, date]:
        for key in value:
            if not re.fullmatch(r"\d+(\.\d+)*", key):
                raise ValueError(f"end_of_support key {key!r} is not a version series such as '15' or '5.26'")
        return value


class Support(StrEnum):
    SUPPORTED = "supported"  # end of support known and further away than warn_days_before
    ENDING = "ending"  # ends within warn_days_before
    ENDED = "ended"  # past its end of support
    UNKNOWN = "unknown"  # no end-of-support date known for the series


@dataclass(frozen=True)
class SupportVerdict:
    """What the policy says about one server."""

    version: ServerVersion
    series: str
    support: Support
    below_minimum: bool
    end_of_support: date | None
    days_left: int | None
    severity: Literal["pass", "warn", "fail"]
    message: str


def end_of_support(engine: str, version: ServerVersion, policy: SupportPolicy) -> date | None:
    """The end-of-support date of the longest configured / built-in key that prefixes `version`."""
    dates = {**(BUILTIN_END_OF_SUPPORT.get(engine, {}) if policy.builtin_dates else {}), **policy.end_of_support}
    best: tuple[int, date] | None = None
    for key, day in dates.items():
        numbers = tuple(int(n) for n in key.split("."))
        if version.numbers[: len(numbers)] == numbers and (best is None or len(numbers) > best[0]):
            best = (len(numbers), day)
    return best[1] if best else None


def judge_support(engine: str, version: str, policy: SupportPolicy, today: date) -> SupportVerdict:
    """The support verdict of a server: `fail`/`warn` (policy.outdated) when below the minimum or
    past its end of support, `warn` when it ends within `warn_days_before`, else `pass`."""
    v = parse_version(version)
    series = support_series(engine, v)
    below = policy.minimum_version is not None and compare_versions(v, policy.minimum_version) < 0
    ends = end_of_support(engine, v, policy)
    days_left = (ends - today).days if ends is not None else None
    if days_left is None:
        support = Support.UNKNOWN
    elif days_left < 0:
        support = Support.ENDED
    elif days_left <= policy.warn_days_before:
        support = Support.ENDING
    else:
        support = Support.SUPPORTED

    problems: list[str] = []
    if below:
        problems.append(f"below the minimum version {policy.minimum_version}")
    if support is Support.ENDED and days_left is not None:
        problems.append(f"{engine} {series} reached its end of support on {ends} ({-days_left} days ago)")
    severity: Literal["pass", "warn", "fail"] = policy.outdated if problems else "pass"
    if support is Support.ENDING:
        problems.append(f"{engine} {series} ends support on {ends} ({days_left} days left)")
        severity = severity if severity != "pass" else "warn"
    if problems:
        message = f"{engine} {v.raw}: " + "; ".join(problems)
    elif support is Support.SUPPORTED:
        message = f"{engine} {v.raw}: supported until {ends} ({days_left} days left)"
    else:
        message = (f"{engine} {v.raw}: no end-of-support date known for series {series} "
                   "(configure one in health.support)")
    return SupportVerdict(version=v, series=series, support=support, below_minimum=below, end_of_support=ends,
                          days_left=days_left, severity=severity, message=message)
