"""What a Neo4j database holds: counts per label and relationship type (recorded in the manifest,
compared after a restore), its user schema, and whether it is empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import neo4j

from warden.config.credentials import Neo4jSecret
from warden.engines.neo4j.session import _q, _session, _single, _translated
from warden.errors import DatabaseError


def _totals(session: neo4j.Session) -> tuple[dict[str, int], frozenset[str]]:
    """Total nodes and relationships (count store: constant time) and the bookmark after reading them."""
    with session.begin_transaction() as tx:
        totals = {"nodes": int(_single(tx, "MATCH (n) RETURN count(n)")),
                  "relationships": int(_single(tx, "MATCH ()-[r]->() RETURN count(r)"))}
        tx.commit()
    return totals, frozenset(session.last_bookmarks().raw_values)


def _counts_key(kind: str, name: str) -> str:
    return f"{kind}:{name}"


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


def compare_indexes(secret: Neo4jSecret, manifest: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(errors, warnings): each index the manifest records (with its state in the source) against
    this database's. Manifests written before index states were recorded count them as ONLINE."""
    with _translated(secret, "reading index states", DatabaseError), \
            _session(secret, neo4j.READ_ACCESS) as session:
        here = {str(r["name"]): str(r["state"]) for r in session.run(
            "SHOW INDEXES YIELD name, state, type WHERE type <> 'LOOKUP' RETURN name, state")}
    errors, warnings = [], []
    for index in (manifest.get("schema") or {}).get("indexes") or []:
        name, source = str(index.get("name")), str(index.get("state") or "ONLINE")
        state = here.get(name)
        if state is None:
            errors.append(f"index {name}: {source} in the source, missing here")
        elif state == "FAILED" and source == "FAILED":
            warnings.append(f"index {name} is FAILED here as in the source")
        elif state != "ONLINE" and source == "ONLINE":
            errors.append(f"index {name}: ONLINE in the source, {state} here")
    return errors, warnings


def is_empty(secret: Neo4jSecret) -> bool:
    """True when the database has no node (so no relationship) and no constraint or index of its
    own (the two built-in LOOKUP indexes do not count)."""
    with _translated(secret, "checking whether the database is empty", DatabaseError), \
            _session(secret, neo4j.READ_ACCESS) as session:
        return not any(_state(session).values())
