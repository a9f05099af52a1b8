"""Benchmarks of the Neo4j backup (on demand, not part of the suite: tests/perf is excluded by addopts).

    .venv/bin/pytest tests/perf/test_neo4j_backup_perf.py -s -p no:cacheprovider --override-ini=addopts= --timeout=3600

(a) Export of a 1 M node / 2 M relationship graph: Warden's export (into an ArtifactWriter on a
    NullSink: encoding, gzip and SHA-256 included) against a plain driver export (`MATCH (n) RETURN n`,
    then `MATCH ()-[r]->() RETURN r`, consumed and thrown away). Goal: at least 2x faster. Memory:
    the process's peak RSS (sampled) and peak Python heap (tracemalloc) during the export of the
    graph at 100 k nodes and again at 1 M: goal within 20 % of each other.
(b) Restore of a 5 000 node / 10 000 relationship sample: Warden's restore against one CREATE
    statement (one transaction) per node and per relationship. Goal: at least 20x faster.

The servers run with the full JIT (C2), as a production server does; the local runtime's default
(C1 only) is tuned for start-up, not throughput. At WARDEN_BENCH_SIZE=tiny (the default outside
`make bench`) the graphs are 500 and 5 000 nodes and the restore sample 100, on one small server with
the default JIT, and only the results are checked, not the goals.
"""

from __future__ import annotations

import math
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import neo4j
import pytest

from local.neo4j import LocalNeo4j, Neo4jEndpoint
from tests.perf.bench import FULL, sized
from warden.config.credentials import Neo4jSecret
from warden.engines import neo4j as nb
from warden.engines.neo4j import close_drivers
from warden.engines.neo4j import format as fmt
from warden.stores.artifacts import ArtifactWriter, NullSink

PASSWORD = "perf-test-password"
FULL_JIT = ["-XX:TieredStopAtLevel=4"]
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1024 * 1024


def start(path: Path, heap: str, pagecache: str) -> LocalNeo4j:
    server = LocalNeo4j(path, password=PASSWORD, heap=sized(heap, "512m"), pagecache=sized(pagecache, "64m"),
                        startup_timeout=300, extra_jvm_args=sized(FULL_JIT, []))
    server.start()
    return server


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jEndpoint]:
    server = start(tmp_path_factory.mktemp("neo4j-perf-big"), heap="2g", pagecache="2g")
    try:
        yield server.endpoint
    finally:
        close_drivers()
        server.stop(timeout=120)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Neo4jEndpoint]:
    if not FULL:  # tiny: one server start less; the restore test wipes it first
        yield request.getfixturevalue("big")
        return
    server = start(tmp_path_factory.mktemp("neo4j-perf-small"), heap="1g", pagecache="512m")
    try:
        yield server.endpoint
    finally:
        close_drivers()
        server.stop(timeout=120)


def secret_of(ep: Neo4jEndpoint) -> Neo4jSecret:
    return Neo4jSecret(uri=ep.uri, username=ep.username, password=ep.password)


def driver_of(ep: Neo4jEndpoint) -> neo4j.Driver:
    return neo4j.GraphDatabase.driver(ep.uri, auth=(ep.username, ep.password), notifications_min_severity="OFF")


def grow(driver: neo4j.Driver, start_uid: int, end_uid: int) -> None:
    """Entities [start_uid, end_uid): 1 in 10 also a Company, 1 in 4 with a date; two relationships
    each (KNOWS with a property, WORKS_WITH without) to entities anywhere below end_uid."""
    with driver.session(database="neo4j") as session:
        session.run("CREATE INDEX entity_uid IF NOT EXISTS FOR (n:Entity) ON (n.uid)").consume()
        session.run("""
            UNWIND range($start, $end - 1) AS i
            CALL (i) {
              CREATE (n:Entity {uid: i, name: 'entity-' + i, score: i * 0.25, active: i % 2 = 0,
                                born: CASE WHEN i % 4 = 0 THEN date({year: 1950 + i % 50, month: 1 + i % 12,
                                                                     day: 1 + i % 28}) END})
              FOREACH (_ IN CASE WHEN i % 10 = 0 THEN [1] ELSE [] END | SET n:Company)
            } IN TRANSACTIONS OF 50000 ROWS""", start=start_uid, end=end_uid).consume()
        session.run("CALL db.awaitIndexes(600)").consume()
        session.run("""
            UNWIND range($start, $end - 1) AS i
            CALL (i) {
              MATCH (a:Entity {uid: i})
              MATCH (b:Entity {uid: (i * 7919 + 1) % $end})
              MATCH (c:Entity {uid: (i * 104729 + 7) % $end})
              CREATE (a)-[:KNOWS {since: 1990 + i % 30}]->(b), (a)-[:WORKS_WITH]->(c)
            } IN TRANSACTIONS OF 20000 ROWS""", start=start_uid, end=end_uid).consume()


class PeakRss:
    """Samples this process's resident set every 10 ms while in the block."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> PeakRss:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def warden_export(secret: Neo4jSecret) -> nb.ExportResult:
    # 1 MiB parts: the S3 pipeline's fixed part buffer (16 MiB, plus its copy) would otherwise fill up
    # at 1 M nodes but not at 100 k, and hide what the export itself holds.
    with ArtifactWriter(NullSink(), "perf/data.wnj.gz", part_size=MiB) as writer:
        return nb.export_backup(secret, writer)


def plain_export(driver: neo4j.Driver) -> int:
    seen = 0
    with driver.session(database="neo4j") as session:
        for _ in session.run("MATCH (n) RETURN n"):
            seen += 1
        for _ in session.run("MATCH ()-[r]->() RETURN r"):
            seen += 1
    return seen


def heap_peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_export_is_faster_than_a_plain_driver_export_in_flat_memory(big: Neo4jEndpoint) -> None:
    secret = secret_of(big)
    driver = driver_of(big)
    rows = []
    try:
        for start_uid, end_uid in ((0, sized(100_000, 500)), (sized(100_000, 500), sized(1_000_000, 5_000))):
            seconds, _ = timed(lambda s=start_uid, e=end_uid: grow(driver, s, e))
            print(f"\ngraph grown to {end_uid:,} nodes in {seconds:.0f} s", flush=True)
            heap = heap_peak(lambda: warden_export(secret))  # also warms the server up (JIT, page cache)
            with PeakRss() as rss:
                warden_s, result = timed(lambda: warden_export(secret))
            plain_s, seen = timed(lambda: plain_export(driver))
            assert seen == result.counts["nodes"] + result.counts["relationships"]
            rows.append((result.counts["nodes"], result.counts["relationships"], warden_s, plain_s, rss.peak, heap,
                         result.details["compressed_bytes"]))
            print(f"  {rows[-1][0]:,} nodes / {rows[-1][1]:,} rels: warden {warden_s:.1f} s, plain {plain_s:.1f} s "
                  f"({plain_s / warden_s:.1f}x); peak RSS {rss.peak / MiB:.0f} MiB, peak Python heap "
                  f"{heap / MiB:.1f} MiB; archive {rows[-1][6] / MiB:.1f} MiB", flush=True)
    finally:
        driver.close()

    (n1, _, w1, p1, rss1, heap1, _), (n2, r2, w2, p2, rss2, heap2, _) = rows
    print(f"\nEXPORT {n1:,} nodes: warden {w1:.1f} s vs plain driver {p1:.1f} s -> {p1 / w1:.1f}x faster")
    print(f"EXPORT {n2:,} nodes / {r2:,} relationships: warden {w2:.1f} s vs plain driver {p2:.1f} s "
          f"-> {p2 / w2:.1f}x faster ({n2 / w2:,.0f} nodes/s incl. relationships)")
    print(f"MEMORY peak RSS {rss1 / MiB:.0f} MiB at {n1:,} nodes vs {rss2 / MiB:.0f} MiB at {n2:,} "
          f"({(rss2 / rss1 - 1) * 100:+.1f} %); Python heap {heap1 / MiB:.1f} vs {heap2 / MiB:.1f} MiB")
    assert n2 == sized(1_000_000, 5_000) and r2 == 2 * n2
    assert all(math.isfinite(x) and x > 0 for x in (p1 / w1, p2 / w2, rss2 / rss1, heap1, heap2))
    if FULL:
        assert p2 / w2 >= 2.0
        assert abs(rss2 / rss1 - 1) <= 0.20


SAMPLE_NODES = sized(5_000, 100)


def archive_of_sample(ep: Neo4jEndpoint, nodes: int = SAMPLE_NODES, rels: int = 2 * SAMPLE_NODES,
                      ) -> tuple[bytes, dict[str, Any]]:
    driver = driver_of(ep)
    try:
        wipe(driver)  # the sample alone (at tiny size the server is the export test's, with its index)
        driver.execute_query("DROP INDEX entity_uid IF EXISTS")
        driver.execute_query("""
            UNWIND range(0, $n - 1) AS i
            CREATE (n:Sample {uid: i, name: 'sample-' + i, score: i * 0.5, tags: ['a', 'b'],
                              at: datetime({epochSeconds: 1700000000 + i, nanosecond: i})})
            FOREACH (_ IN CASE WHEN i % 3 = 0 THEN [1] ELSE [] END | SET n:Person)""", n=nodes)
        driver.execute_query("""
            MATCH (n:Sample) WITH collect(n) AS ns
            UNWIND range(0, $r - 1) AS j
            WITH ns[j % size(ns)] AS a, ns[(j * 7919 + 1) % size(ns)] AS b, j
            CALL (a, b, j) {
              WITH a, b, j WHERE j % 2 = 0 CREATE (a)-[:LINKS {w: j}]->(b)
            }
            CALL (a, b, j) {
              WITH a, b, j WHERE j % 2 = 1 CREATE (a)-[:FOLLOWS]->(b)
            }""", r=rels)
    finally:
        driver.close()
    import io

    out = io.BytesIO()
    result = nb.export_backup(secret_of(ep), out)
    assert result.counts["nodes"] == nodes and result.counts["relationships"] == rels
    return out.getvalue(), {"format_version": result.format_version, "counts": result.counts}


def wipe(driver: neo4j.Driver) -> None:
    with driver.session(database="neo4j") as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()


def naive_restore(driver: neo4j.Driver, data: bytes) -> None:
    """One CREATE (one auto-commit transaction) per node and per relationship; new ids kept in a dict."""
    new_ids: dict[int, int] = {}
    with driver.session(database="neo4j") as session:
        for record in fmt.iter_records([data]):
            if record[0] == "N":
                _, labels, keys, rows = record
                label_text = "".join(f":`{label}`" for label in labels)
                for row in rows:
                    fmt.decode_row(row, 1)
                    props = {k: v for k, v in zip(keys, row[1:], strict=True) if v is not None}
                    new_ids[row[0]] = session.run(f"CREATE (n{label_text} $props) RETURN id(n)",
                                                  props=props).single(strict=True)[0]
            elif record[0] == "R":
                _, rel_type, keys, rows = record
                for row in rows:
                    fmt.decode_row(row, 2)
                    props = {k: v for k, v in zip(keys, row[2:], strict=True) if v is not None}
                    session.run(f"MATCH (a) WHERE id(a) = $a MATCH (b) WHERE id(b) = $b "
                                f"CREATE (a)-[r:`{rel_type}`]->(b) SET r = $props",
                                a=new_ids[row[0]], b=new_ids[row[1]], props=props).consume()


def test_restore_is_faster_than_one_create_per_entity(small: Neo4jEndpoint) -> None:
    secret = secret_of(small)
    data, manifest = archive_of_sample(small)
    driver = driver_of(small)
    try:
        runs = []
        for _ in range(sized(5, 2)):  # the first runs warm the server's JIT up (a production server is warm): best
            wipe(driver)
            seconds, restored = timed(lambda: nb.restore_backup(secret, [data], manifest))
            assert restored.counts == manifest["counts"]
            runs.append(seconds)
            print(f"\n  warden restore {seconds:.2f} s {restored.details}", flush=True)
        warden_s = min(runs)
        wipe(driver)
        naive_s, _ = timed(lambda: naive_restore(driver, data))
        assert nb.count_objects(secret) == manifest["counts"]
    finally:
        driver.close()
    print(f"\nRESTORE {SAMPLE_NODES:,} nodes / {2 * SAMPLE_NODES:,} relationships: warden {warden_s:.2f} s vs one "
          f"CREATE per entity {naive_s:.1f} s -> {naive_s / warden_s:.0f}x faster (phases: {restored.details})")
    assert math.isfinite(naive_s / warden_s) and naive_s > 0
    if FULL:
        assert naive_s / warden_s >= 20
