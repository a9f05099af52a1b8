"""The health-check framework the engines' checks are written in: a Check is one named query with a
limit, a CheckGroup shares one session, a Tier groups checks under one timeout; run_tier runs a tier
so that one slow or dead database never stalls the others. MetricDef / MetricPoint describe the
metrics a check's details become.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, wait
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from warden.errors import WardenError
from warden.models import (
    CheckResult,
    CheckStatus,
)

log = logging.getLogger(__name__)

CONNECTIVITY_TIMEOUT = 5.0


GRACE_S = 1.0  # past a tier's limit, how long the report waits for the server's own timeout to answer


Outcome = tuple[CheckStatus, str, dict[str, object]]


class CheckTimedOut(WardenError):
    """The server cancelled a check's query at the check's time limit."""


@dataclass(frozen=True)
class Check:
    """One named check: `run(session, seconds_left)` returns (status, message, details).

    Details may carry `metrics` ({metric name: value}, names from `METRICS`), emitted as CloudWatch
    metrics by the health function."""

    name: str
    run: Callable[[Any, float], Outcome]


@dataclass(frozen=True)
class CheckGroup:
    """Checks that share one session, run in order in one thread. `session(limit)` opens it."""

    checks: tuple[Check, ...]
    session: Callable[[float], AbstractContextManager[Any]] | None = None


@dataclass(frozen=True)
class Tier:
    name: str
    limit: float
    groups: tuple[CheckGroup, ...]

    @property
    def check_names(self) -> list[str]:
        return [c.name for g in self.groups for c in g.checks]


@dataclass(frozen=True)
class MetricDef:
    unit: str  # a CloudWatch unit (Powertools MetricUnit value)
    description: str


def spawn_daemon(fn: Callable[..., Any], *args: Any, name: str) -> Future[Any]:
    """Run `fn` in a daemon thread: a thread stuck on a hung server never holds up the process."""
    future: Future[Any] = Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as err:
            future.set_exception(err)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def run_check(name: str, limit: float, check: Callable[[], Outcome], pool: Executor) -> CheckResult:
    """Run `check` with a hard time limit: past it the result says so and the caller moves on."""
    started = time.monotonic()
    future = pool.submit(check)
    try:
        status, message, details = future.result(timeout=limit)
    except FutureTimeout:
        status, message, details = CheckStatus.FAIL, f"timed out after {limit:.0f} s", {}
    except WardenError as err:
        status, message, details = CheckStatus.FAIL, str(err), {"error": type(err).__name__}
    return CheckResult(
        name=name, status=status, message=message, details=details,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )


@dataclass
class _Collector:
    tier: Tier
    deadline: float
    results: dict[str, CheckResult] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, check: str, status: CheckStatus, message: str, details: dict[str, object],
               started: float) -> None:
        result = CheckResult(name=check, status=status, message=message,
                             details={"tier": self.tier.name, **details},
                             duration_ms=round((time.monotonic() - started) * 1000, 1))
        with self.lock:
            self.results.setdefault(check, result)

    def snapshot(self) -> dict[str, CheckResult]:
        with self.lock:
            return dict(self.results)


def _timed_out(tier: Tier, seconds: float | None = None) -> str:
    return f"timed out after {seconds if seconds is not None else tier.limit:.3g} s ({tier.name} tier limit)"


def _outcome(check: Check, session: Any, left: float, tier: Tier) -> Outcome:
    try:
        return check.run(session, left)
    except CheckTimedOut:
        return CheckStatus.FAIL, _timed_out(tier), {"timed_out": True}
    except WardenError as err:
        return CheckStatus.FAIL, str(err), {"error": type(err).__name__}
    except Exception as err:  # a defect in one check must not cost the report of the others
        log.exception("health check %s failed unexpectedly", check.name)
        return CheckStatus.FAIL, f"check failed unexpectedly: {type(err).__name__}: {err}", {
            "error": type(err).__name__}


def _run_group(group: CheckGroup, collector: _Collector) -> None:
    tier = collector.tier
    started = time.monotonic()
    try:
        opened = group.session(max(0.1, collector.deadline - started)) if group.session else nullcontext(None)
        with opened as session:
            for check in group.checks:
                left = collector.deadline - time.monotonic()
                if left <= 0:
                    return  # the tier reports the rest as timed out
                begun = time.monotonic()
                status, message, details = _outcome(check, session, left, tier)
                collector.record(check.name, status, message, details, begun)
    except Exception as err:
        timed_out = isinstance(err, CheckTimedOut)
        message = _timed_out(tier) if timed_out else str(err) or type(err).__name__
        for check in group.checks:  # the ones not recorded yet share the session's failure
            collector.record(check.name, CheckStatus.FAIL, message,
                             {"timed_out": True} if timed_out else {"error": type(err).__name__}, started)


def run_tier(tier: Tier, pool: Executor | None = None) -> list[CheckResult]:
    """Run a tier's groups in parallel; return one result per check within `tier.limit` (+ grace)."""
    started = time.monotonic()
    collector = _Collector(tier=tier, deadline=started + tier.limit)
    futures = [
        pool.submit(_run_group, group, collector) if pool is not None
        else spawn_daemon(_run_group, group, collector, name=f"health-{tier.name}")
        for group in tier.groups
    ]
    wait(futures, timeout=tier.limit + GRACE_S)
    done = collector.snapshot()
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    return [
        done.get(name) or CheckResult(name=name, status=CheckStatus.FAIL, message=_timed_out(tier),
                                      duration_ms=elapsed_ms, details={"tier": tier.name, "timed_out": True})
        for name in tier.check_names
    ]


@dataclass(frozen=True)
class MetricPoint:
    """One CloudWatch metric of a report. The health function adds Powertools' `service` dimension."""

    name: str
    unit: str
    value: float
    dimensions: dict[str, str]
