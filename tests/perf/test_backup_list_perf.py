"""Benchmark: `warden backup list` across a stage's targets reads each target's catalog partition,
`CATALOG_READERS` at a time, against the same listing read one target after the other. The catalog
is in a moto server in its own process (the CLI reaches DynamoDB over the network, as an operator's
does): 300 targets with 3 backups each at full size, 30 at tiny.

    WARDEN_BENCH_SIZE=full .venv/bin/pytest tests/perf/test_backup_list_perf.py -q -s
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.perf.bench import FULL, sized
from warden import names
from warden.config.target import Target
from warden.models import BackupRecord, BackupStatus
from warden.settings import Settings
from warden.stores.catalog import Catalog
from warden.stores.clients import aws_client, reset_clients
from warden_cli import main as cli

TARGETS = sized(full=300, tiny=30)
STAGE, TABLE = "bench", "warden-bench-catalog"
READERS = cli.CATALOG_READERS


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """A moto server in a process of its own: its endpoint."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def stage(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The stage's targets in Parameter Store and their catalog, 3 backups each (the newest of every
    third target failed, so the listing has both kinds)."""
    for name, value in {"AWS_ENDPOINT_URL": moto_server, "AWS_DEFAULT_REGION": "eu-west-1",
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    reset_clients()
    ddb, ssm = aws_client("dynamodb"), aws_client("ssm")
    ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])
    catalog, now = Catalog(TABLE), datetime.now(UTC)
    for i in range(TARGETS):
        target = Target(name=f"t{i:03d}", engine=("postgres", "neo4j")[i % 2], secret_name=f"warden/{STAGE}/t{i:03d}")
        ssm.put_parameter(Name=names.target_parameter(STAGE, target.name), Type="String",
                          Value=json.dumps(target.model_dump(mode="json")))
        for days in (2, 1, 0):
            started = now - timedelta(days=days, hours=1)
            failed = days == 0 and i % 3 == 0
            catalog.create(BackupRecord(
                target=target.name, backup_id=f"{started:%Y%m%dT%H%M%SZ}-{i:08x}", engine=target.engine,
                method="pg_dump" if i % 2 == 0 else "neo4j-export", started_at=started, duration_s=1.0,
                status=BackupStatus.FAILED if failed else BackupStatus.COMPLETED, size_bytes=1000 + i))
    yield type("Handle", (), {"settings": Settings.model_validate(
        {names.ENV_STAGE: STAGE, names.ENV_CATALOG_TABLE: TABLE})})()
    reset_clients()


def test_backup_list_across_targets_reads_the_catalogs_in_parallel(
        stage: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    args = argparse.Namespace(engine=None, group=None, tag=None, target=None)

    def timed(readers: int) -> tuple[float, Any]:
        monkeypatch.setattr(cli, "CATALOG_READERS", readers)
        best, rows = float("inf"), None
        for _ in range(3):
            started = time.perf_counter()
            rows, _, _ = cli.backup_summary(stage, args)
            best = min(best, time.perf_counter() - started)
        return best, rows

    timed(READERS)  # warm: the first listing pays for the client and the server's first requests
    sequential, expected = timed(1)
    pooled, rows = timed(READERS)
    # The same listing: every target, those without a good backup in the last day first
    assert [{k: v for k, v in r.items() if k != "age_s"} for r in rows] == \
        [{k: v for k, v in r.items() if k != "age_s"} for r in expected]
    stale = [r["target"] for r in rows if not r["good_in_last_day"]]  # their newest failed, the one before is 25 h old
    assert len(rows) == TARGETS and stale == [f"t{i:03d}" for i in range(0, TARGETS, 3)]
    assert rows[len(stale)]["status"] == "COMPLETED" and rows[0]["status"] == "FAILED"
    started = time.perf_counter()
    cli.select_fleet(stage, args)
    listing = time.perf_counter() - started  # the targets from Parameter Store: the same either way
    print(f"\nbackup list of {TARGETS} targets: sequential {sequential:.2f} s, {READERS} readers {pooled:.2f} s "
          f"({sequential / pooled:.1f}x); of which reading the targets from Parameter Store {listing:.2f} s")
    if FULL:
        assert pooled < sequential / 1.2  # moto is one Python process on shared cores: DynamoDB overlaps more
