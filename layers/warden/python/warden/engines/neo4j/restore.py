"""Neo4j restore from a Warden logical export: the archive's header and schema are checked before
anything is touched; nodes and relationships load in batched UNWIND transactions keyed by a
temporary import id; constraints and indexes are created after the data and awaited; counts are
validated against the manifest.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import neo4j

from warden.config.credentials import Neo4jSecret
from warden.engines.base import RestoreFailed, RestoreRefused, RestoreResult
from warden.engines.neo4j.backup import Group, _failure
from warden.engines.neo4j.connection import server_info
from warden.engines.neo4j.format import (
    KNOWN_FORMATS,
    ArchiveError,
    decode_row,
    iter_records,
)
from warden.engines.neo4j.inventory import _counts_key, _state, _user_schema, count_objects
from warden.engines.neo4j.session import _call, _q, _session, _translated

log = logging.getLogger(__name__)

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


def _create_schema(session: neo4j.Session, schema: dict[str, Any], timeout_s: int) -> dict[str, Any]:
    """The archive's constraints then indexes, from Neo4j's own create statements; awaited ONLINE."""
    for item in (*schema["constraints"], *schema["indexes"]):
        statement = item.get("createStatement")
        if not statement:
            raise RestoreFailed(f"the archive's schema item {item.get('name')!r} has no createStatement")
        _run(session, statement)
    states = _await_indexes(session, timeout_s)
    source = {str(i.get("name")): str(i.get("state") or "ONLINE") for i in schema["indexes"]}
    warnings, not_online = [], []
    for name, (state, failure) in sorted(states.items()):
        if state == "ONLINE":
            continue
        if state == "FAILED" and source.get(name) == "FAILED":  # the source's data fails it the same way
            warnings.append(f"index {name} FAILED again, as it is FAILED in the source: {failure}")
        else:
            not_online.append((name, state) if not failure else (name, state, failure))
    if not_online:
        raise RestoreFailed(f"indexes not ONLINE after the restore: {not_online}")
    for warning in warnings:
        log.warning("neo4j restore warning", extra={"warning": warning})
    return {"constraints": len(schema["constraints"]), "indexes": len(schema["indexes"]), "warnings": warnings,
            "index_states": {name: state for name, (state, _) in sorted(states.items())}}


def _await_indexes(session: neo4j.Session, timeout_s: int) -> dict[str, tuple[str, str]]:
    """Wait until no index is POPULATING (a FAILED one ends `db.awaitIndexes` early: the others are
    still awaited); {name: (state, first line of its failure message)} of the user's indexes."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(neo4j.exceptions.ClientError):  # an index entered FAILED: its state says so
            _run(session, "CALL db.awaitIndexes($timeout)", timeout=max(int(deadline - time.monotonic()), 1))
        states = {str(r["name"]): (str(r["state"]), _failure(r["failureMessage"])) for r in session.run(
            "SHOW INDEXES YIELD name, state, type, failureMessage WHERE type <> 'LOOKUP' "
            "RETURN name, state, failureMessage")}
        if all(state != "POPULATING" for state, _ in states.values()) or time.monotonic() >= deadline:
            return states
        time.sleep(0.2)



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
