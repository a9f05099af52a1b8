"""Fleet runs through the deployed Fleet state machines (moto's interpreter runs the synthesized
definitions), against the real servers: 50 PostgreSQL databases and 3 Neo4j targets."""

from __future__ import annotations

from typing import Any

import pytest

from local.aws import LocalAws
from local.deploy import Deployment
from local.postgres import PostgresEndpoint
from local.runtime import postgres_secret
from tests.fleet_fixtures import (
    GROUP,
    create_databases,
    fleet_target,
    neo4j_fleet,
    peak_overlap,
    postgres_fleet,
    register,
    run_fleet,
)
from warden import names
from warden.config.target import Target
from warden.models import BackupStatus
from warden.stores.catalog import Catalog

pytestmark = pytest.mark.integration
HEALTH_INTERVAL_S = 300  # rate(5 minutes)


@pytest.fixture(scope="module")
def databases(postgres: PostgresEndpoint) -> dict[str, str]:
    return create_databases(postgres, 50)  # once: the tests only read them


@pytest.fixture
def fleet(aws: LocalAws, deployed: Deployment, postgres: PostgresEndpoint, neo4j_server: Any,
          databases: dict[str, str]) -> list[Target]:
    """53 targets of group `fleet`: 50 databases on the one PostgreSQL, 3 targets on the one Neo4j."""
    return [*postgres_fleet(aws, postgres, databases), *neo4j_fleet(aws, neo4j_server, 3)]


def test_fleet_health_reports_every_target_within_the_interval(aws: LocalAws, deployed: Deployment,
                                                               fleet: list[Target]) -> None:
    # Given the health run deployed as the stack defines it: an Express workflow
    machine = deployed.outputs()[names.fleet_output("health")]
    assert aws.client("stepfunctions").describe_state_machine(stateMachineArn=machine)["type"] == "EXPRESS"
    # When the health fleet run covers the group
    summary, wall = run_fleet(aws, deployed, "health", {"trigger": "manual", "group": GROUP})
    # Then every target was checked, none failed, well inside the 5-minute interval
    assert summary["ok"] == sorted(t.name for t in fleet), summary
    assert summary["counts"] == {"ok": 53, "failed": 0, "skipped": 0}
    print(f"health fleet run of {len(fleet)} targets: {wall:.1f} s")
    assert wall < HEALTH_INTERVAL_S
    checked = {e.get("target") for name, e in aws.dispatcher.invocations if "health" in name}
    assert {t.name for t in fleet} <= checked


def test_fleet_backup_completes_every_target_never_more_than_the_cap_at_once(
        aws: LocalAws, deployed: Deployment, postgres: PostgresEndpoint, fleet: list[Target]) -> None:
    # Given one more target of the group whose database does not exist
    broken = register(aws, fleet_target("fleet-pg-broken", "postgres"), postgres_secret(postgres, "no_such_db"))
    # When an operator's backup run covers the group (the stage's default cap: 4)
    summary, _ = run_fleet(aws, deployed, "backup", {"trigger": "manual", "group": GROUP}, timeout=600)
    # Then every other target's backup completed, the broken one failed without stopping them
    assert summary["counts"] == {"ok": 53, "failed": 1, "skipped": 0}, summary
    assert [f["target"] for f in summary["failed"]] == [broken.name]
    catalog = Catalog(deployed.settings("backup").catalog_table or "")
    records = [next(catalog.list(t.name)) for t in fleet]
    assert {r.status for r in records} == {BackupStatus.COMPLETED}
    # and, measured from the records' times, no more than the cap ran at once (and more than one did)
    peak = peak_overlap((r.started_at, r.finished_at) for r in records if r.finished_at)
    assert 1 < peak <= 4, peak


def test_a_fleet_run_selected_by_tag_runs_only_those_targets(aws: LocalAws, deployed: Deployment,
                                                             fleet: list[Target]) -> None:
    summary, _ = run_fleet(aws, deployed, "license_check", {"group": GROUP, "tags": {"tier": "gold"}})
    assert summary["ok"] == sorted(t.name for t in fleet if t.tags.get("tier") == "gold")
