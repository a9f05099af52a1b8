"""A real Neo4j 5.26 Community for the local runtime and the tests: embedded, from Maven Central, no Docker.

`local/neo4j_launcher` is a tiny Maven project (one Java class) that runs Neo4j through
`DatabaseManagementServiceBuilder`: Bolt only, on 127.0.0.1, authentication on, everything under a
directory the caller chooses. This module builds it when needed (`ensure_built`: Maven, then one
training run that leaves a class-data-sharing archive for faster start-up) and starts / stops it
(`LocalNeo4j`).

Protocol with the launcher (see `Neo4jLauncher.java`):
- the password of the `neo4j` user goes through the environment (`WARDEN_NEO4J_PASSWORD`), never the
  command line; the launcher sets it on every start, replacing Neo4j's expired initial password;
- the launcher binds a free port (port 0 unless one is asked for) and prints one line
  `WARDEN-NEO4J-READY bolt://127.0.0.1:PORT version=5.26.x edition=community` once Bolt accepts
  connections; everything else it prints is its log, kept in `<data_dir>/logs/launcher.log`;
- SIGTERM shuts Neo4j down cleanly; the launcher also exits when its stdin closes or this process is gone,
  so a Python process that dies abruptly never leaks a JVM.

Command line (the Makefile runs `build`):
    python -m local.neo4j build
    python -m local.neo4j run --data-dir DIR [--port N] [--heap 1g]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

LAUNCHER_DIR = Path(__file__).resolve().parent / "neo4j_launcher"
POM = LAUNCHER_DIR / "pom.xml"
SOURCES = LAUNCHER_DIR / "src"
TARGET_DIR = LAUNCHER_DIR / "target"
LAUNCHER_JAR = TARGET_DIR / "neo4j-launcher.jar"
LIB_DIR = TARGET_DIR / "lib"
BUILD_STAMP = TARGET_DIR / ".built"  # written after a successful build; the Makefile knows this name
# Class-data sharing archive of the launcher's ~15k classes, made once after each build: start-up
# loads them from it instead of 200 jars (about 2.5 s faster). Optional: without it Neo4j starts anyway.
CLASS_ARCHIVE = TARGET_DIR / "neo4j-launcher.jsa"
MAIN_CLASS = "warden.local.Neo4jLauncher"

READY_MARKER = "WARDEN-NEO4J-READY"
PASSWORD_ENV = "WARDEN_NEO4J_PASSWORD"  # noqa: S105 - the variable's name, not a password
DEFAULT_PASSWORD = "warden-local-neo4j"  # noqa: S105 - local runtime only, loopback only
USERNAME = "neo4j"
HOST = "127.0.0.1"
MIN_PASSWORD_LENGTH = 8  # Neo4j's dbms.security.auth_minimum_password_length default

MAVEN_TIMEOUT = 1800.0
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # Maven 3.8 colours its output even with -B
OUTPUT_TAIL_LINES = 60

# What Neo4j's own server scripts pass to the JVM (the ones that matter for an embedded DBMS), plus
# C1-only JIT: a cold Cypher warm-up dominates start-up on two cores and C1 cuts start-up by ~30 %;
# override with extra_jvm_args=["-XX:TieredStopAtLevel=4"] for long, CPU-heavy runs.
JVM_OPTIONS: tuple[str, ...] = (
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:TieredStopAtLevel=1",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dlog4j2.disable.jmx=true",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
)


class Neo4jBuildError(RuntimeError):
    """Maven could not build the launcher (the message ends with Maven's output)."""


class Neo4jStartError(RuntimeError):
    """Neo4j did not become ready (the message ends with the launcher's output)."""


@dataclass(frozen=True)
class Neo4jEndpoint:
    """How to reach a running local Neo4j."""

    uri: str  # bolt://127.0.0.1:PORT
    username: str
    password: str
    version: str  # e.g. 5.26.30
    edition: str  # community
    data_dir: Path
    pid: int

    @property
    def port(self) -> int:
        return int(self.uri.rsplit(":", 1)[1])


# --------------------------------------------------------------------------------------------- build


def _newest_source_mtime() -> float:
    newest = POM.stat().st_mtime
    for path in SOURCES.rglob("*"):
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
    return newest


def _is_built() -> bool:
    """True when the jars are there and newer than the pom and every source file."""
    try:
        stamp = BUILD_STAMP.stat().st_mtime
    except FileNotFoundError:
        return False
    if not LAUNCHER_JAR.is_file() or not any(LIB_DIR.glob("neo4j-*.jar")):
        return False
    return stamp >= _newest_source_mtime()


def classpath() -> str:
    """The launcher's Java classpath (after `ensure_built`)."""
    return f"{LAUNCHER_JAR}{os.pathsep}{LIB_DIR / '*'}"


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time across processes (pytest workers, a `make` running beside a test)."""
    TARGET_DIR.mkdir(parents=True, exist_ok=True)
    with open(TARGET_DIR / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_built() -> Path:
    """Build the launcher with Maven if needed; returns the directory holding the classpath.

    Maven runs only when the jars are missing or the pom / Java source is newer than the last build, so
    this is a few `stat` calls when nothing changed. The first build downloads Neo4j 5.26 Community and
    its dependencies from Maven Central into ~/.m2 (about 150 MB).

    Raises:
        Neo4jBuildError: Maven is missing or the build failed (with the tail of Maven's output).
    """
    if _is_built():
        return TARGET_DIR
    with _build_lock():
        if _is_built():  # another process built it while we waited for the lock
            return TARGET_DIR
        mvn = shutil.which("mvn")
        if mvn is None:
            raise Neo4jBuildError(
                "Maven (mvn) is not installed; it builds the local Neo4j launcher (apt-get install maven)"
            )
        BUILD_STAMP.unlink(missing_ok=True)
        CLASS_ARCHIVE.unlink(missing_ok=True)  # made for the old jars, useless with the new ones
        # Stale jars of an older Neo4j version would end up on the classpath next to the new ones.
        shutil.rmtree(LIB_DIR, ignore_errors=True)
        cmd = [
            mvn, "-q", "-B", "-f", str(POM),
            "package", "dependency:copy-dependencies",
        ]
        log.info("building the local Neo4j launcher: %s", " ".join(cmd))
        started = time.monotonic()
        try:
            result = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=MAVEN_TIMEOUT, check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise Neo4jBuildError(f"Maven did not finish within {MAVEN_TIMEOUT:.0f} s: {' '.join(cmd)}") from err
        output = _ANSI_ESCAPE.sub("", (result.stdout or "") + (result.stderr or ""))
        if result.returncode != 0 or not LAUNCHER_JAR.is_file():
            tail = "\n".join(output.strip().splitlines()[-OUTPUT_TAIL_LINES:])
            raise Neo4jBuildError(
                f"building the Neo4j launcher failed (exit {result.returncode}): {' '.join(cmd)}\n{tail}"
            )
        log.info("built the local Neo4j launcher in %.1f s", time.monotonic() - started)
        _make_class_archive()
        BUILD_STAMP.touch()
    return TARGET_DIR


def _make_class_archive() -> None:
    """Run Neo4j once on a scratch directory and let the JVM archive the classes it loaded (AppCDS).

    Best effort: a failure is logged and start-up just stays a bit slower.
    """
    partial = CLASS_ARCHIVE.with_name(CLASS_ARCHIVE.name + ".tmp")
    partial.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="warden-neo4j-cds-") as home:
            server = LocalNeo4j(Path(home), extra_jvm_args=[f"-XX:ArchiveClassesAtExit={partial}"])
            server._archive_run = True
            try:
                server.start()
            finally:
                server.stop(timeout=180.0)  # the JVM writes the archive as it exits
        if not partial.is_file() or partial.stat().st_size == 0:
            raise RuntimeError("the JVM wrote no class archive")
        partial.replace(CLASS_ARCHIVE)
        log.info("made the class archive %s in %.1f s", CLASS_ARCHIVE.name, time.monotonic() - started)
    except Exception as err:
        partial.unlink(missing_ok=True)
        log.warning("no class archive for the Neo4j launcher (start-up will be slower): %s", err)


# --------------------------------------------------------------------------------------------- run


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise Neo4jStartError("Java (17 or later) is not installed; the local Neo4j runs on it")
    return java


def _parse_ready(line: str) -> tuple[str, str, str]:
    """`WARDEN-NEO4J-READY bolt://127.0.0.1:PORT version=V edition=E` -> (uri, version, edition)."""
    words = line.split()
    fields = dict(word.split("=", 1) for word in words[2:] if "=" in word)
    return words[1], fields.get("version", "unknown"), fields.get("edition", "unknown")


class LocalNeo4j:
    """One embedded Neo4j 5.26 Community over a data directory the caller chooses.

    `start()` builds the launcher if needed, starts it and waits until Bolt accepts connections;
    `stop()` shuts it down cleanly. Starting again on the same directory keeps the data (and sets the
    password given here). Also a context manager: `with LocalNeo4j(dir) as neo4j: neo4j.endpoint...`.
    """

    def __init__(
        self,
        data_dir: Path,
        password: str = DEFAULT_PASSWORD,
        heap: str = "1g",
        startup_timeout: float = 120.0,
        *,
        port: int = 0,
        pagecache: str = "256m",
        extra_jvm_args: Sequence[str] = (),
    ) -> None:
        """
        Args:
            data_dir: Neo4j's home: `data/` (stores, transaction logs) and `logs/` go under it.
            password: password of the `neo4j` user (at least 8 characters).
            heap: the JVM's maximum heap (-Xmx), e.g. "1g", "512m".
            startup_timeout: seconds to wait for the ready line (covers JVM start, store creation,
                recovery); the build, if one is needed, is not counted.
            port: Bolt port on 127.0.0.1; 0 lets the OS pick a free one (the endpoint says which).
            pagecache: Neo4j's page cache size (server.memory.pagecache.size).
            extra_jvm_args: more JVM options, after the defaults (so they win).
        """
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ValueError(f"the Neo4j password must have at least {MIN_PASSWORD_LENGTH} characters")
        self.data_dir = Path(data_dir).resolve()
        self.password = password
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.port = port
        self.pagecache = pagecache
        self.extra_jvm_args = tuple(extra_jvm_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)
        self._ready_line: str | None = None
        self._ready = threading.Event()
        self._endpoint: Neo4jEndpoint | None = None
        self._lock = threading.Lock()
        self._archive_run = False  # set by _make_class_archive: no build, no archive in use

    @property
    def log_file(self) -> Path:
        """Everything the launcher printed (Neo4j's user log, start / stop messages)."""
        return self.data_dir / "logs" / "launcher.log"

    @property
    def endpoint(self) -> Neo4jEndpoint:
        """The running server's endpoint; raises RuntimeError when it is not running."""
        if self._endpoint is None:
            raise RuntimeError("the local Neo4j is not running (call start() first)")
        return self._endpoint

    @property
    def running(self) -> bool:
        return self._endpoint is not None and self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The java command line (no secrets in it: the password goes through the environment)."""
        use_archive = not self._archive_run and CLASS_ARCHIVE.is_file()
        return [
            _java(), f"-Xmx{self.heap}", *JVM_OPTIONS,
            *([f"-XX:SharedArchiveFile={CLASS_ARCHIVE}"] if use_archive else []),
            *self.extra_jvm_args,
            "-cp", classpath(), MAIN_CLASS,
            "--home", str(self.data_dir),
            "--port", str(self.port),
            "--pagecache", self.pagecache,
            "--exit-on-stdin-eof",
            "--parent-pid", str(os.getpid()),
        ]

    def start(self) -> Neo4jEndpoint:
        """Start Neo4j (building the launcher first if needed) and wait until Bolt accepts connections.

        Returns the endpoint; if it is already running, returns the current endpoint.

        Raises:
            Neo4jBuildError: the launcher could not be built.
            Neo4jStartError: Neo4j exited or was not ready within `startup_timeout` (it is stopped then).
        """
        with self._lock:
            if self.running:
                return self.endpoint
            if not self._archive_run:  # that run is part of the build, under its lock
                ensure_built()
            self._cleanup()
            (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
            env = dict(os.environ)
            env[PASSWORD_ENV] = self.password
            started = time.monotonic()
            self._ready.clear()
            self._ready_line = None
            self._output.clear()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,  # never written; its end tells the launcher we are gone
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir,
                start_new_session=True,  # a terminal's Ctrl-C reaches us, and stop() decides
            )
            self._reader = threading.Thread(
                target=self._read_output, args=(self._proc,), name=f"neo4j-output-{self._proc.pid}", daemon=True
            )
            self._reader.start()
            try:
                line = self._await_ready(started)
            except BaseException:
                self._stop_process(timeout=10.0)
                raise
            uri, version, edition = _parse_ready(line)
            self._endpoint = Neo4jEndpoint(
                uri=uri, username=USERNAME, password=self.password, version=version, edition=edition,
                data_dir=self.data_dir, pid=self._proc.pid,
            )
            log.info(
                "Neo4j %s %s ready at %s in %.1f s (pid %d, data %s)",
                version, edition, uri, time.monotonic() - started, self._proc.pid, self.data_dir,
            )
            return self._endpoint

    def _await_ready(self, started: float) -> str:
        assert self._proc is not None
        deadline = started + self.startup_timeout
        while True:
            if self._ready.wait(timeout=0.1) and self._ready_line is not None:
                return self._ready_line
            code = self._proc.poll()
            if code is not None:
                if self._reader is not None:
                    self._reader.join(timeout=5.0)
                raise Neo4jStartError(f"Neo4j exited with status {code} before it was ready{self._diagnostics()}")
            if time.monotonic() > deadline:
                raise Neo4jStartError(
                    f"Neo4j was not ready within {self.startup_timeout:.0f} s{self._diagnostics()}"
                )

    def _diagnostics(self) -> str:
        lines = list(self._output)
        text = "\n".join(lines) if lines else "(no output)"
        return f"; launcher output (full log: {self.log_file}):\n{text}"

    def _read_output(self, proc: subprocess.Popen[bytes]) -> None:
        """Copies the launcher's output to its log file, keeps a tail, and spots the ready line."""
        assert proc.stdout is not None
        with open(self.log_file, "ab") as sink:
            for raw in iter(proc.stdout.readline, b""):
                sink.write(raw)
                sink.flush()
                line = raw.decode("utf-8", "replace").rstrip()
                self._output.append(line)
                if line.startswith(READY_MARKER) and self._ready_line is None:
                    self._ready_line = line
                    self._ready.set()
                else:
                    log.debug("neo4j[%d]: %s", proc.pid, line)

    def stop(self, timeout: float = 30.0) -> None:
        """Shut Neo4j down: SIGTERM (clean shutdown, checkpoint), wait `timeout` s, SIGKILL as last resort.

        Idempotent; safe when it never started or already died.
        """
        with self._lock:
            self._stop_process(timeout)

    def _stop_process(self, timeout: float) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("Neo4j (pid %d) did not stop within %.0f s; killing it", proc.pid, timeout)
                proc.kill()
                proc.wait(10.0)
            else:
                log.info("Neo4j (pid %d) stopped in %.1f s", proc.pid, time.monotonic() - started)
        self._cleanup()

    def _cleanup(self) -> None:
        proc, self._proc = self._proc, None
        self._endpoint = None
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            if self._reader is not None:
                self._reader.join(timeout=5.0)
            if proc.stdout is not None:
                proc.stdout.close()
        self._reader = None

    def __enter__(self) -> LocalNeo4j:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------- CLI


def _run(args: argparse.Namespace) -> int:
    password = os.environ.get(PASSWORD_ENV, DEFAULT_PASSWORD)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with LocalNeo4j(Path(args.data_dir), password=password, heap=args.heap, port=args.port) as neo4j:
        ep = neo4j.endpoint
        log.info("Neo4j %s %s: %s  user %s  password %s", ep.version, ep.edition, ep.uri, ep.username,
                 "from $" + PASSWORD_ENV if PASSWORD_ENV in os.environ else ep.password)
        log.info("data in %s; Ctrl-C to stop", ep.data_dir)
        while not stop.wait(1.0):
            if not neo4j.running:
                log.error("Neo4j exited; see %s", neo4j.log_file)
                return 1
        log.info("stopping Neo4j")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`build`: ensure_built(); `run`: start Neo4j and keep it running until Ctrl-C / SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m local.neo4j", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the launcher (Maven) if it is missing or out of date")
    run = sub.add_parser("run", help=f"run Neo4j until Ctrl-C (password: ${PASSWORD_ENV} or the default)")
    run.add_argument("--data-dir", required=True, help="Neo4j's home (data/ and logs/ go under it)")
    run.add_argument("--port", type=int, default=0, help="Bolt port (default: a free one)")
    run.add_argument("--heap", default="1g", help="JVM heap, e.g. 1g (default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "build":
            was_built = _is_built()
            path = ensure_built()
            log.info("Neo4j launcher %s: %s", "up to date" if was_built else "built", path)
            return 0
        return _run(args)
    except (Neo4jBuildError, Neo4jStartError) as err:
        log.error("%s", err)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
