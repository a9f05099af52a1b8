"""Neo4j health checks: schema, integrity and metrics tiers (see warden.health for how tiers run).

Everything works on Community 5.26 without plugins:
- transactions: `SHOW TRANSACTIONS`, Warden's own left out (its connections' user agent is
  `warden`, and its own queries carry `{"app": "warden-health"}` transaction metadata);
- heap: the JVM's platform beans through `dbms.queryJmx` (Neo4j 5 has no `org.neo4j:*` beans left);
- index states: `SHOW INDEXES` (state, populationPercent, failureMessage);
- store: node and relationship counts from the count store, the database's status from
  `SHOW DATABASES`; the store's size in bytes only when APOC's `apoc.monitor.store` is installed:
  Cypher on Community has no other way to it.

The monitoring user needs to see every transaction and call `dbms.queryJmx`: on Enterprise an admin,
or a role with SHOW TRANSACTION and EXECUTE ADMIN PROCEDURE privileges.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import neo4j
from neo4j.exceptions import DriverError, Neo4jError, ServiceUnavailable, SessionExpired

from warden.checks import Check, CheckGroup, CheckTimedOut, Outcome, Tier
from warden.config.credentials import Neo4jSecret
from warden.config.health import HealthThresholds, RequiredSchema
from warden.engines.neo4j.connection import driver
from warden.errors import DatabaseError, DatabaseUnavailable
from warden.models import CheckStatus

TX_METADATA = {"app": "warden-health"}
WARDEN_AGENT = "warden"
QUERY_TEXT = 200  # characters of a foreign query quoted in a report


def quote(name: str) -> str:
    """A label, type or property name as a Cypher identifier (backticks, inner ones doubled)."""
    return "`" + name.replace("`", "``") + "`"


class Neo4jSession:
    """One session of a check group: queries with the time left, errors as Warden's own."""

    def __init__(self, session: neo4j.Session, database: str) -> None:
        self.session = session
        self.database = database

    def rows(self, text: str, left: float, **params: Any) -> list[dict[str, Any]]:
        query = neo4j.Query(text, timeout=max(0.1, left), metadata=TX_METADATA)
        try:
            return [record.data() for record in self.session.run(query, params)]
        except Neo4jError as err:
            code = err.code or ""
            if "TransactionTimedOut" in code:
                raise CheckTimedOut(f"Neo4j cancelled the query at its time limit ({left:.3g} s)") from None
            message = (err.message or "").strip().splitlines()[0] if err.message else ""
            raise DatabaseError(f"Neo4j query failed: {code}: {message[:300]}") from None
        except (ServiceUnavailable, SessionExpired, OSError) as err:
            raise DatabaseUnavailable(f"Neo4j unavailable: {err}") from None
        except DriverError as err:
            raise DatabaseError(f"Neo4j driver error: {type(err).__name__}: {err}") from None


def _session_factory(secret: Neo4jSecret, connect_timeout: float) -> Any:
    @contextmanager
    def open_session(limit: float) -> Iterator[Neo4jSession]:
        # Notifications off: "label does not exist" is an answer here, not something to log.
        session = driver(secret, timeout=connect_timeout).session(
            database=secret.database, default_access_mode=neo4j.READ_ACCESS,
            notifications_min_severity=neo4j.NotificationMinimumSeverity.OFF)
        try:
            yield Neo4jSession(session, secret.database)
        finally:
            session.close()

    return open_session


def tiers(secret: Neo4jSecret, *, thresholds: HealthThresholds, schema: RequiredSchema) -> list[Tier]:
    """Schema, integrity and metrics tiers for one Neo4j target; each check in its own session."""
    opener = _session_factory(secret, thresholds.connectivity_timeout_s)
    t, s = thresholds, schema

    def single(name: str, fn: Any) -> CheckGroup:
        return CheckGroup((Check(name, lambda session, left: fn(session, left, t, s)),), opener)

    return [
        Tier("schema", t.schema_timeout_s, (
            single("required_labels", required_labels),
            single("required_properties", required_properties),
            single("required_indexes", required_indexes),
            single("required_constraints", required_constraints),
        )),
        Tier("integrity", t.integrity_timeout_s, (
            single("orphan_nodes", orphan_nodes),
            single("relationship_endpoints", relationship_endpoints),
        )),
        Tier("metrics", t.metrics_timeout_s, (
            single("transactions", transactions),
            single("heap", heap),
            single("index_population", index_population),
            single("store", store),
        )),
    ]


def _none(what: str) -> Outcome:
    return CheckStatus.PASS, f"no {what} required", {}


# --- schema ------------------------------------------------------------------------------------


def required_labels(db: Neo4jSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    if not s.labels:
        return _none("labels")
    present = {r["label"] for r in db.rows("CALL db.labels() YIELD label RETURN label", left)}
    missing = [label for label in s.labels if label not in present]
    if missing:
        return CheckStatus(t.schema_violation), f"no nodes with required label(s) {', '.join(missing)}", {
            "missing": missing}
    return CheckStatus.PASS, f"all {len(s.labels)} required labels have nodes", {}


def required_properties(db: Neo4jSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    if not s.required_properties:
        return _none("properties")
    violations = []
    for label, props in s.required_properties.items():
        for prop in props:
            row = db.rows(
                f"MATCH (n:{quote(label)}) WHERE n.{quote(prop)} IS NULL WITH n LIMIT $cap "
                "RETURN count(n) AS missing, collect(elementId(n))[..$sample] AS sample",
                left, cap=t.violation_count_limit, sample=t.sample_size)[0]
            if row["missing"]:
                violations.append({"label": label, "property": prop, "nodes": row["missing"],
                                   "capped": row["missing"] >= t.violation_count_limit, "sample": row["sample"]})
    if violations:
        text = "; ".join(f"{v['nodes']}{'+' if v['capped'] else ''} :{v['label']} without {v['property']}"
                         for v in violations)
        return CheckStatus(t.schema_violation), f"required properties missing: {text}", {"violations": violations}
    count = sum(len(p) for p in s.required_properties.values())
    return CheckStatus.PASS, f"all {count} required properties present", {}


def _index_states(db: Neo4jSession, left: float) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in db.rows(
        "SHOW INDEXES YIELD name, type, state, populationPercent, failureMessage, labelsOrTypes, properties "
        "RETURN name, type, state, populationPercent, failureMessage, labelsOrTypes, properties", left)}


def _judge_required(kind: str, wanted: list[str], found: dict[str, str | None], t: HealthThresholds) -> Outcome:
    """`found`: required name -> state of its index (None: the object itself is missing)."""
    missing = [n for n in wanted if n not in found]
    failed = [n for n in wanted if found.get(n) == "FAILED"]
    populating = [n for n in wanted if n in found and found[n] not in ("ONLINE", "FAILED")]
    details: dict[str, object] = {"missing": missing, "failed": failed, "not_online": populating}
    problems = ([f"missing: {', '.join(missing)}"] if missing else []) + (
        [f"FAILED: {', '.join(failed)}"] if failed else [])
    if problems:
        return CheckStatus(t.schema_violation), f"required {kind} {'; '.join(problems)}", details
    if populating:
        return CheckStatus.WARN, f"required {kind} not online yet: {', '.join(populating)}", details
    return CheckStatus.PASS, f"all {len(wanted)} required {kind} present and ONLINE", {}


def required_indexes(db: Neo4jSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    if not s.indexes:
        return _none("indexes")
    states = _index_states(db, left)
    return _judge_required("indexes", s.indexes, {n: states[n]["state"] for n in s.indexes if n in states}, t)


def required_constraints(db: Neo4jSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    if not s.constraints:
        return _none("constraints")
    constraints = {r["name"]: r for r in db.rows(
        "SHOW CONSTRAINTS YIELD name, type, ownedIndex RETURN name, type, ownedIndex", left)}
    states = _index_states(db, left) if any(c.get("ownedIndex") for c in constraints.values()) else {}
    found: dict[str, str | None] = {}
    for name in s.constraints:
        if name in constraints:
            owned = constraints[name].get("ownedIndex")
            # Existence and type constraints own no index: present is all they can be.
            found[name] = states.get(owned, {}).get("state", "MISSING INDEX") if owned else "ONLINE"
    return _judge_required("constraints", s.constraints, found, t)


# --- integrity ---------------------------------------------------------------------------------


def orphan_nodes(db: Neo4jSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    if not s.must_be_connected:
        return _none("connections")
    findings, total = [], 0
    for rule in s.must_be_connected:
        rel = f"[:{quote(rule.type)}]" if rule.type else "[]"
        row = db.rows(
            f"MATCH (n:{quote(rule.label)}) WHERE NOT EXISTS {{ (n)-{rel}-() }} WITH n LIMIT $cap "
            "RETURN count(n) AS orphans, collect(elementId(n))[..$sample] AS sample",
            left, cap=t.violation_count_limit, sample=t.sample_size)[0]
        total += row["orphans"]
        if row["orphans"]:
            findings.append({"label": rule.label, "type": rule.type, "nodes": row["orphans"],
                             "capped": row["orphans"] >= t.violation_count_limit, "sample": row["sample"]})
    details: dict[str, object] = {"findings": findings, "metrics": {"OrphanNodes": total}}
    if findings:
        text = "; ".join(f"{f['nodes']}{'+' if f['capped'] else ''} :{f['label']} without "
                         f"{':' + f['type'] + ' ' if f['type'] else ''}relationships" for f in findings)
        return CheckStatus(t.orphan_violation), f"orphan nodes: {text}", details
    return CheckStatus.PASS, f"no orphans among {len(s.must_be_connected)} connected label rule(s)", details


def relationship_endpoints(db: Neo4jSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    if not s.relationship_endpoints:
        return _none("endpoint rules")
    findings, total = [], 0
    for rule in s.relationship_endpoints:
        wrong = []
        if rule.from_label:
            wrong.append(f"NOT a:{quote(rule.from_label)}")
        if rule.to_label:
            wrong.append(f"NOT b:{quote(rule.to_label)}")
        row = db.rows(
            f"MATCH (a)-[r:{quote(rule.type)}]->(b) WHERE {' OR '.join(wrong)} WITH r LIMIT $cap "
            "RETURN count(r) AS wrong, collect(elementId(r))[..$sample] AS sample",
            left, cap=t.violation_count_limit, sample=t.sample_size)[0]
        total += row["wrong"]
        if row["wrong"]:
            findings.append({"type": rule.type, "from_label": rule.from_label, "to_label": rule.to_label,
                             "relationships": row["wrong"], "capped": row["wrong"] >= t.violation_count_limit,
                             "sample": row["sample"]})
    details: dict[str, object] = {"findings": findings, "metrics": {"EndpointViolations": total}}
    if findings:
        text = "; ".join(
            f"{f['relationships']}{'+' if f['capped'] else ''} :{f['type']} not "
            f"({f['from_label'] or ''})->({f['to_label'] or ''})" for f in findings)
        return CheckStatus(t.orphan_violation), f"relationship endpoints wrong: {text}", details
    return CheckStatus.PASS, f"all {len(s.relationship_endpoints)} endpoint rule(s) hold", details


# --- metrics -----------------------------------------------------------------------------------


def _seconds(duration: Any) -> float:
    if duration is None:
        return 0.0
    if isinstance(duration, neo4j.time.Duration):
        return duration.months * 30 * 86400 + duration.days * 86400 + duration.seconds + duration.nanoseconds / 1e9
    return float(duration)


def transactions(db: Neo4jSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """Open transactions but Warden's own; the oldest against long_tx_warn_s / long_tx_fail_s."""
    own = {r["connectionId"] for r in db.rows(
        "CALL dbms.listConnections() YIELD connectionId, userAgent "
        "WHERE userAgent STARTS WITH $agent RETURN connectionId", left, agent=WARDEN_AGENT)}
    rows = db.rows(
        "SHOW TRANSACTIONS YIELD database, transactionId, connectionId, username, clientAddress, status, "
        "metaData, currentQuery, elapsedTime "
        "RETURN database, transactionId, connectionId, username, clientAddress, status, metaData, "
        "currentQuery, elapsedTime", left)
    foreign = sorted(
        ({"id": r["transactionId"], "database": r["database"], "user": r["username"],
          "client": r["clientAddress"], "status": r["status"], "seconds": round(_seconds(r["elapsedTime"]), 1),
          "query": (r["currentQuery"] or "")[:QUERY_TEXT], "metadata": r["metaData"] or {}}
         for r in rows
         if r["connectionId"] not in own and not str((r["metaData"] or {}).get("app", "")).startswith(WARDEN_AGENT)),
        key=lambda x: -x["seconds"])
    longest = foreign[0]["seconds"] if foreign else 0.0
    long = [x for x in foreign if x["seconds"] >= t.long_tx_warn_s]
    details: dict[str, object] = {
        "active": len(foreign), "long": long[: t.sample_size] if long else foreign[: t.sample_size],
        "warn_s": t.long_tx_warn_s, "fail_s": t.long_tx_fail_s,
        "metrics": {"ActiveTransactions": len(foreign), "LongestTransactionSeconds": longest}}
    if longest >= t.long_tx_fail_s:
        status = CheckStatus.FAIL
    elif longest >= t.long_tx_warn_s:
        status = CheckStatus.WARN
    else:
        return CheckStatus.PASS, f"{len(foreign)} open transaction(s), longest {longest:.0f} s", details
    first = long[0]
    return status, (f"{len(long)} transaction(s) open for more than {t.long_tx_warn_s:g} s; longest "
                    f"{first['id']} ({first['user']}@{first['client']}) {first['seconds']:.0f} s"), details


def heap(db: Neo4jSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """Heap in use after the last garbage collection (the live set), against the maximum heap: the
    instantaneous figure includes garbage and would raise false alarms."""
    rows = db.rows(
        "CALL dbms.queryJmx('java.lang:type=Memory') YIELD attributes "
        "RETURN 'heap' AS name, 'HEAP' AS type, attributes.HeapMemoryUsage.value.properties AS usage "
        "UNION ALL "
        "CALL dbms.queryJmx('java.lang:type=MemoryPool,*') YIELD name, attributes "
        "RETURN name, attributes.Type.value AS type, attributes.CollectionUsage.value.properties AS usage", left)
    usage = next((r["usage"] for r in rows if r["name"] == "heap"), None)
    if not usage:
        return CheckStatus.WARN, "the JVM reported no heap usage", {}
    maximum = usage["max"] if usage.get("max", -1) > 0 else usage["committed"]
    old = [r for r in rows if r["type"] == "HEAP" and r["usage"] and any(
        word in r["name"] for word in ("Old Gen", "Tenured", "Old Generation", "ZHeap"))]
    live = sum(r["usage"]["used"] for r in old) if old else 0
    # Before the first old-generation collection its after-GC figure is 0: use the heap in use then.
    basis = "old generation after last GC" if live > 0 else "heap in use (no old-generation GC yet)"
    live = live if live > 0 else usage["used"]
    pct = round(100.0 * live / maximum, 1)
    details: dict[str, object] = {
        "max_bytes": maximum, "used_bytes": usage["used"], "committed_bytes": usage["committed"],
        "live_bytes": live, "basis": basis,
        "used_now_pct": round(100.0 * usage["used"] / maximum, 1),
        "warn_pct": t.heap_warn_pct, "fail_pct": t.heap_fail_pct, "metrics": {"HeapUsedPct": pct}}
    status = CheckStatus.PASS
    if pct >= t.heap_fail_pct:
        status = CheckStatus.FAIL
    elif pct >= t.heap_warn_pct:
        status = CheckStatus.WARN
    return status, f"heap {pct:.0f} % of {maximum / 2**20:.0f} MiB in use after GC", details


def index_population(db: Neo4jSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """Every index ONLINE: POPULATING warns (with its progress), FAILED fails."""
    return judge_index_states(_index_states(db, left))


def judge_index_states(states: dict[str, dict[str, Any]]) -> Outcome:
    """The index_population verdict from `SHOW INDEXES` rows (name -> row), kept pure for tests:
    a POPULATING index cannot be held in that state on demand."""
    failed = [{"name": n, "type": r["type"], "failure": (r["failureMessage"] or "").splitlines()[0][:300]}
              for n, r in states.items() if r["state"] == "FAILED"]
    populating = [{"name": n, "type": r["type"], "state": r["state"], "percent": r["populationPercent"]}
                  for n, r in states.items() if r["state"] not in ("ONLINE", "FAILED")]
    details: dict[str, object] = {"indexes": len(states), "failed": failed, "populating": populating,
                                  "metrics": {"IndexesNotOnline": len(failed) + len(populating)}}
    if failed:
        text = ", ".join(f"{f['name']} ({f['failure']})" for f in failed)
        return CheckStatus.FAIL, f"FAILED index(es): {text}", details
    if populating:
        return CheckStatus.WARN, "index(es) not online yet: " + ", ".join(
            f"{p['name']} {p['state']} {p['percent'] or 0:.0f} %" for p in populating), details
    return CheckStatus.PASS, f"all {len(states)} indexes ONLINE", details


def store(db: Neo4jSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """The database's status and size: counts from the count store (constant time), bytes when APOC
    can tell."""
    status_row = db.rows(
        "SHOW DATABASES YIELD name, currentStatus, statusMessage, store, role WHERE name = $db "
        "RETURN currentStatus, statusMessage, store, role", left, db=db.database)
    nodes = db.rows("MATCH (n) RETURN count(n) AS c", left)[0]["c"]
    relationships = db.rows("MATCH ()-[r]->() RETURN count(r) AS c", left)[0]["c"]
    metrics: dict[str, object] = {"NodeCount": nodes, "RelationshipCount": relationships}
    details: dict[str, object] = {"nodes": nodes, "relationships": relationships, "metrics": metrics}
    if status_row:
        details.update({"status": status_row[0]["currentStatus"], "format": status_row[0]["store"],
                        "role": status_row[0]["role"]})
    size = None
    if db.rows("SHOW PROCEDURES YIELD name WHERE name = 'apoc.monitor.store' RETURN name", left):
        size = db.rows("CALL apoc.monitor.store() YIELD totalStoreSize RETURN totalStoreSize", left)[0][
            "totalStoreSize"]
        metrics["DatabaseSizeBytes"] = size
    details["size_bytes"] = size
    sized = f"{size / 2**20:.1f} MiB" if size is not None else "size unknown (needs APOC's apoc.monitor.store)"
    message = f"{nodes:,} nodes, {relationships:,} relationships, {sized}"
    if status_row and status_row[0]["currentStatus"] != "online":
        return CheckStatus.FAIL, f"database {db.database} is {status_row[0]['currentStatus']}: " \
                                 f"{status_row[0]['statusMessage']}", details
    if size is not None and t.size_fail_bytes is not None and size >= t.size_fail_bytes:
        return CheckStatus.FAIL, f"store too large: {message}", details
    if size is not None and t.size_warn_bytes is not None and size >= t.size_warn_bytes:
        return CheckStatus.WARN, f"store large: {message}", details
    return CheckStatus.PASS, message, details
