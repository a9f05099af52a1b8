"""Neo4j logical backup over Bolt (works on Community: no neo4j-admin online backup needed) and a
fast restore. The archive format is `warden.engines.neo4j.format` (docs/neo4j-backup-format.md).

Export: one read transaction holds the whole copy. The server groups nodes (and relationships) by
internal-id ranges into records of about `batch_size` entities with the same labels and property
keys (type and keys for relationships); each record streams out, is encoded and compressed, and is
written to `out` before the next one is fetched: memory is one record plus a bitmap of one bit per
node id (to skip relationships whose endpoint was created after the node section). Counts and the
database's bookmark are read before and after: unchanged means no write was committed meanwhile, so
the copy is point-in-time; otherwise the result says how many changes were seen.

Restore (warden.engines.neo4j.restore): into an empty database (or one emptied with
`replace=True`): nodes created in batched UNWIND per label set and property keys, two transactions
at once, each returning the new nodes' ids (kept per archived id in memory); relationships per type
matched on those ids; then the archive's constraints and indexes created and awaited ONLINE, then
the counts checked against the archive and the manifest.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import neo4j
from neo4j import exceptions as neo4j_errors

from warden.config.credentials import Neo4jSecret
from warden.engines.base import BackupFailed, DeadlinePassed, ExportResult, ServerStalled, Writable
from warden.engines.neo4j.connection import server_info
from warden.engines.neo4j.format import (
    COMPRESSION_LEVEL,
    FORMAT_VERSION,
    ArchiveWriter,
    UnsupportedValue,
    encode_row,
)
from warden.engines.neo4j.inventory import _counts_key, _totals
from warden.engines.neo4j.session import _call, _session, _translated
from warden.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

METHOD = "neo4j-logical"
EXTENSION = "wnj.gz"

EXPORT_BATCH = 4096  # node / relationship ids per server-side group: one record's worth of memory
EXPORT_FETCH_RECORDS = 2  # records per PULL: each record already holds up to EXPORT_BATCH entities



POINT_IN_TIME = ("point-in-time: no write was committed during the export (one read transaction; the "
                 "database's bookmark and counts were the same before and after)")
NOT_POINT_IN_TIME = ("not point-in-time: {changes} concurrent changes observed (writes were committed during the "
                     "export; every node and relationship is copied whole, the graph is read-committed)")
QUIESCE_NOTE = ("Neo4j reads are not snapshot-isolated: for a point-in-time copy back up in a quiesced or "
                "read-only window, or use Enterprise online backup")




SectionHook = Callable[[str, int], None]


# --- errors and small helpers ----------------------------------------------------------------




















# --- counts and emptiness --------------------------------------------------------------------












# --- export ----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Schema options as JSON (index configs hold strings, numbers, booleans and lists of them)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


_CONSTRAINT_FIELDS = ("name", "type", "entityType", "labelsOrTypes", "properties", "propertyType", "options",
                      "createStatement")
_INDEX_FIELDS = ("name", "type", "entityType", "labelsOrTypes", "properties", "indexProvider", "options",
                 "createStatement")


def _read_schema(tx: Any) -> dict[str, Any]:
    """Constraints and indexes, with what it takes to re-create them (`createStatement` is Neo4j's own)."""
    constraints = []
    for record in tx.run("SHOW CONSTRAINTS YIELD *"):
        row = record.data()
        constraints.append({k: _plain(row.get(k)) for k in _CONSTRAINT_FIELDS if k in row})
    indexes = []
    for record in tx.run("SHOW INDEXES YIELD *"):
        row = record.data()
        # LOOKUP indexes are built in (every new database has them); a constraint makes its own index.
        if row.get("type") == "LOOKUP" or row.get("owningConstraint") is not None:
            continue
        index = {k: _plain(row.get(k)) for k in _INDEX_FIELDS if k in row}
        index["state"] = str(row.get("state"))  # a FAILED index fails again on restore: the restore expects it
        if row.get("failureMessage"):
            index["failureMessage"] = _failure(row["failureMessage"])
        indexes.append(index)
    return {"constraints": sorted(constraints, key=lambda c: str(c["name"])),
            "indexes": sorted(indexes, key=lambda i: str(i["name"]))}


def _failure(message: Any) -> str:
    """An index's failure message, its first line (the rest is a Java stack trace)."""
    text = str(message).strip()
    return text.splitlines()[0][:500] if text else ""


def failed_index_warnings(schema: dict[str, Any]) -> list[str]:
    """One warning per index that is not ONLINE in the source (FAILED: a restore re-creates it and it
    fails again; POPULATING: it was still being built)."""
    return [f"index {i['name']} is {i['state']} in the source"
            + (f": {i['failureMessage']}" if i.get("failureMessage") else "")
            + ("; a restore re-creates it and it fails again unless the data that failed it changes"
               if i["state"] == "FAILED" else "")
            for i in schema.get("indexes", []) if i.get("state") not in (None, "ONLINE")]


class _IdSet:
    """Node ids seen so far: one bit per id up to the highest (ids are dense: Neo4j reuses them)."""

    def __init__(self) -> None:
        self.bits = bytearray()

    def add_all(self, rows: list[list[Any]], top: int) -> None:
        bits = self.bits
        if len(bits) <= top >> 3:
            bits.extend(bytes((top >> 3) + 1 - len(bits)))
        for row in rows:
            i = row[0]
            bits[i >> 3] |= 1 << (i & 7)

    def has(self, i: int) -> bool:
        return (i >> 3) < len(self.bits) and bool(self.bits[i >> 3] >> (i & 7) & 1)


def _export_nodes(tx: Any, writer: ArchiveWriter, seen: _IdSet, counts: dict[str, int], batch: int,
                  version: str) -> int:
    query = (
        "MATCH (n) WITH max(id(n)) AS top "
        "UNWIND range(0, coalesce(top, -1), $batch) AS lo "
        f"{_call(version, 'lo')} "
        "  MATCH (n) WHERE id(n) IN range(lo, lo + $batch - 1) "
        "  WITH labels(n) AS labels, keys(n) AS keys, n "
        "  RETURN labels, keys, collect([id(n)] + [k IN keys | n[k]]) AS rows "
        "} "
        "RETURN lo, labels, keys, rows"
    )
    total = 0
    for lo, labels, keys, rows in tx.run(query, batch=batch):
        for row in rows:
            encode_row(row, 1)
        seen.add_all(rows, lo + batch - 1)
        writer.record(["N", labels, keys, rows])
        total += len(rows)
        for label in labels:
            key = _counts_key("label", label)
            counts[key] = counts.get(key, 0) + len(rows)
    return total


def _export_relationships(tx: Any, writer: ArchiveWriter, seen: _IdSet, counts: dict[str, int], batch: int,
                          version: str) -> tuple[int, int]:
    query = (
        "MATCH ()-[r]->() WITH max(id(r)) AS top "
        "UNWIND range(0, coalesce(top, -1), $batch) AS lo "
        f"{_call(version, 'lo')} "
        "  MATCH ()-[r]->() WHERE id(r) IN range(lo, lo + $batch - 1) "
        "  WITH type(r) AS type, keys(r) AS keys, r "
        "  RETURN type, keys, collect([id(startNode(r)), id(endNode(r))] + [k IN keys | r[k]]) AS rows "
        "} "
        "RETURN type, keys, rows"
    )
    total = dangling = 0
    has = seen.has
    for rel_type, keys, rows in tx.run(query, batch=batch):
        kept = [row for row in rows if has(row[0]) and has(row[1])]
        if len(kept) != len(rows):  # an endpoint created after the node section: not in the archive
            dangling += len(rows) - len(kept)
            if not kept:
                continue
        for row in kept:
            encode_row(row, 2)
        writer.record(["R", rel_type, keys, kept])
        total += len(kept)
        key = _counts_key("type", rel_type)
        counts[key] = counts.get(key, 0) + len(kept)
    return total, dangling


def export_backup(
    secret: Neo4jSecret,
    out: Writable,
    *,
    batch_size: int = EXPORT_BATCH,
    compression_level: int = COMPRESSION_LEVEL,
    on_section: SectionHook | None = None,
    deadline: float | None = None,
) -> ExportResult:
    """Stream a logical backup of the secret's database (nodes, relationships, constraints, indexes)
    into `out` as a `warden-neo4j/1` archive, in constant memory.

    Nodes and relationships are read in one read transaction. Writes committed meanwhile do not fail
    the backup: they are detected (bookmark and counts before / after, relationships whose endpoint
    is not in the archive are skipped and counted) and reported in `consistency` and
    `details["writes_during_backup"]`. `on_section(name, count)` is called as each section
    ("schema", "nodes", "relationships") is written (progress; tests use it to write concurrently).

    Raises DatabaseUnavailable (unreachable, credentials refused, transient failure), BackupFailed
    (a query failed, a value the format cannot hold); an exception raised by `out` propagates as is.

    `deadline` (`time.monotonic()`): the transaction's timeout ends there (a live server stops it),
    and so does every read of the connection (a server that sends nothing, stopped or unreachable):
    `ServerStalled` instead of a read blocked past it; a transaction the server stopped at its timeout
    raises `DeadlinePassed`.
    """
    started = time.monotonic()
    try:
        return _export(secret, out, batch_size, compression_level, on_section, deadline, started)
    except _TransactionTimedOut as err:
        raise DeadlinePassed(f"Neo4j stopped the export's transaction at the backup's deadline ({err})") from None
    except DatabaseUnavailable as err:
        if deadline is not None and time.monotonic() >= deadline - _DEADLINE_SLACK_S:
            raise ServerStalled(f"the server stalled: the backup's deadline passed while waiting for Neo4j at "
                                f"{secret.uri} ({err})") from None
        raise


_DEADLINE_SLACK_S = 0.5  # a read that timed out at the deadline reports a little before or after it


class _TransactionTimedOut(Exception):
    """The server stopped the export's transaction at the timeout its deadline set."""


_TIMED_OUT_CODES = ("Neo.ClientError.Transaction.TransactionTimedOut",
                    "Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration")


def _bound_reads(tx: Any, deadline: float | None) -> Any:
    """Bound every read of the transaction's connection by `deadline`; returns the previous timeout.
    The driver has no public read timeout: its socket's is the one a server's
    `connection.recv_timeout_seconds` hint sets, used here the same way."""
    sock: Any = getattr(getattr(tx, "_connection", None), "socket", None)
    if deadline is None or not hasattr(sock, "set_read_timeout"):
        return None
    previous = sock.get_read_timeout()
    sock.set_read_timeout(max(deadline - time.monotonic(), 0.1))
    return previous


def _restore_reads(tx: Any, previous: Any) -> None:
    sock: Any = getattr(getattr(tx, "_connection", None), "socket", None)
    if hasattr(sock, "set_read_timeout"):
        with contextlib.suppress(OSError):  # a connection closed by the failure is not reused
            sock.set_read_timeout(previous)  # the connection goes back to the pool


def _export_in(tx: Any, secret: Neo4jSecret, writer: ArchiveWriter, seen: _IdSet, counts: dict[str, int],
               batch_size: int, info: Any, on_section: SectionHook | None) -> tuple[int, int, int, dict[str, Any]]:
    """The export's transaction: header and schema, nodes, relationships, commit."""
    schema = _read_schema(tx)
    writer.record(["header", {
        "format": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "server": {"version": info.version, "edition": info.edition},
        "database": secret.database,
        "schema": schema,
    }])
    if on_section:
        on_section("schema", len(schema["constraints"]) + len(schema["indexes"]))
    try:
        nodes = _export_nodes(tx, writer, seen, counts, batch_size, info.version)
        if on_section:
            on_section("nodes", nodes)
        relationships, dangling = _export_relationships(tx, writer, seen, counts, batch_size, info.version)
    except UnsupportedValue as err:
        raise BackupFailed(f"cannot back up {secret.uri}/{secret.database}: {err}") from None
    if on_section:
        on_section("relationships", relationships)
    tx.commit()
    return nodes, relationships, dangling, schema


def _export(secret: Neo4jSecret, out: Writable, batch_size: int, compression_level: int,
            on_section: SectionHook | None, deadline: float | None, started: float) -> ExportResult:
    info = server_info(secret)
    writer = ArchiveWriter(out, level=compression_level)
    counts: dict[str, int] = {}
    seen = _IdSet()
    with _translated(secret, "exporting", BackupFailed), \
            _session(secret, neo4j.READ_ACCESS, fetch_size=EXPORT_FETCH_RECORDS) as session:
        before, bookmark_before = _totals(session)
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.1)
        with session.begin_transaction(timeout=timeout) as tx:
            previous_timeout = _bound_reads(tx, deadline)
            try:
                nodes, relationships, dangling, schema = _export_in(tx, secret, writer, seen, counts, batch_size,
                                                                    info, on_section)
            except neo4j_errors.ClientError as err:
                if deadline is not None and err.code in _TIMED_OUT_CODES:
                    raise _TransactionTimedOut(f"{err.code}") from None
                raise
            finally:
                _restore_reads(tx, previous_timeout)  # also on failure: the connection goes back to the pool
        after, bookmark_after = _totals(session)

    counts.update(nodes=nodes, relationships=relationships)
    counts = dict(sorted(counts.items()))
    changes = (abs(after["nodes"] - before["nodes"]) + abs(after["relationships"] - before["relationships"])
               + dangling)
    bookmark_moved = bool(bookmark_before) and bool(bookmark_after) and bookmark_before != bookmark_after
    writes = bookmark_moved or changes > 0
    consistency = NOT_POINT_IN_TIME.format(changes=changes) if writes else POINT_IN_TIME
    warnings = failed_index_warnings(schema)
    for warning in warnings:
        log.warning("neo4j backup warning", extra={"database": secret.database, "warning": warning})
    details: dict[str, Any] = {
        "warnings": warnings,
        "writes_during_backup": writes,
        "concurrent_changes": changes,
        "dangling_relationships_skipped": dangling,
        "counts_before": before,
        "counts_after": after,
        "bookmark_checked": bool(bookmark_before) and bool(bookmark_after),
        "edition": info.edition,
        "json_bytes": 0,
        "compressed_bytes": 0,
        "duration_s": 0.0,
    }
    if writes:
        details["note"] = (f"{changes} changes seen between the counts before and after the export"
                           f"{' (and the bookmark moved)' if bookmark_moved else ''}; {QUIESCE_NOTE}")
    writer.record(["end", {"counts": counts, "consistency": consistency, "writes_during_backup": writes,
                           "dangling_relationships_skipped": dangling}])
    writer.close()
    details.update(json_bytes=writer.json_bytes, compressed_bytes=writer.compressed_bytes,
                   duration_s=round(time.monotonic() - started, 3))
    if writes:
        log.warning("neo4j backup is not point-in-time", extra={"database": secret.database, "changes": changes,
                                                                "dangling": dangling})
    log.info("neo4j backup finished", extra={"database": secret.database, "nodes": nodes,
                                             "relationships": relationships, "bytes": writer.compressed_bytes,
                                             "seconds": details["duration_s"]})
    return ExportResult(
        method=METHOD,
        format_version=FORMAT_VERSION,
        server_version=info.version,
        extension=EXTENSION,
        counts=counts,
        schema=schema,
        consistency=consistency,
        details=details,
    )


# --- restore ---------------------------------------------------------------------------------










Group = tuple[str, tuple[str, ...], tuple[str, ...]]  # ("N", labels, keys) / ("R", (type,), keys)












