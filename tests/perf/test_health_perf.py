"""Benchmark: every health check of a Neo4j target with 1 000 000 relationships finishes well under a
minute, with a schema that makes the schema and integrity checks scan every node and relationship.

At full size (`make bench`, WARDEN_BENCH_SIZE=full):
    WARDEN_BENCH_SIZE=full .venv/bin/pytest tests/perf/test_health_perf.py -q -s
At WARDEN_BENCH_SIZE=tiny (the default, in `make test`) 2 500 nodes: the checks' findings are checked,
not the time limit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local.aws import LocalAws
from tests.perf.bench import FULL, sized
from warden.config.health import HealthThresholds, RequiredSchema
from warden.config.target import Target
from warden.health import check_target, format_text
from warden.models import CheckStatus, HealthReport, HealthStatus

pytestmark = pytest.mark.integration

NODES = sized(250_000, 2_500)
DEGREE = 4  # relationships per node: NODES * DEGREE = 1 000 000
BATCH = min(10_000, NODES)
LIMIT_S = 60.0
ORPHANS = 3


@pytest.fixture(scope="module")
def big_graph(neo4j_driver: Any) -> Iterator[dict[str, float]]:
    """250 000 :HpPerson nodes, each KNOWS its next four in its batch (1 000 000 relationships), an
    index on :HpPerson(id), and three unconnected :HpPerson nodes without a name."""
    started = time.monotonic()
    with neo4j_driver.session() as session:
        for base in range(0, NODES, BATCH):
            session.run(
                "UNWIND range($base, $base + $batch - 1) AS i CREATE (p:HpPerson {id: i, name: 'p' + i}) "
                "WITH collect(p) AS people UNWIND range(0, size(people) - 1) AS i UNWIND range(1, $degree) AS k "
                "WITH people[i] AS a, people[(i + k) % size(people)] AS b CREATE (a)-[:KNOWS]->(b)",
                base=base, batch=BATCH, degree=DEGREE).consume()
        session.run("UNWIND range(1, $n) AS i CREATE (:HpPerson {id: -i})", n=ORPHANS).consume()
        session.run("CREATE INDEX hp_person_id IF NOT EXISTS FOR (p:HpPerson) ON (p.id)").consume()
        session.run("CALL db.awaitIndexes(300)").consume()
    loaded = time.monotonic() - started
    try:
        yield {"load_s": loaded}
    finally:
        with neo4j_driver.session() as session:
            session.run("DROP INDEX hp_person_id IF EXISTS").consume()
            session.run("MATCH (p:HpPerson) CALL (p) { DETACH DELETE p } IN TRANSACTIONS OF 10000 ROWS").consume()


def test_all_checks_on_a_million_relationships_finish_well_under_a_minute(
        aws: LocalAws, neo4j_server: Any, big_graph: dict[str, float]) -> None:
    # Given the graph as a registered target, and a schema that makes every check do its full work
    secret = {"engine": "neo4j", "uri": neo4j_server.uri, "username": neo4j_server.username,
              "password": neo4j_server.password}
    aws.client("secretsmanager").create_secret(Name="warden/perf/graph-big", SecretString=json.dumps(secret))
    target = Target.model_validate({"name": "graph-big", "engine": "neo4j", "secret_name": "warden/perf/graph-big",
                                     "tls": {"required": False}})  # the local server has no TLS
    schema = RequiredSchema(
        labels=["HpPerson"], required_properties={"HpPerson": ["id", "name"]}, indexes=["hp_person_id"],
        must_be_connected=["HpPerson", {"label": "HpPerson", "type": "KNOWS"}],
        relationship_endpoints=[{"type": "KNOWS", "from_label": "HpPerson", "to_label": "HpPerson"}])

    # When every tier runs (twice: cold plans and pages, then warm)
    timings = []
    for _ in range(2):
        started = time.monotonic()
        health = check_target(target, schema=schema, thresholds=HealthThresholds())
        timings.append(time.monotonic() - started)

    # Then it finishes well under a minute and finds exactly the planted problems
    print(f"\nloaded {NODES:,} nodes / {NODES * DEGREE:,} relationships in {big_graph['load_s']:.1f} s; "
          f"all checks: {timings[0]:.2f} s cold, {timings[1]:.2f} s warm")
    print(format_text(HealthReport(stage="perf", status=health.status, targets=[health])))
    checks = {c.name: c for c in health.checks}
    assert not FULL or all(t < LIMIT_S / 2 for t in timings), timings
    assert not any(c.details.get("timed_out") for c in health.checks)
    assert checks["store"].details["relationships"] >= NODES * DEGREE
    assert checks["required_properties"].details["violations"][0]["nodes"] == ORPHANS  # the nameless ones
    assert checks["orphan_nodes"].details["metrics"]["OrphanNodes"] == 2 * ORPHANS  # once per rule
    assert checks["relationship_endpoints"].status is CheckStatus.PASS
    assert checks["required_indexes"].status is CheckStatus.PASS
    assert health.status is HealthStatus.UNHEALTHY  # missing required property: "fail" by default
