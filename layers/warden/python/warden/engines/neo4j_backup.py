"""Neo4j logical backup over Bolt (works on Community: no neo4j-admin online backup needed) and a
fast restore. The archive format is `warden.engines.neo4j_format` (docs/neo4j-backup-format.md).

Export: one read transaction holds the whole copy. The server groups nodes (and relationships) by
internal-id ranges into records of about `batch_size` entities with the same labels and property
keys (type and keys for relationships); each record streams out, is encoded and compressed, and is
written to `out` before the next one is fetched: memory is one record plus a bitmap of one bit per
node id (to skip relationships whose endpoint was created after the node section). Counts and the
database's bookmark are read before and after: unchanged means no write was committed meanwhile, so
the copy is point-in-time; otherwise the result says how many changes were seen.

Restore: into an empty database (or one emptied with `replace=True`): nodes created in batched
UNWIND per label set and property keys with a temporary `:__WardenImport {__wid}` (unique, so
indexed), relationships per type matched on it, then the temporary label, property and constraint
removed, then the archive's constraints and indexes created and awaited ONLINE, then the counts
checked against the archive and the manifest.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import neo4j
from neo4j import exceptions as neo4j_errors

from warden.engines.base import BackupFailed, ExportResult, RestoreFailed, RestoreRefused, RestoreResult, Writable
from warden.engines.neo4j import driver, server_info
from warden.engines.neo4j_format import (
    COMPRESSION_LEVEL,
    FORMAT_VERSION,
    KNOWN_FORMATS,
    ArchiveError,
    ArchiveWriter,
    UnsupportedValue,
    decode_row,
    encode_row,
    iter_records,
)
from warden.errors import DatabaseError, DatabaseUnavailable, WardenError
from warden.models import Neo4jSecret

log = logging.getLogger(__name__)

METHOD = "neo4j-logical"
EXTENSION = "wnj.gz"

EXPORT_BATCH = 4096  # node / relationship ids per server-side group: one record's worth of memory
EXPORT_FETCH_RECORDS = 2  # records per PULL: each record already holds up to EXPORT_BATCH entities
RESTORE_BATCH_ROWS = 10_000  # rows per UNWIND transaction
RESTORE_PENDING_FACTOR = 4  # rows waiting in partly filled groups (x batch_rows) before all go
DELETE_BATCH_ROWS = 10_000
INDEX_TIMEOUT_S = 3600

IMPORT_LABEL = "__WardenImport"
IMPORT_KEY = "__wid"
IMPORT_CONSTRAINT = "warden_import_wid"

# Constraint types a Community server cannot create (SHOW CONSTRAINTS `type`).
ENTERPRISE_CONSTRAINTS = frozenset({
    "NODE_KEY", "RELATIONSHIP_KEY", "NODE_PROPERTY_EXISTENCE", "RELATIONSHIP_PROPERTY_EXISTENCE",
    "NODE_PROPERTY_TYPE", "RELATIONSHIP_PROPERTY_TYPE",
})

POINT_IN_TIME = ("point-in-time: no write was committed during the export (one read transaction; the "
                 "database's bookmark and counts were the same before and after)")
NOT_POINT_IN_TIME = ("not point-in-time: {changes} concurrent changes observed (writes were committed during the "
                     "export; every node and relationship is copied whole, the graph is read-committed)")
QUIESCE_NOTE = ("Neo4j reads are not snapshot-isolated: for a point-in-time copy back up in a quiesced or "
                "read-only window, or use Enterprise online backup")




SectionHook = Callable[[str, int], None]


# --- errors and small helpers ----------------------------------------------------------------


@contextlib.contextmanager
def _translated(secret: Neo4jSecret, doing: str, failure: type[WardenError]) -> Iterator[None]:
    """Driver exceptions → Warden's: unreachable / transient → DatabaseUnavailable, the rest → `failure`."""
    try:
        yield
    except neo4j_errors.AuthError:
        raise DatabaseUnavailable(f"Neo4j at {secret.uri} rejected the credentials") from None
    except (neo4j_errors.ServiceUnavailable, neo4j_errors.SessionExpired) as err:
        raise DatabaseUnavailable(f"Neo4j at {secret.uri} became unavailable while {doing}: {err}") from None
    except neo4j_errors.TransientError as err:
        raise DatabaseUnavailable(f"Neo4j failed transiently while {doing}: {err.code}: {_first_line(err)}") from None
    except neo4j_errors.Neo4jError as err:
        raise failure(f"Neo4j failed while {doing}: {err.code}: {_first_line(err)}") from None
    except neo4j_errors.DriverError as err:
        raise failure(f"the Neo4j driver failed while {doing}: {type(err).__name__}: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    text = str(getattr(err, "message", None) or err).strip()
    return text.splitlines()[0][:500] if text else type(err).__name__


def _q(name: str) -> str:
    """A label, type, property or index name as a Cypher identifier (backticks, doubled inside)."""
    return "`" + name.replace("`", "``") + "`"


def _version(text: str) -> tuple[int, int]:
    major, minor, *_ = [*(int(p) for p in text.split("-")[0].split(".")[:2] if p.isdigit()), 0, 0]
    return major, minor


def _call(server_version: str, variable: str) -> str:
    """Opening of a CALL subquery importing `variable`: scoped (5.23+) or importing WITH (older)."""
    if _version(server_version) >= (5, 23):
        return f"CALL ({variable}) {{"
    return f"CALL {{ WITH {variable}"


def _session(secret: Neo4jSecret, mode: str, **config: Any) -> neo4j.Session:
    # Notifications off: `id()` is deprecated but the cheapest identity over Bolt; nobody reads them.
    return driver(secret).session(database=secret.database, default_access_mode=mode,
                                  notifications_min_severity="OFF", **config)


def _single(tx: Any, query: str, **params: Any) -> Any:
    record = tx.run(query, params).single(strict=True)
    return record[0]


def _totals(session: neo4j.Session) -> tuple[dict[str, int], frozenset[str]]:
    """Total nodes and relationships (count store: constant time) and the bookmark after reading them."""
    with session.begin_transaction() as tx:
        totals = {"nodes": int(_single(tx, "MATCH (n) RETURN count(n)")),
                  "relationships": int(_single(tx, "MATCH ()-[r]->() RETURN count(r)"))}
        tx.commit()
    return totals, frozenset(session.last_bookmarks().raw_values)


def _counts_key(kind: str, name: str) -> str:
    return f"{kind}:{name}"


# --- counts and emptiness --------------------------------------------------------------------


def _count_objects(tx: Any) -> dict[str, int]:
    counts = {"nodes": int(_single(tx, "MATCH (n) RETURN count(n)")),
              "relationships": int(_single(tx, "MATCH ()-[r]->() RETURN count(r)"))}
    labels = [r[0] for r in tx.run("CALL db.labels() YIELD label RETURN label")]
    types = [r[0] for r in tx.run("CALL db.relationshipTypes() YIELD relationshipType RETURN relationshipType")]
    for label in labels:  # one query per token: each is a count-store lookup
        if n := int(_single(tx, f"MATCH (n:{_q(label)}) RETURN count(n)")):
            counts[_counts_key("label", label)] = n
    for rel_type in types:
        if n := int(_single(tx, f"MATCH ()-[r:{_q(rel_type)}]->() RETURN count(r)")):
            counts[_counts_key("type", rel_type)] = n
    return dict(sorted(counts.items()))


def count_objects(secret: Neo4jSecret) -> dict[str, int]:
    """The manifest's counts measured now: `nodes`, `relationships`, `label:<L>` (nodes carrying L),
    `type:<T>` (relationships of type T); labels and types with no entity are left out."""
    with _translated(secret, "counting", DatabaseError), _session(secret, neo4j.READ_ACCESS) as session, \
            session.begin_transaction() as tx:
        counts = _count_objects(tx)
        tx.commit()
    return counts


def _user_schema(tx: Any) -> tuple[list[str], list[str]]:
    """Names of the constraints, and of the indexes that are neither built-in LOOKUP nor a constraint's."""
    constraints = [r["name"] for r in tx.run("SHOW CONSTRAINTS YIELD name RETURN name")]
    indexes = [r["name"] for r in tx.run(
        "SHOW INDEXES YIELD name, type, owningConstraint "
        "WHERE type <> 'LOOKUP' AND owningConstraint IS NULL RETURN name")]
    return constraints, indexes


def _state(session: neo4j.Session) -> dict[str, int]:
    with session.begin_transaction() as tx:
        constraints, indexes = _user_schema(tx)
        state = {"nodes": int(_single(tx, "MATCH (n) RETURN count(n)")),
                 "constraints": len(constraints), "indexes": len(indexes)}
        tx.commit()
    return state


def is_empty(secret: Neo4jSecret) -> bool:
    """True when the database has no node (so no relationship) and no constraint or index of its
    own (the two built-in LOOKUP indexes do not count)."""
    with _translated(secret, "checking whether the database is empty", DatabaseError), \
            _session(secret, neo4j.READ_ACCESS) as session:
        return not any(_state(session).values())


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
        indexes.append({k: _plain(row.get(k)) for k in _INDEX_FIELDS if k in row})
    return {"constraints": sorted(constraints, key=lambda c: str(c["name"])),
            "indexes": sorted(indexes, key=lambda i: str(i["name"]))}


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
    """
    started = time.monotonic()
    info = server_info(secret)
    writer = ArchiveWriter(out, level=compression_level)
    counts: dict[str, int] = {}
    seen = _IdSet()
    with _translated(secret, "exporting", BackupFailed), \
            _session(secret, neo4j.READ_ACCESS, fetch_size=EXPORT_FETCH_RECORDS) as session:
        before, bookmark_before = _totals(session)
        with session.begin_transaction() as tx:
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
        after, bookmark_after = _totals(session)

    counts.update(nodes=nodes, relationships=relationships)
    counts = dict(sorted(counts.items()))
    changes = (abs(after["nodes"] - before["nodes"]) + abs(after["relationships"] - before["relationships"])
               + dangling)
    bookmark_moved = bool(bookmark_before) and bool(bookmark_after) and bookmark_before != bookmark_after
    writes = bookmark_moved or changes > 0
    consistency = NOT_POINT_IN_TIME.format(changes=changes) if writes else POINT_IN_TIME
    details: dict[str, Any] = {
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


def _check_header(record: list[Any]) -> dict[str, Any]:
    if len(record) != 2 or record[0] != "header" or not isinstance(record[1], dict):
        raise RestoreRefused("not a Warden Neo4j archive: the first record is not a header")
    header = record[1]
    if header.get("format") not in KNOWN_FORMATS:
        raise RestoreRefused(f"unknown archive format {header.get('format')!r}; this Warden reads "
                             f"{', '.join(sorted(KNOWN_FORMATS))}")
    schema = header.get("schema")
    if not isinstance(schema, dict) or not isinstance(schema.get("constraints"), list) \
            or not isinstance(schema.get("indexes"), list):
        raise RestoreRefused("the archive's header has no schema section")
    return header


def _check_schema_supported(schema: dict[str, Any], edition: str) -> None:
    if edition.lower() == "enterprise":
        return
    unsupported = [c["name"] for c in schema["constraints"] if c.get("type") in ENTERPRISE_CONSTRAINTS]
    if unsupported:
        raise RestoreRefused(f"the archive has constraints a {edition} server cannot create "
                             f"({', '.join(sorted(map(str, unsupported)))}); restore into Enterprise")


def _run(session: neo4j.Session, query: str, **params: Any) -> Any:
    return session.run(query, params).consume()


def _wipe(session: neo4j.Session, version: str) -> None:
    """Drop every constraint and (non-LOOKUP) index, then delete everything, in batches."""
    with session.begin_transaction() as tx:
        constraints, indexes = _user_schema(tx)
        tx.commit()
    for name in constraints:
        _run(session, f"DROP CONSTRAINT {_q(name)} IF EXISTS")
    for name in indexes:
        _run(session, f"DROP INDEX {_q(name)} IF EXISTS")
    _run(session, f"MATCH ()-[r]->() {_call(version, 'r')} DELETE r }} IN TRANSACTIONS OF {DELETE_BATCH_ROWS} ROWS")
    _run(session, f"MATCH (n) {_call(version, 'n')} DETACH DELETE n }} IN TRANSACTIONS OF {DELETE_BATCH_ROWS} ROWS")


Group = tuple[str, tuple[str, ...], tuple[str, ...]]  # ("N", labels, keys) / ("R", (type,), keys)


class _Loader:
    """Gathers rows per (labels, keys) / (type, keys) and sends them in UNWIND batches of `batch_rows`.

    Full groups go with their keys in the query text (values positional: no key strings per row).
    When too many rows wait, or a section ends, what is left goes too; groups too small to be worth a
    query of their own (a graph with many optional properties has many key sets) are merged per label
    set / type and sent with property maps instead.
    """

    def __init__(self, session: neo4j.Session, batch_rows: int) -> None:
        self.session = session
        self.batch_rows = batch_rows
        self.small_rows = max(1, batch_rows // 10)
        self.groups: dict[Group, list[list[Any]]] = {}
        self.pending = 0
        self.batches = 0
        self.queries: dict[tuple[Group, bool], str] = {}

    def add(self, kind: str, names: tuple[str, ...], keys: tuple[str, ...], rows: list[list[Any]]) -> None:
        group = self.groups.setdefault((kind, names, keys), [])
        group.extend(rows)
        self.pending += len(rows)
        if len(group) >= self.batch_rows:
            self._send((kind, names, keys), full_only=True)
        if self.pending > RESTORE_PENDING_FACTOR * self.batch_rows:
            self.flush()

    def flush(self) -> None:
        merged: dict[tuple[str, tuple[str, ...]], list[list[Any]]] = {}
        for key in list(self.groups):
            kind, names, keys = key
            rows = self.groups[key]
            if len(rows) >= self.small_rows or not keys:
                self._send(key, full_only=False)
                continue
            first = 1 if kind == "N" else 2  # [id, values...] / [start, end, values...]
            merged.setdefault((kind, names), []).extend(
                [*row[:first], dict(zip(keys, row[first:], strict=True))] for row in rows)
            del self.groups[key]
            self.pending -= len(rows)
        for (kind, names), rows in merged.items():
            query = self._query((kind, names, ()), with_map=True)
            for i in range(0, len(rows), self.batch_rows):
                self._run(query, rows[i:i + self.batch_rows])

    def _send(self, key: Group, *, full_only: bool) -> None:
        rows = self.groups[key]
        query = self._query(key, with_map=False)
        while len(rows) >= self.batch_rows or (rows and not full_only):
            batch, rows = rows[:self.batch_rows], rows[self.batch_rows:]
            self._run(query, batch)
            self.pending -= len(batch)
        if rows:
            self.groups[key] = rows
        else:
            del self.groups[key]

    def _run(self, query: str, rows: list[list[Any]]) -> None:
        _run(self.session, query, rows=rows)
        self.batches += 1

    def _query(self, key: Group, *, with_map: bool) -> str:
        query = self.queries.get((key, with_map))
        if query is None:
            query = self.queries[(key, with_map)] = _load_query(*key, with_map=with_map)
        return query


def _load_query(kind: str, names: tuple[str, ...], keys: tuple[str, ...], *, with_map: bool = False) -> str:
    """The UNWIND statement for a group: rows `[id, *values]` / `[start, end, *values]`, or with
    `with_map` rows `[id, {props}]` / `[start, end, {props}]`."""
    wid = f"{IMPORT_LABEL}({IMPORT_KEY})"
    if kind == "N":
        labels = "".join(f":{_q(label)}" for label in (*names, IMPORT_LABEL))
        if with_map:
            return f"UNWIND $rows AS row CREATE (n{labels} {{{IMPORT_KEY}: row[0]}}) SET n += row[1]"
        props = ", ".join([f"{IMPORT_KEY}: row[0]", *(f"{_q(k)}: row[{i + 1}]" for i, k in enumerate(keys))])
        return f"UNWIND $rows AS row CREATE (n{labels} {{{props}}})"
    match = (f"UNWIND $rows AS row "
             f"MATCH (a:{IMPORT_LABEL} {{{IMPORT_KEY}: row[0]}}) USING INDEX a:{wid} "
             f"MATCH (b:{IMPORT_LABEL} {{{IMPORT_KEY}: row[1]}}) USING INDEX b:{wid} ")
    if with_map:
        return match + f"CREATE (a)-[r:{_q(names[0])}]->(b) SET r += row[2]"
    props = ", ".join(f"{_q(k)}: row[{i + 2}]" for i, k in enumerate(keys))
    return match + f"CREATE (a)-[:{_q(names[0])}{f' {{{props}}}' if props else ''}]->(b)"


def _load(records: Iterator[list[Any]], loader: _Loader) -> tuple[dict[str, int], dict[str, Any]]:
    """Send every node and relationship record; returns the counts loaded and the trailer."""
    counts: dict[str, int] = {"nodes": 0, "relationships": 0}
    in_relationships = False
    for record in records:
        kind = record[0]
        if kind == "N" and not in_relationships:
            _, labels, keys, rows = record
            for row in rows:
                decode_row(row, 1)
            loader.add("N", tuple(labels), tuple(keys), rows)
            counts["nodes"] += len(rows)
            for label in labels:
                counts[_counts_key("label", label)] = counts.get(_counts_key("label", label), 0) + len(rows)
        elif kind == "R":
            if not in_relationships:
                loader.flush()  # every node exists before the first relationship is matched
                in_relationships = True
            _, rel_type, keys, rows = record
            for row in rows:
                decode_row(row, 2)
            loader.add("R", (rel_type,), tuple(keys), rows)
            counts["relationships"] += len(rows)
            counts[_counts_key("type", rel_type)] = counts.get(_counts_key("type", rel_type), 0) + len(rows)
        elif kind == "end":
            loader.flush()
            trailer = record[1] if len(record) > 1 and isinstance(record[1], dict) else {}
            for _ in records:
                raise ArchiveError("records after the archive's end record")
            return dict(sorted(counts.items())), trailer
        else:
            raise ArchiveError(f"unexpected {kind!r} record"
                               f"{' after the relationships began' if kind == 'N' else ''}")
    raise ArchiveError("the archive has no end record (truncated)")


def _create_schema(session: neo4j.Session, schema: dict[str, Any], timeout_s: int) -> dict[str, int]:
    """The archive's constraints then indexes, from Neo4j's own create statements; awaited ONLINE."""
    for item in (*schema["constraints"], *schema["indexes"]):
        statement = item.get("createStatement")
        if not statement:
            raise RestoreFailed(f"the archive's schema item {item.get('name')!r} has no createStatement")
        _run(session, statement)
    _run(session, "CALL db.awaitIndexes($timeout)", timeout=timeout_s)
    not_online = [(r["name"], r["state"]) for r in session.run(
        "SHOW INDEXES YIELD name, state WHERE state <> 'ONLINE' RETURN name, state")]
    if not_online:
        raise RestoreFailed(f"indexes not ONLINE after the restore: {not_online}")
    return {"constraints": len(schema["constraints"]), "indexes": len(schema["indexes"])}


def _count_diff(expected: dict[str, int], actual: dict[str, int]) -> str:
    keys = sorted(set(expected) | set(actual))
    diffs = [f"{k}: expected {expected.get(k, 0)}, found {actual.get(k, 0)}"
             for k in keys if expected.get(k, 0) != actual.get(k, 0)]
    return "; ".join(diffs[:20]) + (f"; and {len(diffs) - 20} more" if len(diffs) > 20 else "")


def restore_backup(
    secret: Neo4jSecret,
    chunks: Iterable[bytes],
    manifest: dict[str, Any],
    *,
    replace: bool = False,
    batch_rows: int = RESTORE_BATCH_ROWS,
    index_timeout_s: int = INDEX_TIMEOUT_S,
) -> RestoreResult:
    """Load a `warden-neo4j/1` archive (its bytes, streamed) into the secret's database.

    Refuses (RestoreRefused, nothing touched) an unknown format (manifest or archive header), bytes
    that are not an archive, constraints the server's edition cannot create, and a database that is
    not empty (nodes, constraints or indexes of its own) unless `replace`, which empties it first.
    Checks the loaded counts against the archive's end record and the restored database's counts
    against the manifest's. Raises RestoreFailed (the database may hold a partial restore),
    DatabaseUnavailable (unreachable, credentials refused, transient failure).
    """
    started = time.monotonic()
    manifest_format = manifest.get("format_version")
    if manifest_format is not None and manifest_format not in KNOWN_FORMATS:
        raise RestoreRefused(f"unknown backup format {manifest_format!r} in the manifest; this Warden reads "
                             f"{', '.join(sorted(KNOWN_FORMATS))}")
    records = iter_records(chunks)
    try:
        header = _check_header(next(records))
    except StopIteration:
        raise RestoreRefused("the archive is empty") from None
    except ArchiveError as err:
        raise RestoreRefused(f"not a readable Warden Neo4j archive: {err}") from None
    info = server_info(secret)
    _check_schema_supported(header["schema"], info.edition)

    with _translated(secret, "restoring", RestoreFailed), _session(secret, neo4j.WRITE_ACCESS) as session:
        state = _state(session)
        replaced = any(state.values())
        if replaced:
            if not replace:
                raise RestoreRefused(
                    f"{secret.uri}/{secret.database} is not empty ({state['nodes']} nodes, {state['constraints']} "
                    f"constraints, {state['indexes']} indexes); restore with replace=True to empty it first")
            log.warning("emptying the database before the restore", extra={"database": secret.database, **state})
            _wipe(session, info.version)
        phases = {"prepare_s": round(time.monotonic() - started, 3)}

        _run(session, f"CREATE CONSTRAINT {IMPORT_CONSTRAINT} IF NOT EXISTS "
                      f"FOR (n:{IMPORT_LABEL}) REQUIRE n.{IMPORT_KEY} IS UNIQUE")
        _run(session, "CALL db.awaitIndexes($timeout)", timeout=index_timeout_s)
        loader = _Loader(session, batch_rows)
        clock = time.monotonic()
        try:
            loaded, trailer = _load(records, loader)
        except ArchiveError as err:
            raise RestoreFailed(f"the archive is damaged ({err}); the database holds a partial restore") from None
        phases["load_s"] = round(time.monotonic() - clock, 3)
        archived = trailer.get("counts")
        if isinstance(archived, dict) and archived != loaded:
            raise RestoreFailed(f"the archive's records disagree with its end record: {_count_diff(archived, loaded)}")

        clock = time.monotonic()
        _run(session, f"DROP CONSTRAINT {IMPORT_CONSTRAINT} IF EXISTS")
        _run(session, f"MATCH (n:{IMPORT_LABEL}) {_call(info.version, 'n')} REMOVE n:{IMPORT_LABEL}, n.{IMPORT_KEY} "
                      f"}} IN TRANSACTIONS OF {DELETE_BATCH_ROWS} ROWS")
        phases["cleanup_s"] = round(time.monotonic() - clock, 3)
        clock = time.monotonic()
        schema_counts = _create_schema(session, header["schema"], index_timeout_s)
        phases["schema_s"] = round(time.monotonic() - clock, 3)

    counts = count_objects(secret)
    expected = {str(k): int(v) for k, v in (manifest.get("counts") or loaded).items()}
    if counts != expected:
        raise RestoreFailed(f"the restored database's counts differ from the manifest: {_count_diff(expected, counts)}")
    duration = round(time.monotonic() - started, 3)
    log.info("neo4j restore finished", extra={"database": secret.database, "nodes": counts["nodes"],
                                              "relationships": counts["relationships"], "seconds": duration})
    return RestoreResult(
        counts=counts,
        duration_s=duration,
        details={"format": header["format"], "source_server": header.get("server"), "replaced": replaced,
                 "batches": loader.batches, **schema_counts, **phases},
    )
