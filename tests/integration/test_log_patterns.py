"""The log monitoring's filter patterns against real log lines from the local servers.

- `filter_matches` (infra/log_monitoring.py) is first checked against CloudWatch Logs' documented
  examples of text filter patterns: moto's logs backend does not evaluate `-term` exclusions or several
  quoted terms (it treats them as match-all) and makes no metrics from metric filters, so it cannot
  judge these patterns.
- PostgreSQL 18 (embedded) runs with RDS's log_line_prefix `%t:%r:%u@%d:[%p]:` and
  log_min_duration_statement; each event of interest is caused for real and its lines read back from
  the server's log.
- Neo4j 5.26 Community: failed Bolt logins (neo4j.log, here the launcher's log, and debug.log) and a
  real ERROR (a second server that cannot bind the first one's Bolt port). Community writes no
  query.log or security.log lines (both are Enterprise features): that is asserted, and the slow-query
  pattern is checked against the query.log line Neo4j documents instead.
"""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from infra.log_monitoring import PATTERNS, UnsupportedPattern, count_lines, filter_matches, parse_terms
from local.postgres import LocalPostgres, PostgresEndpoint

RDS_PREFIX = "%t:%r:%u@%d:[%p]:"
SLOW_MS = 100


# -- the evaluator, on CloudWatch's documented examples ------------------------------------------

DOC_EVENTS = ["[ERROR] A fatal exception has occurred", "Exiting with ERRORCODE: -1",
              "[ERROR] Caught IllegalArgumentException", "[ERROR] Unhandled Exception",
              "[WARN] Failed to process the request", "[ERROR] Unable to continue: Failed to process the request"]
OR_EVENTS = ["ERROR WARN message", "ERROR message", "WARN message"]


@pytest.mark.parametrize(("pattern", "events", "matching"), [
    # "ERROR" matches terms inside words too: "ERRORCODE"
    ("ERROR", DOC_EVENTS[:2], [0, 1]),
    ('"ERROR"', DOC_EVENTS[:2], [0, 1]),
    ('"ERROR" - "Exiting"', DOC_EVENTS[:2], [0]),
    ("ERROR Exception", DOC_EVENTS, [2, 3]),
    ('"Failed to process the request"', DOC_EVENTS, [4, 5]),
    ("ERROR", OR_EVENTS, [0, 1]),
    ("?ERROR ?WARN", OR_EVENTS, [0, 1, 2]),
    ("ERROR WARN", OR_EVENTS, [0]),
    ("ERROR -WARN", OR_EVENTS, [1]),
    ("", OR_EVENTS, [0, 1, 2]),
    ("error", OR_EVENTS, []),  # case sensitive
])
def test_filter_matches_cloudwatchs_documented_examples(pattern: str, events: list[str], matching: list[int]) -> None:
    assert [i for i, e in enumerate(events) if filter_matches(pattern, e)] == matching


@pytest.mark.parametrize("pattern", ["{ $.level = ERROR }", "[ip, user, status=4*]", "%ERR[O]R%",
                                     "?ERROR WARN", 'ERROR "unterminated'])
def test_patterns_outside_the_evaluated_subset_are_refused(pattern: str) -> None:
    with pytest.raises(UnsupportedPattern):
        parse_terms(pattern)


def test_every_shipped_pattern_is_in_the_evaluated_subset() -> None:
    for by_metric in PATTERNS.values():
        for patterns in by_metric.values():
            for pattern in patterns:
                assert parse_terms(pattern), pattern


# -- PostgreSQL ----------------------------------------------------------------------------------

def _connect(endpoint: PostgresEndpoint, **overrides: Any) -> psycopg.Connection[Any]:
    params = {"host": endpoint.host, "port": endpoint.port, "user": endpoint.username,
              "password": endpoint.password, "dbname": endpoint.dbname, "sslmode": "disable",
              "connect_timeout": 5, "autocommit": True, **overrides}
    return psycopg.connect(**params)


@pytest.fixture(scope="module")
def pg_log() -> Iterator[dict[str, list[str]]]:
    """A PostgreSQL 18 of its own, logging like RDS; every event below caused once. Yields, per event,
    the log lines it wrote (found by the marker in its SQL or by the connection it came from), and
    "all": every line written with the RDS prefix."""
    data = Path(tempfile.mkdtemp(prefix="warden-log-patterns-pg-"))
    server = LocalPostgres(data / "pg", preload=())
    endpoint = server.start()
    try:
        with _connect(endpoint) as conn:
            conn.execute(f"ALTER SYSTEM SET log_line_prefix = '{RDS_PREFIX}'")
            conn.execute(f"ALTER SYSTEM SET log_min_duration_statement = {SLOW_MS}")
            conn.execute("ALTER SYSTEM SET log_duration = on")  # short statements log a bare duration line
            conn.execute("SELECT pg_reload_conf()")
        # Only `postgres` may connect over TCP; `blocked` is rejected outright; anyone else has no entry.
        hba = endpoint.data_dir / "pg_hba.conf"
        hba.write_text("local all all scram-sha-256\nhost all blocked 127.0.0.1/32 reject\n"
                       "host all postgres 127.0.0.1/32 scram-sha-256\n")
        with _connect(endpoint) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("CREATE ROLE blocked LOGIN PASSWORD 'blocked-pw'")
        time.sleep(0.3)
        with _connect(endpoint) as conn:
            conn.execute("SELECT 'slow-simple', pg_sleep(0.15)")
            conn.execute("SELECT %s::text, pg_sleep(%s)", ("slow-extended", 0.15))
            conn.execute("SELECT 'fast-query'")
            for sql in ("SELEC 'bad-syntax'", 'SELECT 1/0 AS "div-zero"'):
                with pytest.raises(psycopg.Error):
                    conn.execute(sql)
        for _event, overrides in (("wrong-password", {"password": "not-the-password"}),
                                ("no-hba-entry", {"user": "intruder", "password": "x"}),
                                ("hba-reject", {"user": "blocked", "password": "blocked-pw"}),
                                ("no-database", {"dbname": "no_such_db"})):
            with pytest.raises(psycopg.OperationalError):
                _connect(endpoint, **overrides)
        victim = _connect(endpoint, application_name="victim")
        pid = victim.info.backend_pid
        with _connect(endpoint) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.3)
        victim.close()
    finally:
        server.stop()
    text = (endpoint.data_dir / "server.log").read_text()
    lines = [line for line in text.splitlines() if re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+:[^ ]*\[\d+\]:", line)]
    shutil.rmtree(data, ignore_errors=True)

    def having(*needles: str) -> list[str]:
        return [line for line in lines if all(n in line for n in needles)]

    yield {
        "all": lines,
        "slow-simple": having("duration:", "slow-simple"),
        "slow-extended": having("duration:", "execute"),
        "fast-query": having("fast-query"),
        "bad-syntax": having("]:ERROR:", "syntax error"),
        "div-zero": having("]:ERROR:", "division by zero"),
        "wrong-password": having('password authentication failed for user "postgres"'),
        "no-hba-entry": having("no pg_hba.conf entry", "intruder"),
        "hba-reject": having("pg_hba.conf rejects connection", "blocked"),
        "no-database": having("]:FATAL:", "no_such_db"),
        "terminated": having("]:FATAL:", "terminating connection due to administrator command"),
        "bare-duration": [line for line in lines if re.search(r"\]:LOG:  duration: [\d.]+ ms$", line)],
    }


def test_postgres_log_lines_carry_the_rds_prefix(pg_log: dict[str, list[str]]) -> None:
    line = pg_log["div-zero"][0]
    # %t:%r:%u@%d:[%p]: → "2026-01-01 10:00:00 UTC:127.0.0.1(54321):postgres@postgres:[1234]:ERROR:  ..."
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC:127\.0\.0\.1\(\d+\):postgres@postgres:\[\d+\]:ERROR:  ",
                    line), line


@pytest.mark.parametrize(("event", "metric"), [
    ("slow-simple", "SlowQueries"),
    ("slow-extended", "SlowQueries"),
    ("bad-syntax", "ErrorLines"),
    ("div-zero", "ErrorLines"),
    ("no-database", "ErrorLines"),
    ("terminated", "ErrorLines"),
    ("wrong-password", "AuthFailures"),
    ("no-hba-entry", "AuthFailures"),
    ("hba-reject", "AuthFailures"),
])
def test_each_real_postgres_event_counts_once_in_its_metric_only(
    pg_log: dict[str, list[str]], event: str, metric: str
) -> None:
    lines = pg_log[event]
    assert len(lines) == 1, f"{event}: expected one line, got {lines}"
    for other in PATTERNS["postgres"]:
        assert count_lines("postgres", other, lines) == (1 if other == metric else 0), (event, other, lines)


def test_statements_under_the_threshold_and_bare_durations_count_nowhere(pg_log: dict[str, list[str]]) -> None:
    quiet = pg_log["fast-query"] + pg_log["bare-duration"]
    assert pg_log["bare-duration"], "log_duration wrote no bare duration line"
    assert not any("fast-query" in line for line in pg_log["fast-query"] if "duration" in line)
    for metric in PATTERNS["postgres"]:
        assert count_lines("postgres", metric, quiet) == 0, metric


def test_the_whole_postgres_log_counts_exactly_the_events_caused(pg_log: dict[str, list[str]]) -> None:
    # Start-up, reload, DETAIL / STATEMENT lines and the rest count nowhere.
    assert count_lines("postgres", "SlowQueries", pg_log["all"]) == 2
    assert count_lines("postgres", "ErrorLines", pg_log["all"]) == 4
    assert count_lines("postgres", "AuthFailures", pg_log["all"]) == 3


# -- Neo4j ---------------------------------------------------------------------------------------

# The query.log line of Neo4j's knowledge base ("An explanation of entries in query.log"), tabs kept:
# documented, not captured (Community has no query log).
DOCUMENTED_QUERY_LOG_LINE = (
    "2017-11-23 12:44:56.973+0000 INFO  1550 ms: (planning: 20, cpu: 920, waiting: 10) - 13792 B - 15 page hits, "
    "0 page faults - bolt-session\tbolt\tneo4j\tneo4j-javascript/1.4.1\t\tclient/127.0.0.1:58189\t"
    "server/127.0.0.1:7687>\tneo4j - match (n:Person {name:'Tom Hanks'})-[:ACTED_IN]->(n1:Movie) return n1.title; "
    "- {} - {}"
)


def _new_lines(path: Path, offset: int) -> list[str]:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace").splitlines()


def _level(line: str) -> str | None:
    parts = line.split()
    return parts[2] if len(parts) > 2 and re.match(r"^\d{4}-\d\d-\d\d$", parts[0]) else None


@pytest.fixture(scope="module")
def neo4j_logs(neo4j_server: Any) -> dict[str, Any]:
    """Failed logins and a slow query against the session's Neo4j; the lines they added to its logs."""
    import neo4j

    logs = Path(neo4j_server.data_dir) / "logs"
    user_log, debug_log = logs / "launcher.log", logs / "debug.log"  # launcher.log holds Neo4j's user log
    offsets = {p: p.stat().st_size for p in (user_log, debug_log)}
    for user, password in ((neo4j_server.username, "not-the-password"), ("intruder", "whatever-pw")):
        driver = neo4j.GraphDatabase.driver(neo4j_server.uri, auth=(user, password))
        try:
            with pytest.raises(neo4j.exceptions.AuthError):
                driver.verify_connectivity()
        finally:
            driver.close()
    driver = neo4j.GraphDatabase.driver(neo4j_server.uri, auth=(neo4j_server.username, neo4j_server.password))
    try:
        driver.execute_query("UNWIND range(1, 300000) AS i WITH i WHERE i % 7 = 0 RETURN count(i)")
    finally:
        driver.close()
    time.sleep(0.5)  # the log appenders flush asynchronously
    return {
        "user": _new_lines(user_log, offsets[user_log]),
        "debug": _new_lines(debug_log, offsets[debug_log]),
        "query_log": logs / "query.log",
        "security_log": logs / "security.log",
    }


def test_failed_neo4j_logins_count_as_auth_failures_not_errors(neo4j_logs: dict[str, Any]) -> None:
    for log in ("user", "debug"):
        lines = neo4j_logs[log]
        # two failed logins, each one WARN line in neo4j.log and in debug.log
        assert count_lines("neo4j", "AuthFailures", lines) == 2, lines
        assert count_lines("neo4j", "ErrorLines", lines) == 0
        failures = [line for line in lines if filter_matches(PATTERNS["neo4j"]["AuthFailures"][0], line)]
        assert all(_level(line) == "WARN" for line in failures), failures


def test_community_writes_no_query_or_security_log(neo4j_logs: dict[str, Any]) -> None:
    # Query logging and the security log are Neo4j Enterprise features: the files exist, empty, even
    # after failed logins and a query that ran well over the default 0 threshold. Should this change,
    # this test says so and the patterns can be tried on real lines.
    for name in ("query_log", "security_log"):
        path = neo4j_logs[name]
        assert not path.exists() or path.stat().st_size == 0, f"{path} now has lines: test the patterns on them"


def test_neo4j_slow_query_pattern_matches_the_documented_query_log_line_and_no_real_line(
    neo4j_logs: dict[str, Any]
) -> None:
    assert count_lines("neo4j", "SlowQueries", [DOCUMENTED_QUERY_LOG_LINE]) == 1
    verbose_start = DOCUMENTED_QUERY_LOG_LINE.replace("INFO  1550 ms:", "INFO  Query started: id:12 - 0 ms:")
    assert count_lines("neo4j", "SlowQueries", [verbose_start]) == 0
    assert count_lines("neo4j", "SlowQueries", neo4j_logs["user"] + neo4j_logs["debug"]) == 0


@pytest.fixture(scope="module")
def neo4j_failed_start_log(neo4j_server: Any) -> Iterator[list[str]]:
    """A real Neo4j ERROR: a second server asked for the first one's Bolt port cannot start."""
    from local.neo4j import LocalNeo4j, Neo4jStartError

    with socket.create_connection(("127.0.0.1", neo4j_server.port), timeout=2):
        pass  # the port is taken by the session's server
    home = Path(tempfile.mkdtemp(prefix="warden-log-patterns-neo4j-"))
    server = LocalNeo4j(home, heap="256m", pagecache="16m", port=neo4j_server.port, startup_timeout=90)
    try:
        with pytest.raises(Neo4jStartError):
            server.start()
    finally:
        server.stop()
    lines = (home / "logs" / "launcher.log").read_text().splitlines()
    lines += (home / "logs" / "debug.log").read_text().splitlines() if (home / "logs" / "debug.log").exists() else []
    shutil.rmtree(home, ignore_errors=True)
    yield lines


def test_neo4j_error_lines_count_and_info_warn_lines_do_not(neo4j_failed_start_log: list[str]) -> None:
    lines = neo4j_failed_start_log
    errors = [line for line in lines if _level(line) == "ERROR"]
    others = [line for line in lines if _level(line) in ("INFO", "WARN", "DEBUG")]
    assert errors, "the failed start logged no ERROR line"
    assert any("Error starting Neo4j database server" in line for line in errors)
    assert len(others) > 10  # the start-up lines before the failure
    assert count_lines("neo4j", "ErrorLines", errors) == len(errors)
    assert count_lines("neo4j", "ErrorLines", others) == 0
    assert count_lines("neo4j", "AuthFailures", lines) == 0
