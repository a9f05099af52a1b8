"""Benchmark: the health fleet run (the deployed Fleet state machine in moto's interpreter, the real
health function per target) over N PostgreSQL targets — a database each on the session's server —
against the same run over one of them, and the peak number of database connections Warden held
at once (pg_stat_activity sampled every 10 ms for sessions with application_name 'warden').

Sizes: tiny by default (5 targets), WARDEN_BENCH_SIZE=full (50 targets; asserts the ratio stays
within the cap's share and the connections within the cap):
    WARDEN_BENCH_SIZE=full .venv/bin/pytest tests/perf/test_fleet_perf.py -q -s
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from local.aws import LocalAws
from local.deploy import Deployment
from local.postgres import PostgresEndpoint
from tests.conftest import invoke
from tests.fleet_fixtures import GROUP, create_databases, postgres_fleet, run_fleet
from tests.perf.bench import FULL, sized
from warden.config.fleet import FleetConfig

pytestmark = pytest.mark.integration
TARGETS = sized(full=50, tiny=5)
CAP = FleetConfig().health.max_concurrency  # the local stage's default


class ConnectionSampler:
    """Counts Warden's sessions on the server every `interval` s, in a thread, until stopped."""

    def __init__(self, postgres: PostgresEndpoint, interval: float = 0.01) -> None:
        self.postgres, self.interval, self.peak = postgres, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-sampler")

    def _run(self) -> None:
        with psycopg.connect(self.postgres.uri(), autocommit=True, application_name="warden-bench") as conn:
            while not self._stop.is_set():
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'warden'").fetchone() or (0,)
                self.peak = max(self.peak, int(count))
                time.sleep(self.interval)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_health_fan_out_of_many_targets_against_one(aws: LocalAws, deployed: Deployment,
                                                    postgres: PostgresEndpoint, capsys: Any) -> None:
    fleet = postgres_fleet(aws, postgres, create_databases(postgres, TARGETS, prefix="bench-pg"))
    one = fleet[0].name
    # warm: the health function's first invocation imports the handler (its cold start)
    invoke(aws, deployed.function_named("health"), {"target": one})
    started = time.monotonic()
    report, error = invoke(aws, deployed.function_named("health"), {"target": one})
    per_target = time.monotonic() - started
    assert error is None, report

    single, single_wall = run_fleet(aws, deployed, "health", {"targets": [one]})
    with ConnectionSampler(postgres) as sampler:
        summary, wall = run_fleet(aws, deployed, "health", {"group": GROUP})
    assert single["counts"]["ok"] == 1 and summary["counts"] == {"ok": TARGETS, "failed": 0, "skipped": 0}
    ratio = wall / single_wall
    # In Lambda every item has its own execution environment: per-target time x 500 / cap.
    lambda_500 = per_target * 500 / CAP
    # Locally every handler shares one Python process (and 2 cores): the measured rate, extrapolated.
    local_500 = wall / TARGETS * 500
    with capsys.disabled():
        print(f"\nhealth fleet run: 1 target {single_wall:.2f} s, {TARGETS} targets {wall:.2f} s "
              f"(ratio {ratio:.2f}, cap {CAP}); one target's health {per_target:.2f} s; 500 targets: "
              f"{lambda_500:.0f} s at cap {CAP} in Lambda, {local_500:.0f} s at this machine's measured rate "
              f"(interval 300 s); peak Warden connections {sampler.peak}")
    assert sampler.peak >= 1  # the sampler saw the run
    assert sampler.peak <= CAP * 2  # bounded by the cap: a running check holds a few sessions at most
    if FULL:
        assert lambda_500 < 300 and local_500 < 300
        assert wall < per_target * TARGETS  # the fan-out runs in parallel, not one after another
