"""What the benchmarks share: their size, and how a process measures its own peak RSS.

WARDEN_BENCH_SIZE=tiny (the default, what `make test` runs) sizes every benchmark to a few seconds:
it still runs end to end, checks its results and computes its ratios, so a broken benchmark fails
CI; the performance goals are asserted only at WARDEN_BENCH_SIZE=full (`make bench`).
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

SIZE = os.environ.get("WARDEN_BENCH_SIZE", "tiny")
if SIZE not in ("tiny", "full"):
    raise ValueError(f"WARDEN_BENCH_SIZE must be tiny or full, got {SIZE!r}")
FULL = SIZE == "full"


def sized(full: T, tiny: T) -> T:
    """`full` at WARDEN_BENCH_SIZE=full, else `tiny`."""
    return full if FULL else tiny


# Source of `peak_rss_mib()` for the scripts the benchmarks run in a fresh process. VmHWM is the peak
# of this process's own memory map, which exec starts afresh; ru_maxrss is not: on Linux an exec'd
# child's starts from its parent's size (the pytest process's, 1.6 GB after the Neo4j benchmarks).
PEAK_RSS_SOURCE = '''
def peak_rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
'''
