"""The local Neo4j runtime itself (local/neo4j.py + the Java launcher): a real Neo4j 5.26 Community.

One server for the module, started on a temporary directory; the last tests stop it, start it again on
the same directory, and start it once more from a process that then dies abruptly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import neo4j
import pytest
from neo4j.exceptions import AuthError

from local.neo4j import (
    BUILD_STAMP,
    LAUNCHER_JAR,
    PASSWORD_ENV,
    LocalNeo4j,
    Neo4jEndpoint,
    Neo4jStartError,
    ensure_built,
)

pytestmark = pytest.mark.integration

PASSWORD = "test-password-1234"
REPO = Path(__file__).resolve().parents[2]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def driver(ep: Neo4jEndpoint, password: str | None = None) -> neo4j.Driver:
    return neo4j.GraphDatabase.driver(ep.uri, auth=(ep.username, password or ep.password))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNeo4j]:
    instance = LocalNeo4j(tmp_path_factory.mktemp("local-neo4j") / "home", password=PASSWORD)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


def test_ensure_built_is_fast_when_up_to_date() -> None:
    ensure_built()
    started = time.monotonic()
    path = ensure_built()
    assert time.monotonic() - started < 1.0
    assert LAUNCHER_JAR.parent == path and LAUNCHER_JAR.is_file() and BUILD_STAMP.is_file()


def test_endpoint(server: LocalNeo4j) -> None:
    ep = server.endpoint
    assert ep.uri == f"bolt://127.0.0.1:{ep.port}" and ep.port > 0
    assert (ep.username, ep.password) == ("neo4j", PASSWORD)
    assert ep.version.startswith("5.26.") and ep.edition == "community"
    assert ep.data_dir == server.data_dir and (ep.data_dir / "data" / "databases" / "neo4j").is_dir()
    assert pid_alive(ep.pid)
    assert server.start() == ep  # already running: same endpoint


def test_password_is_not_on_the_command_line(server: LocalNeo4j) -> None:
    cmdline = Path(f"/proc/{server.endpoint.pid}/cmdline").read_bytes().decode()
    assert "warden.local.Neo4jLauncher" in cmdline
    assert PASSWORD not in cmdline


def test_components_say_526_community(server: LocalNeo4j) -> None:
    with driver(server.endpoint) as d:
        records, _, _ = d.execute_query("CALL dbms.components() YIELD name, versions, edition")
    assert records[0]["name"] == "Neo4j Kernel"
    assert records[0]["versions"][0].startswith("5.26.")
    assert records[0]["edition"] == "community"


def test_write_and_read(server: LocalNeo4j) -> None:
    with driver(server.endpoint) as d:
        d.execute_query("CREATE (:WardenLauncherTest {name: $name, n: 42})", name="persisted")
        records, _, _ = d.execute_query(
            "MATCH (x:WardenLauncherTest {name: $name}) RETURN x.n AS n", name="persisted"
        )
    assert [r["n"] for r in records] == [42]


def test_auth_is_on(server: LocalNeo4j) -> None:
    with driver(server.endpoint, password="not-the-password") as d, pytest.raises(AuthError):
        d.verify_connectivity()
    with neo4j.GraphDatabase.driver(server.endpoint.uri, auth=None) as d, pytest.raises(AuthError):
        d.verify_connectivity()
    with driver(server.endpoint) as d:  # the initial password is gone and not expired
        records, _, _ = d.execute_query("SHOW CURRENT USER YIELD user, passwordChangeRequired")
    assert (records[0]["user"], records[0]["passwordChangeRequired"]) == ("neo4j", False)


def test_launcher_errors_carry_its_output(tmp_path: Path) -> None:
    bad = LocalNeo4j(tmp_path / "bad", pagecache="lots", startup_timeout=60)
    with pytest.raises(Neo4jStartError) as err:
        bad.start()
    assert "exited with status 2" in str(err.value) and "pagecache" in str(err.value)
    bad.stop()
    bad.stop()


def test_stop_then_start_again_keeps_data(server: LocalNeo4j) -> None:
    first = server.endpoint
    server.stop()
    assert not pid_alive(first.pid)
    assert not port_accepts(first.port)
    with pytest.raises(RuntimeError):
        _ = server.endpoint
    server.stop()  # idempotent

    second = server.start()  # password already changed: must not fail
    assert second.pid != first.pid
    with driver(second) as d:
        records, _, _ = d.execute_query("MATCH (x:WardenLauncherTest) RETURN x.name AS name, x.n AS n")
    assert [(r["name"], r["n"]) for r in records] == [("persisted", 42)]
    server.stop()
    assert not port_accepts(second.port)


CHILD = """
import json, os, sys, time
from pathlib import Path
from local.neo4j import LocalNeo4j
ep = LocalNeo4j(Path(sys.argv[1]), password=os.environ["TEST_NEO4J_PASSWORD"]).start()
print(json.dumps({"pid": ep.pid, "port": ep.port}), flush=True)
time.sleep(600)
"""


def test_jvm_dies_with_its_parent(server: LocalNeo4j) -> None:
    """A Python process killed with SIGKILL takes its Neo4j down (no leaked JVMs in test runs)."""
    server.stop()
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    env["TEST_NEO4J_PASSWORD"] = PASSWORD
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(server.data_dir)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, "the child did not start Neo4j"
        started = json.loads(line)
        assert pid_alive(started["pid"]) and port_accepts(started["port"])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert wait_for(lambda: not pid_alive(started["pid"]), 60), "Neo4j outlived its parent"
    assert not port_accepts(started["port"])
    # It was a clean shutdown (the checkpoint of a shutdown), not a crash.
    last_run = (server.data_dir / "logs" / "debug.log").read_text().rsplit("Bolt server started", 1)[1]
    assert 'Checkpoint triggered by "Database shutdown"' in last_run
