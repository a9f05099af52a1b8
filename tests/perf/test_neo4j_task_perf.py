"""Benchmark (issue 16): Neo4j backups of 1 M and 5 M nodes (2 M and 10 M relationships) by the
Fargate task's entry point against the backup function (the Lambda path), on the same machine
and server in the same run; and the restore's rate on the bigger graph.

    WARDEN_BENCH_SIZE=full .venv/bin/pytest tests/perf/test_neo4j_task_perf.py -s -p no:cacheprovider \
        --override-ini=addopts= --timeout=7200

The graph is the export benchmark's shape (tests/perf/test_neo4j_backup_perf.py `grow`: :Entity
nodes, 1 in 10 also :Company, 1 in 4 with a date; two relationships each, KNOWS with a property and
WORKS_WITH without; the index entity_uid), written as a Warden archive by this test and loaded with
Warden's restore (Cypher's own CREATE takes over ten minutes at 1 M nodes here): the restore's rate
at 1 M and at 5 M nodes is reported, and at full size the rate at 5 M must keep 80 % of the rate
at 1 M (the restore keeps its rate on a graph of tens of millions of entities).

At each size, in fresh processes with the backup function's environment and S3 / DynamoDB on a
moto server, alternating (the order swaps each round):
- the Lambda path: `functions/backup/handler.py` called with a Lambda context of 15 minutes and
  `runner: lambda`;
- the task path: `python -m warden.task backup --target graph-bench`.
Both make a complete backup (record, SHA-256, multipart upload, manifest). Reported per path: wall
seconds, the backup's own duration (its record's) and entities/s, and peak RSS (VmHWM at exit).
Goals at full size: the task's export rate at least the Lambda path's (0.95x: the same code on the
same machine, within the noise of two cores); the task's peak RSS at 5 M nodes within 20 % of its
peak at 1 M. At WARDEN_BENCH_SIZE=tiny (in `make test`) 2 000 and 10 000 nodes, one round: run and
checked, goals not asserted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.aws import LocalAws
from local.config import LocalConfig
from local.deploy import Deployment, deploy_template
from local.neo4j import Neo4jEndpoint
from local.runtime import neo4j_secret, register_targets
from tests.conftest import STAGE
from tests.integration.test_task_runner import task_environment
from tests.perf.bench import FULL, PEAK_RSS_SOURCE, sized
from tests.perf.neo4j_graph import MANIFEST, chunks, write_archive
from tests.perf.test_neo4j_backup_perf import secret_of, start
from warden.engines import neo4j as nb
from warden.engines.neo4j import close_drivers
from warden.models import BackupStatus
from warden.stores import Stores

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TARGET = "graph-bench"
SIZES = sized((1_000_000, 5_000_000), (2_000, 10_000))
ROUNDS = int(os.environ.get("WARDEN_BENCH_ROUNDS", sized(2, 1)))
RATE_GOAL = 0.95  # task rate / Lambda path rate
RSS_GROWTH_GOAL = 0.20
RESTORE_KEEPS = 0.80  # restore rate at the biggest size / at the smallest

# One backup in a fresh process, its peak RSS written at exit: the task's entry point, or the
# backup function's handler with a Lambda context (local.aws.LambdaContext).
RUN = PEAK_RSS_SOURCE + r"""
import atexit, json, os, runpy, sys, time
atexit.register(lambda: open(os.environ["WARDEN_BENCH_RSS_FILE"], "w").write(str(peak_rss_mib())))
path, target = sys.argv[1], sys.argv[2]
if path == "task":
    sys.argv = ["warden.task", "backup", "--target", target]
    runpy.run_module("warden.task", run_name="__main__", alter_sys=True)
else:
    import importlib.util
    from local.aws import LambdaContext
    spec = importlib.util.spec_from_file_location("backup_handler", "functions/backup/handler.py")
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    context = LambdaContext(function_name="warden-bench-backup", memory_limit_in_mb=1024,
                            deadline=time.monotonic() + 900)
    print(json.dumps(handler.handler({"target": target, "runner": "lambda"}, context)))
"""


@pytest.fixture(scope="module")
def graph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jEndpoint]:
    instance = start(tmp_path_factory.mktemp("neo4j-perf-task"), heap="2g", pagecache="3g")
    try:
        yield instance.endpoint
    finally:
        close_drivers()
        instance.stop(timeout=120)


@pytest.fixture(scope="module")
def stage(moto_server: LocalAws, local_template: dict[str, Any], graph_server: Neo4jEndpoint) -> Deployment:
    config = LocalConfig.model_validate({"stage": STAGE, "targets": [
        {"name": TARGET, "engine": "neo4j", "local": "neo4j"}]})
    register_targets(moto_server, config, {"neo4j": neo4j_secret(graph_server)})
    return deploy_template(moto_server, local_template, STAGE)


def backup(moto_server: LocalAws, stage: Deployment, path: str, tmp: Path) -> dict[str, Any]:
    """One backup by `path` ("task" or "lambda"): wall seconds, peak RSS and its COMPLETED record."""
    catalog = Stores.from_settings(stage.settings("backup")).catalog
    before = {r.backup_id for r in catalog.list(TARGET)}
    rss_file = tmp / f"rss-{path}"
    env = task_environment(moto_server, stage, WARDEN_BENCH_RSS_FILE=str(rss_file),
                           PYTHONPATH=f"{REPO / 'layers/warden/python'}:{REPO}")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", RUN, path, TARGET], env=env, cwd=REPO, capture_output=True,
                         text=True, check=False)
    seconds = time.monotonic() - started
    assert out.returncode == 0, f"the {path} backup failed: {out.stderr[-3000:]}"
    new = [r for r in catalog.list(TARGET) if r.backup_id not in before]
    assert len(new) == 1 and new[0].status is BackupStatus.COMPLETED, [(r.status, r.error) for r in new]
    assert new[0].runner == ("fargate" if path == "task" else "lambda")
    return {"seconds": seconds, "max_rss_mb": float(rss_file.read_text()), "record": new[0]}


def test_task_exports_as_fast_as_the_lambda_path_in_flat_memory(
        graph_server: Neo4jEndpoint, moto_server: LocalAws, stage: Deployment, tmp_path: Path) -> None:
    secret = secret_of(graph_server)
    results: list[dict[str, Any]] = []
    for nodes in SIZES:
        # Given: the graph of this size, loaded by Warden's restore
        archive = tmp_path / f"graph-{nodes}.wnj.gz"
        started = time.monotonic()
        entities = write_archive(archive, nodes)
        written_s = time.monotonic() - started
        started = time.monotonic()
        restored = nb.restore_backup(secret, chunks(archive), MANIFEST, replace=True)
        restore_s = time.monotonic() - started
        archive.unlink()
        assert restored.counts["nodes"] == nodes and restored.counts["relationships"] == 2 * nodes
        assert restored.counts["label:Company"] == len(range(0, nodes, 10))
        print(f"\n{nodes:,} nodes / {2 * nodes:,} relationships: archive written in {written_s:.0f} s, restored in "
              f"{restore_s:.1f} s = {entities / restore_s:,.0f} entities/s (replaced {restored.details['replaced']}, "
              f"{restored.details['retries']} retried batches)", flush=True)

        # When: backed up by both paths, alternating
        runs: dict[str, list[dict[str, Any]]] = {"lambda": [], "task": []}
        for round_no in range(ROUNDS):
            for path in (("lambda", "task") if round_no % 2 == 0 else ("task", "lambda")):
                load = os.getloadavg()[0]
                run = backup(moto_server, stage, path, tmp_path)
                runs[path].append(run)
                counts = run["record"].counts
                assert counts["nodes"] == nodes and counts["relationships"] == 2 * nodes
                print(f"  round {round_no + 1} {path:6s} {run['seconds']:6.1f} s wall, backup "
                      f"{run['record'].duration_s:.1f} s = {entities / run['record'].duration_s:,.0f} entities/s, "
                      f"peak RSS {run['max_rss_mb']:.0f} MB, archive "
                      f"{(run['record'].size_bytes or 0) / 2**20:.0f} MiB (load {load:.1f})", flush=True)
        # The rate of the backup itself (its record's duration): the process's start (imports, ~3 s
        # here) is the same on both paths and is not the export's; the wall time is printed above.
        rates = {path: entities / statistics.median(r["record"].duration_s for r in rs) for path, rs in runs.items()}
        results.append({"nodes": nodes, "restore_rate": entities / restore_s, "rates": rates,
                        "rss": {path: max(r["max_rss_mb"] for r in rs) for path, rs in runs.items()}})

    # Then: the task keeps the Lambda path's pace, its memory flat, the restore its rate
    small, big = results[0], results[-1]
    for result in results:
        print(f"EXPORT {result['nodes']:,} nodes: task {result['rates']['task']:,.0f} entities/s vs Lambda path "
              f"{result['rates']['lambda']:,.0f} (ratio {result['rates']['task'] / result['rates']['lambda']:.3f}, "
              f"goal >= {RATE_GOAL}); peak RSS task {result['rss']['task']:.0f} MB, Lambda path "
              f"{result['rss']['lambda']:.0f} MB")
    growth = big["rss"]["task"] / small["rss"]["task"] - 1
    keeps = big["restore_rate"] / small["restore_rate"]
    print(f"MEMORY task peak RSS {small['rss']['task']:.0f} MB at {small['nodes']:,} nodes, "
          f"{big['rss']['task']:.0f} MB at {big['nodes']:,} ({growth * 100:+.1f} %, "
          f"goal within {RSS_GROWTH_GOAL * 100:.0f} %)")
    print(f"RESTORE {small['restore_rate']:,.0f} entities/s at {3 * small['nodes']:,} entities, "
          f"{big['restore_rate']:,.0f} at {3 * big['nodes']:,} (keeps {keeps:.2f}, goal >= {RESTORE_KEEPS})")
    assert all(r["rates"]["task"] > 0 and r["rates"]["lambda"] > 0 for r in results)
    if FULL:
        for result in results:
            assert result["rates"]["task"] >= RATE_GOAL * result["rates"]["lambda"], result
        assert abs(growth) <= RSS_GROWTH_GOAL
        assert keeps >= RESTORE_KEEPS
