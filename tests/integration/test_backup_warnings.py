"""A backup that is good but should tell something says so everywhere an operator looks: the
manifest, the catalog record (what the CLI prints) and the audit trail. Against the session's Neo4j
5.26 through the deployed local stage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from local.aws import LocalAws
from local.deploy import Deployment
from tests.conftest import invoke, load_event
from warden.stores.audit import tail

pytestmark = pytest.mark.integration


@pytest.fixture
def graph_with_failed_index(neo4j_driver: Any) -> Iterator[None]:
    """graph-local with a TEXT index FAILED over a value too large to index; removed afterwards."""
    with neo4j_driver.session() as session:
        session.run("MATCH (n) DETACH DELETE n").consume()
        session.run("CREATE (:Doc {body: $big})", big="x" * 40000).consume()
        session.run("CREATE TEXT INDEX warn_doc_body FOR (d:Doc) ON (d.body)").consume()
        state = None
        for _ in range(100):
            state = session.run("SHOW INDEXES YIELD name, state WHERE name = 'warn_doc_body' RETURN state").single()
            if state and state[0] != "POPULATING":
                break
        assert state is not None and state[0] == "FAILED"
    try:
        yield
    finally:
        with neo4j_driver.session() as session:
            session.run("DROP INDEX warn_doc_body IF EXISTS").consume()
            session.run("MATCH (n) DETACH DELETE n").consume()


def test_backup_of_a_graph_with_a_failed_index_warns_in_manifest_record_and_audit(
        aws: LocalAws, deployed: Deployment, graph_with_failed_index: None) -> None:
    # When graph-local is backed up through the deployed function
    record, error = invoke(aws, deployed.function_named("backup"), load_event("backup_manual", target="graph-local"))
    # Then it completes, and its record says the index is FAILED in the source
    assert error is None and record["status"] == "COMPLETED", record
    (warning,) = record["warnings"]
    assert "warn_doc_body" in warning and "FAILED in the source" in warning
    # and so does its manifest, with each index's state
    settings = deployed.settings("backup")
    manifest = aws.client("s3").get_object(Bucket=settings.bucket, Key=record["manifest_key"])["Body"].read()
    assert b"FAILED in the source" in manifest and b'"state": "FAILED"' in manifest
    # and the audit trail
    assert settings.audit_table
    (finish,) = [e for e in tail(settings.audit_table, "graph-local") if e.operation == "backup" and e.step == "finish"]
    assert finish.details["warnings"] == record["warnings"]
