"""Neo4j recovery through the synthesized state machine: staging on a second Neo4j (Community has
one database per server), validation against the manifest, swap by the active-endpoint pointer,
in-place with a safety backup."""

from __future__ import annotations

import json
from typing import Any

import neo4j
import pytest

from local.aws import LocalAws
from local.deploy import Deployment
from local.runtime import neo4j_secret
from tests.conftest import STAGE, invoke
from tests.integration.test_recovery import start, wait
from warden.models import BackupStatus
from warden.settings import Settings
from warden.stores.catalog import Catalog
from warden.stores.recovery_state import StateStore

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(deployed: Deployment) -> Settings:
    return deployed.settings("recovery")


def counts(endpoint: Any) -> tuple[int, int]:
    with neo4j.GraphDatabase.driver(endpoint.uri, auth=(endpoint.username, endpoint.password)) as driver:
        nodes = driver.execute_query("MATCH (n) RETURN count(n) AS c").records[0]["c"]
        rels = driver.execute_query("MATCH ()-[r]->() RETURN count(r) AS c").records[0]["c"]
    return nodes, rels


def write(endpoint: Any, query: str) -> None:
    with neo4j.GraphDatabase.driver(endpoint.uri, auth=(endpoint.username, endpoint.password)) as driver:
        driver.execute_query(query)


@pytest.fixture
def graph_backup(aws: LocalAws, deployed: Deployment, neo4j_server: Any, neo4j_staging: Any) -> dict[str, Any]:
    """Production: 300 :Account nodes in a chain; backed up and verified; the staging secret registered."""
    write(neo4j_server, "MATCH (n) DETACH DELETE n")
    write(neo4j_server, "UNWIND range(1, 300) AS i CREATE (:Account {id: i, opened: date('2020-01-01')})")
    write(neo4j_server, "MATCH (a:Account), (b:Account) WHERE b.id = a.id + 1 CREATE (a)-[:NEXT {w: a.id}]->(b)")
    aws.client("secretsmanager").create_secret(Name=f"warden/{STAGE}/graph-local-staging",
                                               SecretString=json.dumps(neo4j_secret(neo4j_staging)))
    record, error = invoke(aws, deployed.function_named("backup"), {"target": "graph-local"})
    assert error is None, record
    verified, error = invoke(aws, deployed.function_named("verify"),
                             {"target": "graph-local", "backup_id": record["backup_id"]})
    assert error is None and verified["status"] == "VERIFIED", verified
    return verified


def test_neo4j_drill_restores_into_the_staging_server_and_validates(
        aws: LocalAws, deployed: Deployment, graph_backup: dict, settings: Settings,
        neo4j_server: Any, neo4j_staging: Any) -> None:
    result = wait(aws, start(aws, deployed, {"target": "graph-local", "promotion": "none"}), timeout=180)
    assert result["status"] == "SUCCEEDED", result
    state = StateStore(settings.state_table).get("graph-local")
    assert state.status.value == "RECOVERY_SUCCESS"
    assert counts(neo4j_staging) == counts(neo4j_server) == (300, 299)
    record = Catalog(settings.catalog_table).get("graph-local", graph_backup["backup_id"])
    assert record.last_drill and record.last_drill["rto_s"] == state.rto_s
    print(f"RTO drill (Neo4j, 300 nodes / 299 relationships): {state.rto_s:.2f} s")


def test_neo4j_swap_moves_the_active_endpoint_pointer(aws: LocalAws, deployed: Deployment, graph_backup: dict,
                                                      settings: Settings) -> None:
    result = wait(aws, start(aws, deployed, {"target": "graph-local", "promotion": "swap"}), timeout=180)
    assert result["status"] == "SUCCEEDED", result
    pointer = aws.client("ssm").get_parameter(Name=f"/warden/{STAGE}/active/graph-local")["Parameter"]["Value"]
    assert json.loads(pointer) == {"secret_name": f"warden/{STAGE}/graph-local-staging"}
    state = StateStore(settings.state_table).get("graph-local")
    assert state.status.value == "PROMOTED"
    assert json.loads(state.previous_active or "{}") == {"secret_name": f"warden/{STAGE}/graph-local"}
    print(f"RTO swap (Neo4j, 300 nodes): {state.rto_s:.2f} s")


def test_neo4j_in_place_takes_a_safety_backup_then_restores_production(
        aws: LocalAws, deployed: Deployment, graph_backup: dict, settings: Settings, neo4j_server: Any) -> None:
    write(neo4j_server, "UNWIND range(1, 25) AS i CREATE (:Stray {i: i})")
    result = wait(aws, start(aws, deployed, {"target": "graph-local", "promotion": "in-place"}), timeout=180)
    assert result["status"] == "SUCCEEDED", result
    state = StateStore(settings.state_table).get("graph-local")
    assert state.status.value == "PROMOTED"
    assert counts(neo4j_server) == (300, 299)
    safety = Catalog(settings.catalog_table).get("graph-local", state.safety_backup_id)
    assert safety.status is BackupStatus.VERIFIED and safety.counts["nodes"] == 325
    print(f"RTO in-place (Neo4j, 300 nodes): {state.rto_s:.2f} s")
