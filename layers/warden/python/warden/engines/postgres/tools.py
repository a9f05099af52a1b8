"""PostgreSQL client tools (pg_dump, pg_restore): finding them, their capabilities, and running them
safely — the connection environment, a 0600 passfile (never the command line, never a log), a
bounded stderr tail, a clean stop.

Tools: `bin_dir` (this call) → `configured_bin_dir` (the function's setting, e.g. WARDEN_PG_BIN_DIR,
read by the handler) → `pg_dump` / `pg_restore` on PATH. See docs/postgres-tools.md for how
TLS-capable tools reach Lambda.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from warden.config.credentials import PostgresSecret
from warden.engines.base import BackupFailed
from warden.engines.postgres.connection import APPLICATION_NAME, CONNECT_TIMEOUT
from warden.errors import ConfigError
from warden.tls import postgres_root_cert, warn_postgres

MiB = 1024 * 1024


STDERR_KEEP = 64 * 1024  # bytes of pg_dump / pg_restore stderr kept for the error message


class PgToolsError(BackupFailed, ConfigError):
    """pg_dump / pg_restore are missing, do not run, or are too old for the server. Configuration:
    retrying does not help."""


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


CHUNK = MiB  # spool / pipe size
