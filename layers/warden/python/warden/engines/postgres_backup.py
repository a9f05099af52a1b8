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
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from warden.engines.base import BackupFailed, ExportResult, RestoreFailed, RestoreRefused, RestoreResult, Writable
from warden.engines.postgres import APPLICATION_NAME, connect
from warden.errors import ConfigError, DatabaseError, WardenError
from warden.models import PostgresSecret
from warden.tls import postgres_root_cert, warn_postgres

log = logging.getLogger(__name__)

MiB = 1024 * 1024
CHUNK = MiB  # spool / pipe size
READ_BUFFER = 4 * MiB  # pg_dump's stdout is read into one preallocated buffer of this size ...
WRITE_BATCH = MiB  # ... and handed to `out` once at least this much has gathered (or at the end)
STDERR_KEEP = 64 * 1024  # bytes of pg_dump / pg_restore stderr kept for the error message
CONNECT_TIMEOUT = 10.0
LOCK_WAIT_TIMEOUT = "120s"  # pg_dump gives up rather than queue forever behind an exclusive lock
CONSISTENCY = "point-in-time: pg_dump runs in one REPEATABLE READ snapshot (shared with the row counts)"
ARCHIVE_MAGIC = b"PGDMP"
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
_COMPRESSION_CODES = {0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}


class PgToolsError(BackupFailed, ConfigError):
    """pg_dump / pg_restore are missing, do not run, or are too old for the server. Configuration:
    retrying does not help."""




# --- tools ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgTool:
    path: Path
    version: str  # "18.6"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def find_tool(name: str, *, bin_dir: Path | None = None, configured_bin_dir: Path | None = None,
              server_major: int | None = None) -> PgTool:
    """The `pg_dump` / `pg_restore` to run: `bin_dir`, else `configured_bin_dir`, else PATH.

    `configured_bin_dir` holds the tools themselves, or one tree per major version
    (`<dir>/<major>/bin/<name>`, how the Lambda layer ships them): then the tools of the server's
    major are chosen, else the oldest newer ones, else the newest (which the caller refuses).
    """
    if bin_dir is not None:
        return _tool_in(Path(bin_dir), name)
    if configured_bin_dir is not None:
        root = Path(configured_bin_dir)
        if (root / name).exists():
            return _tool_in(root, name)
        majors = sorted(int(p.name) for p in root.glob("*") if p.name.isdigit() and (p / "bin" / name).exists())
        if not majors:
            raise PgToolsError(f"{name} not found in {root} (neither {name} nor <major>/bin/{name})")
        newer = [m for m in majors if server_major is not None and m >= server_major]
        return _tool_in(root / str(newer[0] if newer else majors[-1]) / "bin", name)
    found = shutil.which(name)
    if found is None:
        raise PgToolsError(f"{name} is neither in the configured bin dir nor on PATH")
    return _tool(Path(found))


def _tool_in(where: Path, name: str) -> PgTool:
    path = where / name
    if not os.access(path, os.X_OK):
        raise PgToolsError(f"{name} not found (or not executable) in {where}")
    return _tool(path)


@cache
def _tool(path: Path) -> PgTool:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        raise PgToolsError(f"{path} does not run: {err}") from None
    match = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)?)", out.stdout)
    if match is None:
        raise PgToolsError(f"{path} --version said {out.stdout.strip()!r}, not a PostgreSQL tool")
    return PgTool(path=path, version=match.group(1))


@cache
def compression_for(tool: PgTool) -> str:
    """`--compress` value for this pg_dump: zstd when built with it (16+), else gzip level 6."""
    if tool.major < 16:
        return "6"  # before 16 the option is a gzip level only
    probe = subprocess.run(
        [str(tool.path), "--format=custom", "--compress=zstd", "--schema-only", "--no-password",
         "--dbname=host=/nonexistent-warden-probe connect_timeout=1"],
        capture_output=True, text=True, timeout=30, check=False,
        env=_tool_env(None, None),
    )
    # The compression spec is checked before connecting: a build without zstd says so, a build with
    # it goes on to fail the (impossible) connection instead.
    return "gzip:6" if "compression" in probe.stderr.lower() else "zstd"


# --- connection environment -------------------------------------------------------------------


def _tool_env(secret: PostgresSecret | None, passfile: Path | None, dbname: str | None = None) -> dict[str, str]:
    # Inherited PG* variables (PGSERVICE, PGOPTIONS, PGSSLMODE...) must never change what the tool
    # connects to; everything else (PATH, LD_LIBRARY_PATH for the Lambda layer) passes through.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if secret is not None:
        env.update({
            "PGHOST": secret.host,
            "PGPORT": str(secret.port),
            "PGUSER": secret.username,
            "PGDATABASE": dbname or secret.dbname,
            "PGSSLMODE": secret.sslmode,
            "PGAPPNAME": APPLICATION_NAME,
            "PGCONNECT_TIMEOUT": str(int(CONNECT_TIMEOUT)),
        })
        root_cert = postgres_root_cert(secret)  # verify-ca / verify-full: the CA to check the server with
        if root_cert:
            env["PGSSLROOTCERT"] = root_cert
        warn_postgres(secret)
    if passfile is not None:
        env["PGPASSFILE"] = str(passfile)
    return env


@contextlib.contextmanager
def _passfile(secret: PostgresSecret, work_dir: Path | None = None) -> Iterator[Path]:
    """A libpq password file (mode 0600, in a private temp dir) that only lives while the tool runs."""
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    with tempfile.TemporaryDirectory(prefix="warden-pg-", dir=work_dir) as tmp:
        path = Path(tmp) / "pgpass"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"*:*:*:*:{esc(secret.password.get_secret_value())}\n")
        yield path


class _StderrTail:
    """Reads a process's stderr in a thread, keeping only the last STDERR_KEEP bytes."""

    def __init__(self, stream: Any) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True, name="pg-stderr")
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in iter(stream.readline, b""):
            self._chunks.append(line)
            self._size += len(line)
            while self._size > STDERR_KEEP and len(self._chunks) > 1:
                self._size -= len(self._chunks.popleft())

    def text(self, timeout: float = 5.0) -> str:
        self._thread.join(timeout)
        return b"".join(self._chunks).decode(errors="replace").strip()


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no error output)"


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- counts and schema ------------------------------------------------------------------------

_COUNTED_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname NOT LIKE 'pg\\_toast%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY 1, 2
"""


def _count_rows(conn: psycopg.Connection) -> dict[str, int]:
    """Exact row counts of every user table (partitions counted as themselves, partitioned parents
    and materialized views not at all: their rows are their partitions' / recomputed on restore)."""
    tables = conn.execute(_COUNTED_TABLES, {"system": list(_SYSTEM_SCHEMAS)}).fetchall()
    counts: dict[str, int] = {}
    for schema, table in tables:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        ).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def _schema_summary(conn: psycopg.Connection) -> dict[str, Any]:
    system = {"system": list(_SYSTEM_SCHEMAS)}
    user_ns = ("n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%' "
               "AND n.nspname NOT LIKE 'pg\\_toast%%'")
    schemas = [r[0] for r in conn.execute(
        f"SELECT n.nspname FROM pg_namespace n WHERE {user_ns} ORDER BY 1", system)]
    relations = conn.execute(
        f"""SELECT c.relkind::text, n.nspname || '.' || c.relname
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE {user_ns} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'i', 'I')
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                              AND d.objid = c.oid AND d.deptype = 'e')
            ORDER BY 2""", system).fetchall()
    by_kind: dict[str, list[str]] = {}
    for kind, name in relations:
        by_kind.setdefault(kind, []).append(name)
    extensions: dict[str, str] = {
        str(name): str(version)
        for name, version in conn.execute("SELECT extname, extversion FROM pg_extension ORDER BY 1")}
    functions = conn.execute(
        f"""SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE {user_ns} AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                            AND d.objid = p.oid AND d.deptype = 'e')""", system).fetchone()
    version, encoding = conn.execute(
        "SELECT current_setting('server_version'), pg_encoding_to_char(encoding) "
        "FROM pg_database WHERE datname = current_database()").fetchone() or ("", "")
    return {
        "server_version": str(version).split()[0],
        "encoding": encoding,
        "schemas": schemas,
        "tables": by_kind.get("r", []),
        "partitioned_tables": by_kind.get("p", []),
        "views": by_kind.get("v", []),
        "materialized_views": by_kind.get("m", []),
        "foreign_tables": by_kind.get("f", []),
        "sequences": len(by_kind.get("S", [])),
        "indexes": len(by_kind.get("i", [])) + len(by_kind.get("I", [])),
        "functions": int(functions[0]) if functions else 0,
        "extensions": extensions,
    }


def _snapshot_connection(secret: PostgresSecret, dbname: str | None = None) -> psycopg.Connection:
    conn = connect(secret, timeout=CONNECT_TIMEOUT, dbname=dbname)
    try:
        # Counting a big table takes long, and the exporting transaction sits idle while pg_dump
        # imports its snapshot: neither may be cut short by the session defaults.
        conn.execute("SET statement_timeout = 0")
        conn.execute("SET idle_in_transaction_session_timeout = 0")
        conn.autocommit = False
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
    except psycopg.Error as err:
        conn.close()
        raise DatabaseError(f"cannot prepare the snapshot transaction: {_first_line(err)}") from None
    return conn


def count_objects(secret: PostgresSecret) -> dict[str, int]:
    """Exact row count of every user table, as `"schema.table"` → rows, in one snapshot."""
    with _snapshot_connection(secret) as conn:
        try:
            return _count_rows(conn)
        except psycopg.Error as err:
            raise DatabaseError(f"counting rows failed: {_first_line(err)}") from None


_USER_OBJECTS = """
SELECT
  (SELECT count(*) FROM pg_namespace n
    WHERE n.nspname <> ALL(%(system)s) AND n.nspname <> 'public' AND n.nspname NOT LIKE 'pg\\_%%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                      AND d.objid = n.oid AND d.deptype = 'e'))
+ (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_%%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')
                        AND d.refclassid = 'pg_class'::regclass
                        AND EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                                    AND e.objid = t.oid AND e.deptype = 'e')))
+ (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_%%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e'))
+ (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE t.typtype IN ('e', 'd', 'r', 'm') AND n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_%%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                      AND d.objid = t.oid AND d.deptype = 'e'))
"""


def is_empty(secret: PostgresSecret) -> bool:
    """True when the database holds nothing of its own: no schema but `public`, and no table, view,
    sequence, function or type outside what installed extensions brought. A database that does not
    exist yet is empty (a restore creates it)."""
    return _database_state(secret)[0] in ("empty", "missing")


def _database_state(secret: PostgresSecret) -> tuple[str, int, int]:
    """("missing" | "empty" | "not-empty", number of user objects, server major version)."""
    try:
        conn = connect(secret, timeout=CONNECT_TIMEOUT)
    except WardenError:
        with connect(secret, timeout=CONNECT_TIMEOUT, dbname=_maintenance_db(secret)) as maintenance:
            exists = maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s", (secret.dbname,)).fetchone()
            if exists is None:
                return "missing", 0, maintenance.info.server_version // 10000
        raise
    with conn:
        try:
            row = conn.execute(_USER_OBJECTS, {"system": list(_SYSTEM_SCHEMAS)}).fetchone()
        except psycopg.Error as err:
            raise DatabaseError(f"cannot inspect {secret.dbname}: {_first_line(err)}") from None
        major = conn.info.server_version // 10000
    objects = int(row[0]) if row else 0
    return ("empty" if objects == 0 else "not-empty"), objects, major


def _maintenance_db(secret: PostgresSecret) -> str:
    return "template1" if secret.dbname == "postgres" else "postgres"


# --- export -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveHeader:
    version: tuple[int, int, int]
    format: str
    compression: str

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


def parse_header(head: bytes) -> ArchiveHeader:
    """The custom-format archive header: `PGDMP`, version major/minor/rev, int and offset sizes,
    format, and (archive 1.15+) the compression method."""
    if len(head) < 11 or not head.startswith(ARCHIVE_MAGIC):
        raise ValueError("not a pg_dump custom-format archive (no PGDMP header)")
    vmaj, vmin, vrev, _int_size, _off_size, fmt = head[5:11]
    formats = {1: "custom", 3: "tar", 5: "directory"}
    compression = "unknown"
    if (vmaj, vmin) >= (1, 15) and len(head) >= 12:
        compression = _COMPRESSION_CODES.get(head[11], "unknown")
    return ArchiveHeader(version=(vmaj, vmin, vrev), format=formats.get(fmt, str(fmt)), compression=compression)


def export_backup(
    secret: PostgresSecret,
    out: Writable,
    *,
    bin_dir: Path | None = None,
    configured_bin_dir: Path | None = None,
    compression: str | None = None,
    row_counts: Literal["during", "after"] | None = "during",
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
            snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
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
            written, head = _run_pg_dump(tool, secret, snapshot, compress, out)
        except BaseException:
            counter.cancel()
            raise
        if row_counts == "after":
            counter.start()
        counts = counter.result() if row_counts else {}
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

    def cancel(self) -> None:
        if self._thread.ident is None:
            return  # never started ("after": pg_dump failed first)
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.conn.cancel_safe(timeout=5)
        self._thread.join(30)

    def result(self) -> dict[str, int]:
        self._thread.join()
        if self.error is not None:
            err = self.error
            msg = _first_line(err) if isinstance(err, psycopg.Error) else str(err)
            raise BackupFailed(f"counting rows in the backup snapshot failed: {msg}") from err
        return self.counts or {}


def _run_pg_dump(tool: PgTool, secret: PostgresSecret, snapshot: str, compress: str,
                 out: Writable) -> tuple[int, bytes]:
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
            while True:
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


def _grow_pipe(fd: int) -> None:
    # Fewer, larger reads: a 1 MiB pipe instead of 64 KiB (Linux; harmless where refused).
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)


# --- restore ----------------------------------------------------------------------------------


def restore_backup(
    secret: PostgresSecret,
    chunks: Iterable[bytes],
    manifest: dict[str, Any],
    *,
    replace: bool = False,
    jobs: int | None = None,
    no_owner: bool = False,
    bin_dir: Path | None = None,
    configured_bin_dir: Path | None = None,
    work_dir: Path | None = None,
) -> RestoreResult:
    """Restore a custom-format dump (streamed `chunks`) into the secret's database.

    Refuses (`RestoreRefused`, nothing touched) a database that is not empty unless `replace`
    (then it is dropped `WITH (FORCE)` and created again with its owner, encoding and locale), an
    archive this pg_restore cannot read, and an archive whose owners are missing on the server
    (unless `no_owner`). The stream is spooled to a temp file under `work_dir` (Lambda: /tmp, up
    to 10 GB) so that `pg_restore -j` can seek; then every table's row count is compared with the
    manifest's (`RestoreFailed` when they differ).
    """
    state, objects, server_major = _database_state(secret)
    if state == "not-empty" and not replace:
        raise RestoreRefused(
            f"database {secret.dbname} on {secret.host}:{secret.port} is not empty ({objects} objects of its "
            f"own); restore into an empty database, or replace it")
    tool = find_tool("pg_restore", bin_dir=bin_dir, configured_bin_dir=configured_bin_dir,
                     server_major=server_major)
    if tool.major > server_major:
        # Not supported by PostgreSQL, and it really breaks: pg_restore 17+ sets transaction_timeout,
        # which an older server rejects half-way through. Refuse before anything is touched.
        raise RestoreRefused(
            f"pg_restore {tool.version} ({tool.path}) is newer than the PostgreSQL {server_major} server; "
            f"restore with the tools of major version {server_major}")
    jobs = max(1, jobs or min(8, os.cpu_count() or 1))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="warden-restore-", dir=work_dir) as tmp:
        archive = Path(tmp) / "backup.dump"
        size, head = _spool(chunks, archive)
        try:
            header = parse_header(head)
        except ValueError as err:
            raise RestoreRefused(f"backup is not restorable: {err}") from None
        toc = _check_archive(tool, archive)
        if not no_owner:
            missing = _missing_roles(secret, toc.owners)
            if missing:
                raise RestoreRefused(
                    f"roles that own objects in the backup do not exist on {secret.host}: {', '.join(missing)}; "
                    "create them first or restore with no_owner")
        if state == "not-empty":
            _recreate_database(secret)
        elif state == "missing":
            _create_database(secret)
        _run_pg_restore(tool, secret, archive, jobs=jobs, no_owner=no_owner, work_dir=work_dir)
    restored_s = round(time.monotonic() - started, 3)
    counts = count_objects(secret)
    expected = {str(k): int(v) for k, v in (manifest.get("counts") or {}).items()}
    if counts != expected:
        raise RestoreFailed(f"restored row counts differ from the manifest: {_count_diff(expected, counts)}")
    log.info("pg_restore finished", extra={"database": secret.dbname, "bytes": size, "jobs": jobs,
                                           "seconds": restored_s})
    return RestoreResult(
        counts=counts,
        duration_s=round(time.monotonic() - started, 3),
        details={"jobs": jobs, "bytes": size, "archive_version": header.version_text,
                 "pg_restore_version": tool.version, "replaced": state == "not-empty",
                 "restore_seconds": restored_s, "toc_entries": toc.entries},
    )


def _spool(chunks: Iterable[bytes], path: Path) -> tuple[int, bytes]:
    size, head = 0, b""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb", buffering=CHUNK) as fh:
        for chunk in chunks:
            if len(head) < 16:
                head += bytes(chunk[: 16 - len(head)])
            fh.write(chunk)
            size += len(chunk)
    return size, head


@dataclass(frozen=True)
class _Toc:
    entries: int
    owners: frozenset[str]


_TOC_LINE = re.compile(r"^\d+; \d+ \d+ .* (\S+)$")


def _check_archive(tool: PgTool, archive: Path) -> _Toc:
    """`pg_restore --list`: the archive is readable by this pg_restore (version, header, TOC)."""
    result = subprocess.run([str(tool.path), "--list", str(archive)], capture_output=True, timeout=600,
                            check=False, env=_tool_env(None, None))
    if result.returncode != 0:
        raise RestoreRefused(
            f"pg_restore {tool.version} cannot read this backup: {_tail(result.stderr.decode(errors='replace'))}")
    owners: set[str] = set()
    entries = 0
    for line in result.stdout.decode(errors="replace").splitlines():
        if line.startswith(";") or not line.strip():
            continue
        entries += 1
        match = _TOC_LINE.match(line)
        if match and match.group(1) != "-":
            owners.add(match.group(1))
    return _Toc(entries=entries, owners=frozenset(owners))


def _missing_roles(secret: PostgresSecret, owners: frozenset[str]) -> list[str]:
    if not owners:
        return []
    with connect(secret, timeout=CONNECT_TIMEOUT, dbname=_maintenance_db(secret)) as conn:
        present = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                              (sorted(owners),))}
    return sorted(owners - present)


def _create_database(secret: PostgresSecret) -> None:
    with connect(secret, timeout=60, dbname=_maintenance_db(secret)) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(secret.dbname)))
        except psycopg.Error as err:
            raise RestoreFailed(f"cannot create database {secret.dbname}: {_first_line(err)}") from None


def _recreate_database(secret: PostgresSecret) -> None:
    """DROP ... WITH (FORCE) and CREATE again, keeping the owner, encoding and locale."""
    with connect(secret, timeout=120, dbname=_maintenance_db(secret)) as conn:
        try:
            row = conn.execute(
                """SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype,
                          datlocprovider::text
                   FROM pg_database WHERE datname = %s""", (secret.dbname,)).fetchone()
            if row is None:
                raise RestoreFailed(f"database {secret.dbname} disappeared before it could be replaced")
            owner, encoding, collate, ctype, provider = row
            options = [
                sql.SQL("OWNER {}").format(sql.Identifier(owner)),
                sql.SQL("ENCODING {}").format(sql.Literal(encoding)),
                sql.SQL("LC_COLLATE {}").format(sql.Literal(collate)),
                sql.SQL("LC_CTYPE {}").format(sql.Literal(ctype)),
            ]
            if provider != "c":
                locale = _provider_locale(conn, secret.dbname)
                name = {"i": "icu", "b": "builtin"}.get(provider, "libc")
                options.append(sql.SQL("LOCALE_PROVIDER {}").format(sql.SQL(name)))
                if locale:
                    key = "ICU_LOCALE" if provider == "i" else "BUILTIN_LOCALE"
                    options.append(sql.SQL(key + " {}").format(sql.Literal(locale)))
            name_sql = sql.Identifier(secret.dbname)
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(name_sql))
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 {}").format(
                name_sql, sql.SQL(" ").join(options)))
        except psycopg.Error as err:
            raise RestoreFailed(f"cannot replace database {secret.dbname}: {_first_line(err)}") from None
    log.info("database replaced", extra={"database": secret.dbname})


def _provider_locale(conn: psycopg.Connection, dbname: str) -> str | None:
    column = "datlocale" if conn.info.server_version >= 170000 else "daticulocale"
    row = conn.execute(sql.SQL("SELECT {} FROM pg_database WHERE datname = %s").format(sql.Identifier(column)),
                       (dbname,)).fetchone()
    return str(row[0]) if row and row[0] else None


def _run_pg_restore(tool: PgTool, secret: PostgresSecret, archive: Path, *, jobs: int, no_owner: bool,
                    work_dir: Path | None) -> None:
    # --dbname takes a conninfo string: quoted, so any database name is just a name.
    quoted = secret.dbname.replace("\\", "\\\\").replace("'", "\\'")
    args = [str(tool.path), "--exit-on-error", f"--jobs={jobs}", "--no-password", f"--dbname=dbname='{quoted}'"]
    if no_owner:
        args.append("--no-owner")
    args.append(str(archive))
    with _passfile(secret, work_dir) as passfile:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=_tool_env(secret, passfile))
        assert proc.stderr is not None
        stderr = _StderrTail(proc.stderr)
        try:
            rc = proc.wait()
        finally:
            _stop(proc)
            err_text = stderr.text()
            proc.stderr.close()
    if rc != 0:
        raise RestoreFailed(f"pg_restore into {secret.dbname} failed (exit {rc}): {_tail(err_text)}")


def _count_diff(expected: dict[str, int], actual: dict[str, int], limit: int = 10) -> str:
    diffs = []
    for key in sorted(set(expected) | set(actual)):
        if expected.get(key) != actual.get(key):
            want = expected.get(key, "absent")
            got = actual.get(key, "absent")
            diffs.append(f"{key}: expected {want}, restored {got}")
    more = f" (+{len(diffs) - limit} more)" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
