"""Whether a restore is getting anywhere, for the recovery task's heartbeat (docs/fargate.md,
"Recovery on Fargate"): `python -m warden.task recovery --step restore` sends SendTaskHeartbeat
only when a reading of the restore's progress changed since the one before, so a restore that
waits (pg_restore behind another session's lock, a Neo4j server that stopped committing) goes
quiet and the state's HeartbeatSeconds stops it.

A reading is a tuple; any change between two readings is progress. It holds:
- the step's own thread: the bytes it read and wrote (Linux's per-thread I/O accounting, rchar +
  wchar): the backup's download, its SHA-256 check before the restore, the spooled archive;
- PostgreSQL, read from the probe's own connection to the server's maintenance database (the
  restore drops and creates the target database, which ends every session in it) about the
  target database: COPY's tuples and bytes, CREATE INDEX's blocks, tuples and phase, when the
  restore's sessions (application_name warden) last began or ended a statement, and how many
  readings found one of them at work (active, on the CPU or in I/O; not waiting for a lock, its
  client or another process). Measured on PostgreSQL 15 and 18 (pg_restore -j1 of a 47 MB dump,
  read every 0.2 s): COPY's counters advance all through a COPY; CREATE INDEX's stand still for
  1.5 to 3.5 s at a time here (a parallel scan, the sort), and a foreign key's validation has no
  counter at all (1.4 to 2 s here, minutes on big tables): in both, the sessions are at work;
  pg_stat_database's xact_commit and tup_inserted move only when a statement ends (flushed
  within a second), and in an idle database every minute (autovacuum's visit: xact_commit + 2 to
  5), which would keep a stalled restore heartbeating, so they are not read;
- Neo4j, from a driver of the probe's own: the rows the server committed for this process's
  restores (`warden.engines.neo4j.restore.COMMITTED_ROWS`), the database's node and relationship
  counts (the count store: the wipe before a restore and the load move them), and the indexes not
  ONLINE with their populationPercent (the schema phase).

`ProgressWatch` reads a probe on a thread of its own: a read that hangs (a server that stopped
answering) holds up nothing, and counts as no progress.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from warden.config.credentials import DatabaseSecret, Neo4jSecret, PostgresSecret
    from warden.config.target import Engine

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0  # connect and statement timeout of a probe's reads


class Probe(Protocol):
    def read(self) -> Hashable: ...
    def close(self) -> None: ...


def thread_io(native_id: int | None) -> int | None:
    """Bytes the thread read and wrote so far (files, sockets, pipes); None where Linux does not say."""
    try:
        with open(f"/proc/self/task/{native_id}/io") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        return int(fields["rchar"]) + int(fields["wchar"])
    except (OSError, KeyError, ValueError):
        return None


# The restore's sessions at work: running (no wait event) or in I/O, or on a short-term internal lock.
# Not: Lock (another session's lock), Client (waiting for pg_restore), IPC (a leader waiting for its
# parallel workers, which count themselves), Timeout, Extension, BufferPin.
_WORKING = "state = 'active' AND (wait_event_type IS NULL OR wait_event_type IN ('IO', 'LWLock'))"


class PostgresProgress:
    """The restore's progress on the target PostgreSQL database (see the module's docstring)."""

    def __init__(self, secret: PostgresSecret) -> None:
        self.secret = secret
        self._conn: Any = None
        self._query = ""
        self.working_reads = 0  # readings that found a restore session at work

    def read(self) -> Hashable:
        import psycopg

        try:
            conn = self._connection()
            row = conn.execute(self._query, {"db": self.secret.dbname}).fetchone()
        except psycopg.Error:
            self.close()  # connect again on the next read
            raise
        assert row is not None
        *counters, working = row
        if working:
            self.working_reads += 1
        return (*counters, self.working_reads)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> Any:
        if self._conn is None:
            from warden.engines.postgres import connect
            from warden.engines.postgres.inventory import _maintenance_db

            conn = connect(self.secret, timeout=PROBE_TIMEOUT_S, dbname=_maintenance_db(self.secret))
            self._query = _postgres_query(conn.info.server_version)
            self._conn = conn
        return self._conn


def _postgres_query(server_version: int) -> str:
    """pg_stat_progress_copy is PostgreSQL 14's, pg_stat_progress_create_index 12's."""
    copy = ("(SELECT ARRAY[coalesce(sum(tuples_processed), 0), coalesce(sum(bytes_processed), 0)]::bigint[] "
            "FROM pg_stat_progress_copy WHERE datname = %(db)s)") if server_version >= 140000 else "NULL::bigint[]"
    index = ("(SELECT ARRAY[coalesce(sum(blocks_done), 0), coalesce(sum(tuples_done), 0)]::bigint[] "
             "FROM pg_stat_progress_create_index WHERE datname = %(db)s), "
             "(SELECT string_agg(pid || ' ' || phase, ',' ORDER BY pid) FROM pg_stat_progress_create_index "
             "WHERE datname = %(db)s)") if server_version >= 120000 else "NULL::bigint[], NULL::text"
    return (f"SELECT {copy}, {index}, "
            "(SELECT max(greatest(query_start, state_change))::text FROM pg_stat_activity "
            " WHERE datname = %(db)s AND application_name = 'warden' AND pid <> pg_backend_pid()), "
            f"(SELECT count(*) FROM pg_stat_activity WHERE datname = %(db)s AND application_name = 'warden' "
            f" AND pid <> pg_backend_pid() AND {_WORKING})")


class Neo4jProgress:
    """The restore's progress on the target Neo4j database (see the module's docstring)."""

    def __init__(self, secret: Neo4jSecret) -> None:
        self.secret = secret

    def read(self) -> Hashable:
        import neo4j

        from warden.engines.neo4j.connection import driver
        from warden.engines.neo4j.restore import COMMITTED_ROWS

        committed = COMMITTED_ROWS.value
        # A timeout of its own is a driver (a connection pool) of its own: never one of the restore's sessions.
        with driver(self.secret, timeout=PROBE_TIMEOUT_S).session(
                database=self.secret.database, default_access_mode=neo4j.READ_ACCESS,
                notifications_min_severity="OFF") as session:
            def single(query: str) -> int:
                return int(session.run(neo4j.Query(query, timeout=PROBE_TIMEOUT_S)).single(strict=True)[0])

            nodes = single("MATCH (n) RETURN count(n)")
            relationships = single("MATCH ()-[r]->() RETURN count(r)")
            indexes = tuple(sorted(
                (str(r["name"]), str(r["state"]), float(r["populationPercent"] or 0)) for r in session.run(
                    neo4j.Query("SHOW INDEXES YIELD name, state, populationPercent WHERE state <> 'ONLINE' "
                                "RETURN name, state, populationPercent", timeout=PROBE_TIMEOUT_S))))
        return committed, nodes, relationships, indexes

    def close(self) -> None:
        pass  # the driver is the process's cache's (warden.engines.neo4j.close_drivers)


def database_probe(engine: Engine, secret: DatabaseSecret) -> Probe:
    """The progress probe of a restore into `secret`'s database."""
    from warden.config.credentials import Neo4jSecret, PostgresSecret
    from warden.config.target import Engine

    if engine is Engine.POSTGRES and isinstance(secret, PostgresSecret):
        return PostgresProgress(secret)
    if engine is Engine.NEO4J and isinstance(secret, Neo4jSecret):
        return Neo4jProgress(secret)
    raise ValueError(f"no progress probe for a {engine} restore into a {secret.engine} database")


class StepProgress:
    """A restore step's progress: its thread's I/O and its target database's probe, built on the
    first read from `target()` (engine, secret): loading the secret is a read like the others."""

    def __init__(self, worker: threading.Thread, target: Callable[[], tuple[Engine, DatabaseSecret]]) -> None:
        self._worker_id = worker.native_id
        self._target = target
        self._probe: Probe | None = None

    def read(self) -> Hashable:
        io = thread_io(self._worker_id)
        if self._probe is None:
            if io is None:  # then a long download or SHA-256 check before the restore shows no progress
                log.warning("no per-thread I/O accounting (/proc/self/task/<tid>/io): the backup's download "
                            "is not counted as progress")
            self._probe = database_probe(*self._target())
        return io, self._probe.read()

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()


class ProgressWatch:
    """Reads `probe` on a daemon thread of its own, one read at a time, starting the first now.

    `advanced()` takes the reading started at the previous call and starts the next one: True when
    it differs from the last good reading (the first good reading is progress too). A read still
    running (a server that does not answer) or one that failed is no progress; a failure is logged
    once per watch, by type and first line (no secret is in a driver's error text)."""

    def __init__(self, probe: Probe, *, name: str = "restore-progress") -> None:
        self.probe = probe
        self.failures = 0
        self._name = name
        self._last: Hashable = _NOTHING
        self._done = threading.Event()
        self._result: tuple[bool, Any] = (False, None)
        self._closing = False
        self._start()

    def advanced(self) -> bool:
        if not self._done.is_set():
            return False
        ok, value = self._result
        if not self._closing:
            self._start()
        if not ok:
            self.failures += 1
            if self.failures == 1:
                log.warning("progress probe failed: no progress counted", extra={
                    "probe": type(self.probe).__name__, "error": f"{type(value).__name__}: {_first_line(value)}"})
            return False
        changed, self._last = value != self._last, value
        return bool(changed)

    def close(self) -> None:
        """Close the probe once its read in flight is done, on the watch's thread (never wait for it)."""
        self._closing = True

        def close_after_read() -> None:
            self._done.wait()
            try:
                self.probe.close()
            except Exception as err:  # only its connection is lost
                log.debug("progress probe not closed", extra={"error": type(err).__name__})

        threading.Thread(target=close_after_read, name=f"{self._name}-close", daemon=True).start()

    def _start(self) -> None:
        self._done.clear()

        def read() -> None:
            try:
                self._result = (True, self.probe.read())
            except Exception as err:
                self._result = (False, err)
            self._done.set()

        threading.Thread(target=read, name=self._name, daemon=True).start()


_NOTHING: Hashable = object()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else ""
