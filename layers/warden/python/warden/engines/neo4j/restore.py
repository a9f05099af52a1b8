"""Neo4j restore from a Warden logical export: the archive's header and schema are checked before
anything is touched; nodes then relationships load in batched UNWIND transactions, two at a time;
each node batch returns the new nodes' ids, kept per archived id in memory, and relationships match
their endpoints by id (no temporary label, property or index); constraints and indexes are created
after the data and awaited; counts are validated against the manifest.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import neo4j

from warden.config.credentials import Neo4jSecret
from warden.engines.base import RestoreFailed, RestoreRefused, RestoreResult
from warden.engines.neo4j.backup import Group, _failure
from warden.engines.neo4j.connection import driver, server_info
from warden.engines.neo4j.format import (
    BOLT_STRUCTURES,
    KNOWN_FORMATS,
    ArchiveError,
    decode_row,
    decode_row_bolt,
    iter_records,
)
from warden.engines.neo4j.inventory import _counts_key, _state, _user_schema, count_objects
from warden.engines.neo4j.session import _call, _q, _session, _translated

log = logging.getLogger(__name__)

# Rows per UNWIND transaction. The server's commit work per row grows past a few thousand rows
# (20 000: up to 1.5x the CPU of 5 000 at 3 M entities); below ~2 500 the round trips cost more.
RESTORE_BATCH_ROWS = 5_000


RESTORE_PENDING_FACTOR = 4  # rows waiting in partly filled groups (x batch_rows) before all go


# Write transactions at once: the server commits each on one thread, so two keep two cores busy
# while this process encodes the next batch. Relationship commits lock their endpoints in sorted
# order (no deadlock seen at 2 M relationships); a batch the server rolls back transiently is retried.
RESTORE_SESSIONS = 2


RESTORE_ATTEMPTS = 5  # tries of a batch the server rolled back with a TransientError (deadlock)


DELETE_BATCH_ROWS = 10_000


# A pause between emptying the database and the first node batch. Ids the wipe deleted become free
# for reuse only at the server's next id maintenance (Neo4j 5: about once a second); nodes created
# before it find deleted-but-not-free ids on the freelist, and the whole node section then ran 4-6x
# slower here (1 M nodes: 46-49 s and 51-59 server CPU s, against 6-8 s and 8-10 CPU s after a pause
# of 1, 3, 10, 30 or 90 s, or a restart). Two intervals, so one maintenance run surely falls in it;
# only after a wipe of at least WIPE_SETTLE_NODES nodes, whose slow node section (~40 us a node more)
# would cost about what the pause does.
WIPE_SETTLE_S = 2.0
WIPE_SETTLE_NODES = 50_000


INDEX_TIMEOUT_S = 3600


DENSE_SLACK = 1 << 20  # archived node ids this far past 2x the nodes seen go to a dict, not the array


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
    """Drop every constraint and (non-LOOKUP) index, then delete everything, in batches (after a large
    one the caller waits WIPE_SETTLE_S before it creates anything)."""
    with session.begin_transaction() as tx:
        constraints, indexes = _user_schema(tx)
        tx.commit()
    for name in constraints:
        _run(session, f"DROP CONSTRAINT {_q(name)} IF EXISTS")
    for name in indexes:
        _run(session, f"DROP INDEX {_q(name)} IF EXISTS")
    _run(session, f"MATCH ()-[r]->() {_call(version, 'r')} DELETE r }} IN TRANSACTIONS OF {DELETE_BATCH_ROWS} ROWS")
    _run(session, f"MATCH (n) {_call(version, 'n')} DETACH DELETE n }} IN TRANSACTIONS OF {DELETE_BATCH_ROWS} ROWS")


class Progress:
    """A count that only grows: added to by the restore's threads, read by another (the task's heartbeat)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def add(self, n: int) -> None:
        with self._lock:
            self._value += n

    @property
    def value(self) -> int:
        with self._lock:
            return self._value


# Rows the server has committed for this process's restores (every batch it acknowledged): what a
# watcher on another thread reads to tell a restore that writes from one that waits (warden.restore_progress).
COMMITTED_ROWS = Progress()


class _NodeIds:
    """Each archived node id → the id (`id()`) of the node the restore created for it.

    An array indexed by the archived id: a source's ids are dense (Neo4j reuses freed ones), so 8
    bytes a node. Ids far past twice the nodes seen (a sparse source) go to a dict, and from then on
    the array stays as it is: an id below its length is in it, any other in the dict.
    """

    MISSING = -1  # no node has this archived id: a relationship to it matches nothing, and is counted

    def __init__(self) -> None:
        self._dense = array("q")
        self._sparse: dict[int, int] = {}
        self.count = 0

    def add(self, archived: list[Any], created: list[int]) -> None:
        dense, sparse = self._dense, self._sparse
        self.count += len(archived)
        bound = DENSE_SLACK + 2 * self.count
        for old, new in zip(archived, created, strict=True):
            if type(old) is not int or old < 0:
                raise ArchiveError(f"a node id is not a non-negative integer: {old!r:.50}")
            if old >= len(dense) and not sparse and old < bound:
                dense.frombytes(b"\xff" * (8 * (min(bound, max(old + 1, 2 * len(dense))) - len(dense))))  # -1s
            if old < len(dense):
                if dense[old] != self.MISSING:
                    raise ArchiveError(f"the node id {old} appears twice in the archive")
                dense[old] = new
            elif sparse.setdefault(old, new) != new:
                raise ArchiveError(f"the node id {old} appears twice in the archive")

    def translate(self, rows: list[list[Any]]) -> None:
        """Relationship rows' endpoints (`row[0]`, `row[1]`): archived ids → the new nodes' ids, in place."""
        dense, sparse, size, missing = self._dense, self._sparse, len(self._dense), self.MISSING
        try:
            for row in rows:
                start, end = row[0], row[1]
                row[0] = dense[start] if 0 <= start < size else sparse.get(start, missing)
                row[1] = dense[end] if 0 <= end < size else sparse.get(end, missing)
        except (TypeError, IndexError):
            raise ArchiveError("a relationship row does not start with two node ids") from None


class _Sender:
    """Runs batches on `sessions` sessions at once (threads: the driver waits on its socket without
    the GIL), at most two per session in flight, and takes their results in the calling thread: a node
    batch's new ids go to `node_ids`; a relationship batch must have created a relationship per row.
    A batch's failure is raised by a later `submit` or `drain`."""

    def __init__(self, secret: Neo4jSecret, sessions: int) -> None:
        self.node_ids = _NodeIds()
        self.batches = 0
        self.retries = 0
        self._opened = [_session(secret, neo4j.WRITE_ACCESS) for _ in range(sessions)]
        self._idle: queue.SimpleQueue[neo4j.Session] = queue.SimpleQueue()
        for session in self._opened:
            self._idle.put(session)
        self._pool = ThreadPoolExecutor(max_workers=sessions, thread_name_prefix="warden-restore")
        self._inflight: set[Future[tuple[str, int, Any, int]]] = set()
        self._limit = 2 * sessions

    def submit(self, kind: str, query: str, rows: list[list[Any]]) -> None:
        while len(self._inflight) >= self._limit:
            self._collect(FIRST_COMPLETED)
        self._inflight.add(self._pool.submit(self._execute, kind, query, rows))
        self.batches += 1

    def drain(self) -> None:
        """Wait for every batch sent (after the node section's: every new node's id is known)."""
        if self._inflight:
            self._collect(ALL_COMPLETED)

    def close(self) -> None:
        """Batches not started are dropped, running ones finish (a failed restore leaves a partial one)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        for session in self._opened:
            session.close()

    def _collect(self, when: str) -> None:
        done, self._inflight = wait(self._inflight, return_when=when)
        for future in done:
            kind, sent, record, attempts = future.result()
            self.retries += attempts - 1
            if kind == "N":
                self.node_ids.add(record[0], record[1])
            elif record[0] != sent:
                raise ArchiveError(f"{sent - record[0]} of {sent} relationships in a batch have an endpoint "
                                   f"that is not among the archive's nodes")

    def _execute(self, kind: str, query: str, rows: list[list[Any]]) -> tuple[str, int, Any, int]:
        session = self._idle.get()
        try:
            attempt = 1
            while True:
                try:
                    record = session.run(query, {"rows": rows}).single(strict=True)
                    COMMITTED_ROWS.add(len(rows))
                    return kind, len(rows), record, attempt
                except neo4j.exceptions.TransientError:  # rolled back (a deadlock): nothing of it was written
                    if attempt >= RESTORE_ATTEMPTS:
                        raise
                    time.sleep(0.1 * attempt)
                    attempt += 1
        finally:
            self._idle.put(session)


class _Loader:
    """Gathers rows per (labels, keys) / (type, keys) and sends them in UNWIND batches of `batch_rows`.

    Full groups go with their keys in the query text (values positional: no key strings per row).
    When too many rows wait, or a section ends, what is left goes too; groups too small to be worth a
    query of their own (a graph with many optional properties has many key sets) are merged per label
    set / type and sent with property maps instead.
    """

    def __init__(self, sender: _Sender, batch_rows: int) -> None:
        self.sender = sender
        self.batch_rows = batch_rows
        self.small_rows = max(1, batch_rows // 10)
        self.groups: dict[Group, list[list[Any]]] = {}
        self.pending = 0
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
                self.sender.submit(kind, query, rows[i:i + self.batch_rows])

    def _send(self, key: Group, *, full_only: bool) -> None:
        rows = self.groups[key]
        query = self._query(key, with_map=False)
        while len(rows) >= self.batch_rows or (rows and not full_only):
            batch, rows = rows[:self.batch_rows], rows[self.batch_rows:]
            self.sender.submit(key[0], query, batch)
            self.pending -= len(batch)
        if rows:
            self.groups[key] = rows
        else:
            del self.groups[key]

    def _query(self, key: Group, *, with_map: bool) -> str:
        query = self.queries.get((key, with_map))
        if query is None:
            query = self.queries[(key, with_map)] = _load_query(*key, with_map=with_map)
        return query


def _load_query(kind: str, names: tuple[str, ...], keys: tuple[str, ...], *, with_map: bool = False) -> str:
    """The UNWIND statement for a group: rows `[id, *values]` / `[start, end, *values]`, or with
    `with_map` rows `[id, {props}]` / `[start, end, {props}]`. A node batch returns the archived ids
    and the new nodes' ids (in the same order); a relationship batch, whose endpoints are new ids
    already (`id()`: a seek, no index), how many relationships it created."""
    if kind == "N":
        labels = "".join(f":{_q(label)}" for label in names)
        if with_map:
            create = f"CREATE (n{labels}) SET n += row[1]"
        else:
            props = ", ".join(f"{_q(k)}: row[{i + 1}]" for i, k in enumerate(keys))
            create = f"CREATE (n{labels}{f' {{{props}}}' if props else ''})"
        return f"UNWIND $rows AS row {create} RETURN collect(row[0]), collect(id(n))"
    match = "UNWIND $rows AS row MATCH (a) WHERE id(a) = row[0] MATCH (b) WHERE id(b) = row[1] "
    if with_map:
        create = f"CREATE (a)-[r:{_q(names[0])}]->(b) SET r += row[2]"
    else:
        props = ", ".join(f"{_q(k)}: row[{i + 2}]" for i, k in enumerate(keys))
        create = f"CREATE (a)-[:{_q(names[0])}{f' {{{props}}}' if props else ''}]->(b)"
    return f"{match}{create} RETURN count(*)"


Decoder = Callable[[list[Any], int], list[Any]]


def _decoder(secret: Neo4jSecret) -> Decoder:
    """Rows straight into Bolt structures over Bolt 5+ (every Neo4j 5), else into driver values."""
    if BOLT_STRUCTURES and tuple(driver(secret).get_server_info().protocol_version) >= (5, 0):
        return decode_row_bolt
    return decode_row


def _load(records: Iterator[list[Any]], loader: _Loader, decode: Decoder) -> tuple[dict[str, int], dict[str, Any]]:
    """Send every node and relationship record; returns the counts loaded and the trailer."""
    counts: dict[str, int] = {"nodes": 0, "relationships": 0}
    in_relationships = False
    for record in records:
        kind = record[0]
        if kind == "N" and not in_relationships:
            _, labels, keys, rows = record
            for row in rows:
                decode(row, 1)
            loader.add("N", tuple(labels), tuple(keys), rows)
            counts["nodes"] += len(rows)
            for label in labels:
                counts[_counts_key("label", label)] = counts.get(_counts_key("label", label), 0) + len(rows)
        elif kind == "R":
            if not in_relationships:
                loader.flush()
                loader.sender.drain()  # every node exists, its new id known, before the first relationship
                in_relationships = True
            _, rel_type, keys, rows = record
            loader.sender.node_ids.translate(rows)
            for row in rows:
                decode(row, 2)
            loader.add("R", (rel_type,), tuple(keys), rows)
            counts["relationships"] += len(rows)
            counts[_counts_key("type", rel_type)] = counts.get(_counts_key("type", rel_type), 0) + len(rows)
        elif kind == "end":
            loader.flush()
            loader.sender.drain()
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
    sessions: int = RESTORE_SESSIONS,
    index_timeout_s: int = INDEX_TIMEOUT_S,
) -> RestoreResult:
    """Load a `warden-neo4j/1` archive (its bytes, streamed) into the secret's database.

    Refuses (RestoreRefused, nothing touched) an unknown format (manifest or archive header), bytes
    that are not an archive, constraints the server's edition cannot create, and a database that is
    not empty (nodes, constraints or indexes of its own) unless `replace`, which empties it first.
    Checks the loaded counts against the archive's end record and the restored database's counts
    against the manifest's. Writes `batch_rows` rows a transaction, `sessions` transactions at once.
    Raises RestoreFailed (the database may hold a partial restore), DatabaseUnavailable (unreachable,
    credentials refused, transient failure).
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
            if state["nodes"] >= WIPE_SETTLE_NODES:
                time.sleep(WIPE_SETTLE_S)
        phases = {"prepare_s": round(time.monotonic() - started, 3)}

        decode = _decoder(secret)
        sender = _Sender(secret, sessions)
        clock = time.monotonic()
        try:
            loaded, trailer = _load(records, _Loader(sender, batch_rows), decode)
        except ArchiveError as err:
            raise RestoreFailed(f"the archive is damaged ({err}); the database holds a partial restore") from None
        finally:
            sender.close()
        phases["load_s"] = round(time.monotonic() - clock, 3)
        archived = trailer.get("counts")
        if isinstance(archived, dict) and archived != loaded:
            raise RestoreFailed(f"the archive's records disagree with its end record: {_count_diff(archived, loaded)}")

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
                 "batches": sender.batches, "retries": sender.retries, **schema_counts, **phases},
    )
