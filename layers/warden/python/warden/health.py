"""Health checks of targets. Each target is checked in its own thread and each tier has its own
time limit, so one slow or dead database never stalls the report of the others.

Tiers so far: connectivity (5 s) — server reachable, credentials accepted, version and edition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime

from warden.engines import adapter_for
from warden.errors import WardenError
from warden.models import (
    CheckResult,
    CheckStatus,
    HealthReport,
    HealthStatus,
    Target,
    TargetHealth,
)
from warden.secrets import load_secret

CONNECTIVITY_TIMEOUT = 5.0


def run_check(name: str, limit: float, check: Callable[[], tuple[CheckStatus, str, dict[str, object]]],
              pool: ThreadPoolExecutor) -> CheckResult:
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


def check_target(target: Target, pool: ThreadPoolExecutor) -> TargetHealth:
    def connectivity() -> tuple[CheckStatus, str, dict[str, object]]:
        secret = load_secret(target)
        info = adapter_for(target.engine).server_info(secret, timeout=CONNECTIVITY_TIMEOUT)
        details: dict[str, object] = {"version": info.version, "edition": info.edition}
        return CheckStatus.PASS, f"{target.engine} {info.version} ({info.edition}) answers", details

    checks = [run_check("connectivity", CONNECTIVITY_TIMEOUT + 1, connectivity, pool)]
    return TargetHealth(
        target=target.name,
        engine=target.engine,
        status=_worst(checks),
        checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        checks=checks,
    )


def check_targets(stage: str, targets: Iterable[Target]) -> HealthReport:
    """Check every target concurrently; the report is complete even when some targets hang."""
    targets = list(targets)
    # Threads that outlive a timed-out check are abandoned, never joined: shutdown(wait=False).
    pool = ThreadPoolExecutor(max_workers=max(2, 2 * len(targets)), thread_name_prefix="health")
    outer = ThreadPoolExecutor(max_workers=max(1, len(targets)), thread_name_prefix="health-target")
    try:
        results = list(outer.map(lambda t: check_target(t, pool), targets))
    finally:
        outer.shutdown(wait=False, cancel_futures=True)
        pool.shutdown(wait=False, cancel_futures=True)
    overall = max((r.status for r in results), key=_RANK.__getitem__, default=HealthStatus.HEALTHY)
    return HealthReport(stage=stage, status=overall, targets=results)


_RANK = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}


def _worst(checks: list[CheckResult]) -> HealthStatus:
    if any(c.status is CheckStatus.FAIL for c in checks):
        return HealthStatus.UNHEALTHY
    if any(c.status is CheckStatus.WARN for c in checks):
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def format_text(report: HealthReport) -> str:
    """The report for people: one line per check."""
    lines = [f"stage {report.stage}: {report.status.value.upper()}"]
    for t in report.targets:
        lines.append(f"  {t.target} ({t.engine.value}): {t.status.value}")
        for c in t.checks:
            lines.append(f"    [{c.status.value:4}] {c.name:<14} {c.message}  ({c.duration_ms:.0f} ms)")
    return "\n".join(lines)
