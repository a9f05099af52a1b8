"""Benchmark: a prune run decides a 100 000-record catalog in well under a second.

At full size: `WARDEN_BENCH_SIZE=full .venv/bin/pytest tests/perf/test_retention_perf.py -q -s` (`make bench`);
at WARDEN_BENCH_SIZE=tiny (the default, in `make test`) 2 000 records and no time limit.
"""

from __future__ import annotations

import gc
import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.perf.bench import FULL, sized
from warden.config.retention import RetentionPolicy
from warden.models import BackupRecord
from warden.retention import decide, summarize

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
RECORDS = sized(100_000, 2_000)
LIMIT_S = 1.0


@pytest.fixture(scope="module")
def catalog() -> list[BackupRecord]:
    """100 000 records over 3 years, validated from catalog-like items (ISO strings, pydantic's UTC)."""
    rng = random.Random(20261125)
    statuses = ["COMPLETED"] * 6 + ["VERIFIED"] * 3 + ["FAILED", "CORRUPT", "RUNNING", "EXPIRED"]
    records = []
    for serial in range(RECORDS):
        started = NOW - timedelta(seconds=rng.randrange(3 * 365 * 86400))
        records.append(BackupRecord.model_validate({
            "target": "orders-db", "backup_id": f"{started:%Y%m%dT%H%M%SZ}-{serial:08x}", "engine": "postgres",
            "method": "pg_dump", "status": rng.choice(statuses),
            "started_at": started.isoformat().replace("+00:00", "Z"), "size_bytes": rng.randrange(10**9),
            "hold": rng.random() < 0.001,
        }))
    return records


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(RetentionPolicy(), id="default-policy"),
        pytest.param(RetentionPolicy(keep_last=50, keep_daily=90, keep_weekly=52, keep_monthly=36, keep_yearly=10,
                                     max_age_days=730, min_keep=3), id="long-policy"),
        # Every good backup goes through every rule: the slowest path there is.
        pytest.param(RetentionPolicy(keep_last=RECORDS, keep_daily=RECORDS, keep_weekly=RECORDS,
                                     keep_monthly=RECORDS, keep_yearly=100, max_age_days=400), id="every-rule-open"),
    ],
)
def test_100k_records_are_decided_in_under_a_second(catalog: list[BackupRecord], policy: RetentionPolicy) -> None:
    gc.collect()  # the collection owed by building the catalog is not decide()'s cost
    wall, cpu = [], []
    for _ in range(5):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        decisions = decide(catalog, policy, NOW)
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
    print(f"\ndecide: {RECORDS} records in {min(cpu):.3f} s CPU, {min(wall):.3f} s wall (best of 5; wall: "
          f"{', '.join(f'{t:.3f}' for t in wall)}), {summarize(decisions)}")
    assert len(decisions) < RECORDS  # EXPIRED records get no decision
    assert {d.backup_id for d in decisions} == {r.backup_id for r in catalog if r.status != "EXPIRED"}
    if not FULL:
        return
    # CPU time, not wall: the machine is shared, and neighbours' work inflates wall time by 2-5x.
    assert min(cpu) < LIMIT_S
