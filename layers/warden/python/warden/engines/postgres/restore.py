"""PostgreSQL restore with pg_restore: the stored stream is spooled to a temp file (parallel
`pg_restore -j` needs a seekable archive; Lambda's /tmp holds up to 10 GB), checked with `pg_restore
--list` before anything is touched, then restored with `--exit-on-error` into an empty database and
validated against the manifest's counts.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from warden.config.credentials import PostgresSecret
from warden.engines.base import RestoreFailed, RestoreRefused, RestoreResult
from warden.engines.postgres.archive import _check_archive, parse_header
from warden.engines.postgres.connection import CONNECT_TIMEOUT, _first_line, connect
from warden.engines.postgres.inventory import _database_state, _maintenance_db, count_objects
from warden.engines.postgres.tools import CHUNK, PgTool, _passfile, _StderrTail, _stop, _tail, _tool_env, find_tool

log = logging.getLogger(__name__)


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
