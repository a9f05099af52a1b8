"""PostgreSQL backup and restore with pg_dump / pg_restore (custom format), streamed.

Backup: a REPEATABLE READ transaction exports its snapshot (`pg_export_snapshot()`); pg_dump runs
with `--snapshot=<id>`, so the dump and the row counts taken in that transaction see exactly the
same data (the counts run while pg_dump streams, on one server backend). pg_dump's stdout is read
into one reused 4 MiB buffer and handed to the caller's `Writable` in batches of at least 1 MiB:
no temp file, memory flat. pg_dump's own compression is the compression (zstd when the tool has
it, else gzip level 6): a custom-format archive is compressed per table, recompressing it gains
nothing.

Restore: the stream is spooled to a temp file (parallel `pg_restore -j` needs a seekable archive;
Lambda's /tmp holds up to 10 GB), checked with `pg_restore --list` before anything is touched, then
restored with `--exit-on-error` into an empty database and validated against the manifest's counts.

Tools: `bin_dir` (this call) → `configured_bin_dir` (the function's setting, e.g. WARDEN_PG_BIN_DIR,
read by the handler) → `pg_dump` / `pg_restore` on PATH. See docs/postgres-tools.md for how TLS-
capable tools reach Lambda. The password reaches the tools through a 0600 passfile in a private
temp dir (PGPASSFILE), never the command line, never a log.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import subprocess
import threading
import time
from pathlib import Path
from typing import Literal

import psycopg

from warden.config.credentials import PostgresSecret
from warden.engines.base import BackupFailed, ExportResult, ServerStalled, Writable
from warden.engines.postgres.archive import ARCHIVE_MAGIC, parse_header
from warden.engines.postgres.connection import _first_line
from warden.engines.postgres.inventory import _count_rows, _schema_summary, _snapshot_connection
from warden.engines.postgres.tools import (
    CHUNK,
    MiB,
    PgTool,
    PgToolsError,
    _passfile,
    _StderrTail,
    _stop,
    _tail,
    _tool_env,
    compression_for,
    find_tool,
)

log = logging.getLogger(__name__)

READ_BUFFER = 4 * MiB  # pg_dump's stdout is read into one preallocated buffer of this size ...
WRITE_BATCH = MiB  # ... and handed to `out` once at least this much has gathered (or at the end)
LOCK_WAIT_TIMEOUT = "120s"  # pg_dump gives up rather than queue forever behind an exclusive lock
CONSISTENCY = "point-in-time: pg_dump runs in one REPEATABLE READ snapshot (shared with the row counts)"






# --- tools ------------------------------------------------------------------------------------












# --- connection environment -------------------------------------------------------------------












# --- counts and schema ------------------------------------------------------------------------



















# --- export -----------------------------------------------------------------------------------






def export_backup(
    secret: PostgresSecret,
    out: Writable,
    *,
    bin_dir: Path | None = None,
    configured_bin_dir: Path | None = None,
    compression: str | None = None,
    row_counts: Literal["during", "after"] | None = "during",
    deadline: float | None = None,
) -> ExportResult:
    """Stream `pg_dump --format=custom` of the secret's database into `out`.

    The dump runs in a snapshot exported by a REPEATABLE READ transaction; the exact row counts of
    every table are taken in that same transaction, so they describe exactly what the dump holds.
    `row_counts`: "during" (default) counts on the server while pg_dump streams, one backend, no
    parallel workers (it only has to finish before the dump does); "after" counts once pg_dump has
    finished (the dump never shares the server's CPU with the counts, at the price of their own
    wall time); None skips them (benchmarks only: such a manifest cannot validate a restore).
    See docs/postgres-tools.md for what they cost.

    `out.write` gets a memoryview over a buffer that is reused afterwards (as `io` writers do):
    a writer keeps a copy, never the view. Raises `BackupFailed` (pg_dump's stderr tail as the
    reason) when pg_dump fails or the server goes away part-way; `PgToolsError` when pg_dump is
    missing or older than the server. An exception raised by `out` stops pg_dump and propagates
    unchanged.

    `deadline` (`time.monotonic()`): waiting for a server that sends nothing (stopped, hung, a
    network dropping packets) ends then: pg_dump is killed and `ServerStalled` raised, so the caller
    still has its margin to abort the upload and record why. Data that keeps arriving is the
    caller's to stop (its writer checks the same deadline).
    """
    if row_counts not in ("during", "after", None):
        raise ValueError(f"row_counts must be 'during', 'after' or None, not {row_counts!r}")
    started = time.monotonic()
    conn = _snapshot_connection(secret)
    try:
        server_major = conn.info.server_version // 10000
        tool = find_tool("pg_dump", bin_dir=bin_dir, configured_bin_dir=configured_bin_dir,
                         server_major=server_major)
        compress = compression or compression_for(tool)
        try:
            snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])
            schema = _schema_summary(conn)
        except psycopg.Error as err:
            raise BackupFailed(f"cannot open the backup snapshot: {_first_line(err)}") from None
        if tool.major < server_major:
            raise PgToolsError(
                f"pg_dump {tool.version} ({tool.path}) cannot dump PostgreSQL {schema['server_version']}: "
                f"pg_dump must be at least the server's major version ({server_major})")

        counter = _Counter(conn)
        if row_counts == "during":
            counter.start()
        try:
            written, head = _run_pg_dump(tool, secret, snapshot, compress, out, deadline)
        except BaseException as err:
            counter.cancel(server_answers=not isinstance(err, ServerStalled))
            raise
        if row_counts == "after":
            counter.start()
        counts = counter.result(deadline) if row_counts else {}
        conn.rollback()
    finally:
        conn.close()

    header = parse_header(head)
    log.info("pg_dump finished", extra={"database": secret.dbname, "bytes": written, "tables": len(counts),
                                        "seconds": round(time.monotonic() - started, 2)})
    return ExportResult(
        method="pg_dump",
        format_version=f"pg_dump-{header.format}/{header.version[0]}.{header.version[1]}",
        server_version=schema["server_version"],
        extension="dump",
        counts=counts,
        schema=schema,
        consistency=CONSISTENCY,
        details={
            "pg_dump_version": tool.version,
            "archive_version": header.version_text,
            "compression": header.compression if header.compression != "unknown" else compress,
            "compress_option": compress,
            "bytes": written,
            "count_seconds": counter.seconds,
            "row_counts": row_counts or "skipped",
            "duration_s": round(time.monotonic() - started, 3),
        },
    )


class _Counter:
    """Counts rows on the snapshot connection in a thread (while pg_dump streams, or after it)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.counts: dict[str, int] | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True, name="pg-count")

    def _run(self) -> None:
        started = time.monotonic()
        try:
            # One backend: parallel workers would take CPU from pg_dump's COPY on the same server
            # and gain nothing, the counts finish long before the dump (tests/perf).
            self.conn.execute("SET max_parallel_workers_per_gather = 0")
            self.counts = _count_rows(self.conn)
        except BaseException as err:
            self.error = err
        self.seconds = round(time.monotonic() - started, 3)

    def start(self) -> None:
        self._thread.start()

    def cancel(self, *, server_answers: bool = True) -> None:
        if self._thread.ident is None:
            return  # never started ("after": pg_dump failed first)
        if not server_answers:
            return  # a stalled server answers no cancel either: closing the connection ends the count
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.conn.cancel_safe(timeout=5)
        self._thread.join(30)

    def result(self, deadline: float | None = None) -> dict[str, int]:
        self._thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
        if self._thread.is_alive():
            raise ServerStalled("the server stalled while counting rows in the backup snapshot: the backup's "
                                "deadline passed while waiting for it")
        if self.error is not None:
            err = self.error
            msg = _first_line(err) if isinstance(err, psycopg.Error) else str(err)
            raise BackupFailed(f"counting rows in the backup snapshot failed: {msg}") from err
        return self.counts or {}


def _run_pg_dump(tool: PgTool, secret: PostgresSecret, snapshot: str, compress: str,
                 out: Writable, deadline: float | None = None) -> tuple[int, bytes]:
    args = [
        str(tool.path), "--format=custom", f"--compress={compress}", f"--snapshot={snapshot}",
        f"--lock-wait-timeout={LOCK_WAIT_TIMEOUT}", "--no-password",
    ]
    written, head = 0, b""
    with _passfile(secret) as passfile:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=_tool_env(secret, passfile))
        assert proc.stdout is not None and proc.stderr is not None
        stderr = _StderrTail(proc.stderr)
        _grow_pipe(proc.stdout.fileno())
        try:
            # Straight from the pipe into one buffer (no bytes object per read), handed on in
            # batches of WRITE_BATCH, so the writer's per-call work is paid once per MiB.
            fd, buffer = proc.stdout.fileno(), memoryview(bytearray(READ_BUFFER))
            fill = 0
            waiting = _PipeWait(fd, deadline)
            while True:
                if not waiting.readable():
                    proc.kill()  # not SIGTERM: pg_dump would first send a cancel to the stalled server, and wait
                    raise ServerStalled(
                        f"the server stalled: no data from the server for {waiting.idle_s:.0f} s and the backup's "
                        f"deadline passed while waiting for it ({(written + fill) / MiB:.1f} MiB written); "
                        f"pg_dump of {secret.dbname} was stopped")
                got = os.readv(fd, [buffer[fill:]])
                fill += got
                if fill >= WRITE_BATCH or (fill and not got):
                    if not written:
                        head = bytes(buffer[:min(fill, 16)])
                    out.write(buffer[:fill])
                    written += fill
                    fill = 0
                if not got:
                    break
            rc = proc.wait()
        finally:
            _stop(proc)  # a failing `out` leaves pg_dump running: end it
            proc.stdout.close()
            err_text = stderr.text()
            proc.stderr.close()
    if rc != 0:
        raise BackupFailed(f"pg_dump of {secret.dbname} failed (exit {rc}): {_tail(err_text)}")
    if not head.startswith(ARCHIVE_MAGIC):
        raise BackupFailed(f"pg_dump of {secret.dbname} produced no archive header ({written} bytes)")
    return written, head


class _PipeWait:
    """Waits for pg_dump's stdout until `deadline` (None: reads block, as without a deadline)."""

    def __init__(self, fd: int, deadline: float | None) -> None:
        self.deadline = deadline
        self.last_data = time.monotonic()
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    @property
    def idle_s(self) -> float:
        return time.monotonic() - self.last_data

    def readable(self) -> bool:
        """Data (or EOF) is there to read; False when the deadline passed first."""
        if self.deadline is None:
            return True
        ready = self._poll.poll(max(self.deadline - time.monotonic(), 0.0) * 1000)
        if ready:
            self.last_data = time.monotonic()
        return bool(ready)


def _grow_pipe(fd: int) -> None:
    # Fewer, larger reads: a 1 MiB pipe instead of 64 KiB (Linux; harmless where refused).
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)


# --- restore ----------------------------------------------------------------------------------
























