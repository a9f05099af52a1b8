"""Benchmark (on demand): Warden's Neo4j export with the driver's Rust PackStream codec
(neo4j-rust-ext, a runtime dependency) against the same export with the pure-Python codec, in the
same run, on a 300 k node / 600 k relationship graph.

    .venv/bin/pytest tests/perf/test_neo4j_codec_perf.py -s -p no:cacheprovider --override-ini=addopts= --timeout=3600

Each export runs in a fresh process (the codec is chosen when the driver is imported); the
pure-Python one imports a copy of the driver package without its `_rust` module. Rounds alternate
between the two; the first round only warms the server up. Prints the medians and the ratio. Peak
RSS is each export process's own (VmHWM, tests/perf/bench.py). At WARDEN_BENCH_SIZE=tiny (the default
outside `make bench`) 3 000 nodes and two rounds, and the Rust codec is not required to win.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest

from local.neo4j import Neo4jEndpoint
from tests.perf.bench import FULL, PEAK_RSS_SOURCE, sized
from tests.perf.test_neo4j_backup_perf import driver_of, grow, start

NODES = int(os.environ.get("WARDEN_BENCH_NODES", sized(300_000, 3_000)))
ROUNDS = int(os.environ.get("WARDEN_BENCH_ROUNDS", sized(4, 2)))

EXPORT = PEAK_RSS_SOURCE + """
import json, sys, time
import neo4j._codec.packstream.v1 as codec
from warden.stores.artifacts import MiB, ArtifactWriter, NullSink
from warden.engines import neo4j as nb
from warden.config.credentials import Neo4jSecret
secret = Neo4jSecret(uri=sys.argv[1], username=sys.argv[2], password=sys.argv[3])
wall, cpu = time.perf_counter(), time.process_time()
with ArtifactWriter(NullSink(), "bench", part_size=MiB) as writer:
    result = nb.export_backup(secret, writer)
print(json.dumps({"rust": codec._rust_unpack is not None, "s": time.perf_counter() - wall,
                  "cpu": time.process_time() - cpu, "entities": result.counts["nodes"] + result.counts["relationships"],
                  "rss_mib": peak_rss_mib()}))
"""


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jEndpoint]:
    server = start(tmp_path_factory.mktemp("neo4j-codec"), heap=sized("2g", "512m"), pagecache=sized("1g", "64m"))
    try:
        driver = driver_of(server.endpoint)
        try:
            grow(driver, 0, NODES)
        finally:
            driver.close()
        yield server.endpoint
    finally:
        server.stop(timeout=120)


def pure_python_driver(into: Path) -> Path:
    """A copy of the installed driver package without the Rust extension module."""
    package = Path(neo4j.__file__).parent
    shutil.copytree(package, into / "neo4j", ignore=shutil.ignore_patterns("_rust*"))
    return into


def export(endpoint: Neo4jEndpoint, pythonpath: str | None) -> dict[str, float]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, "-c", EXPORT, endpoint.uri, endpoint.username, endpoint.password],
                         env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_rust_codec_export_against_pure_python(graph: Neo4jEndpoint, tmp_path: Path) -> None:
    plain_path = str(pure_python_driver(tmp_path))
    runs: dict[str, list[dict[str, float]]] = {"rust": [], "python": []}
    for _ in range(ROUNDS):
        runs["rust"].append(export(graph, None))
        runs["python"].append(export(graph, plain_path))
    assert all(r["rust"] for r in runs["rust"]) and not any(r["rust"] for r in runs["python"])
    assert len({r["entities"] for r in runs["rust"] + runs["python"]}) == 1
    med = {k: (statistics.median(r["s"] for r in v[1:]), statistics.median(r["cpu"] for r in v[1:]),
               max(r["rss_mib"] for r in v)) for k, v in runs.items()}
    entities = runs["rust"][0]["entities"]
    for k, (wall, cpu, rss) in med.items():
        print(f"\n{k:>6} codec: export of {entities:,.0f} entities {wall:.2f} s (median of {ROUNDS - 1}), "
              f"process CPU {cpu:.2f} s, peak RSS {rss:.0f} MiB, {entities / wall:,.0f} entities/s")
    ratios = (med["python"][0] / med["rust"][0], med["python"][1] / med["rust"][1])
    print(f"RUST CODEC: {ratios[0]:.2f}x faster wall, {ratios[1]:.2f}x less CPU than the pure-Python codec")
    assert entities == NODES * 3 and all(math.isfinite(r) and r > 0 for r in ratios)
    assert all(rss > 0 for _, _, rss in med.values())
    if FULL:
        assert med["rust"][0] < med["python"][0]


def test_export_peak_rss_is_its_own_not_the_pytest_process(graph: Neo4jEndpoint) -> None:
    # Given a test process that holds 400 MiB
    ballast = b"\x01" * (400 * 1024 * 1024)
    # When an export runs in its fresh process, as the benchmark runs it
    run = export(graph, None)
    # Then the peak RSS reported is the export's, not the size it was started from
    assert 0 < run["rss_mib"] < 300, run["rss_mib"]
    assert len(ballast) == 400 * 1024 * 1024
