"""RDS snapshot permissions (infra/functions.py `grant_rds_snapshots`): only a stage with an
rds-snapshot target gets them, only the backup / verify / prune functions, each only what its job
needs, scoped to the configured instance / cluster and to Warden's snapshot names — cdk-nag clean."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from infra_helpers import fleet_alarm_targets, logical_id, resources

from infra.assembly import stage_template
from infra.stack import build_app
from warden.config.stage import StageConfig
from warden.config.target import Target
from warden.events import FleetInput
from warden.fleet import plan_run

STAGE = StageConfig(name="rds", targets=[
    Target(name="orders", engine="postgres", secret_name="warden/rds/orders",
           rds={"instance_id": "orders-db"}, backup={"method": "rds-snapshot"}),
    Target(name="ledger", engine="postgres", secret_name="warden/rds/ledger",
           rds={"cluster_id": "ledger-aurora"}, backup={"method": "rds-snapshot"}),
    # On RDS, but backed up with pg_dump: no snapshot permissions for it.
    Target(name="catalogue", engine="postgres", secret_name="warden/rds/catalogue", rds={"instance_id": "cat-db"}),
    Target(name="graph", engine="neo4j", secret_name="warden/rds/graph"),
])
PLAIN = StageConfig(name="plain", targets=[
    Target(name="catalogue", engine="postgres", secret_name="warden/plain/catalogue", rds={"instance_id": "cat-db"}),
])


def _arn(kind: str, name: str) -> str:
    return f"arn:aws:rds:eu-west-1:<AWS::AccountId>:{kind}:{name}"


INSTANCE, CLUSTER = _arn("db", "orders-db"), _arn("cluster", "ledger-aurora")
SNAPS = {t: _arn("snapshot", f"warden-{t}-*") for t in ("orders", "ledger")}
CLUSTER_SNAPS = {t: _arn("cluster-snapshot", f"warden-{t}-*") for t in ("orders", "ledger")}


def _build(stage: StageConfig, outdir: Path, dependency_layer_dir: Path) -> dict[str, Any]:
    app, stacks = build_app({"stages": {stage.name: stage.model_dump(mode="json", exclude={"name"})},
                             "stage": stage.name}, outdir=str(outdir), dependency_layer_dir=dependency_layer_dir)
    stack = stacks[stage.name]
    app.synth()  # raises on any unacknowledged cdk-nag finding
    template = stage_template(outdir, stack.artifact_id)
    return {"template": template, "roles": {job: logical_id(stack, fn.role) for job, fn in stack.functions.items()}}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, dependency_layer_dir: Path) -> dict[str, Any]:
    return _build(STAGE, tmp_path_factory.mktemp("cdk.out.rds"), dependency_layer_dir)


def rds_grants(template: dict[str, Any], role: str) -> dict[str, set[str]]:
    """{rds action: the resources (as JSON) it is granted on} for one role."""
    found: dict[str, set[str]] = {}
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for s in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
            targets = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            assert s["Effect"] == "Allow"
            for action in actions:
                if action.startswith("rds:"):
                    found.setdefault(action, set()).update(_flat(t) for t in targets)
    return found


def _flat(value: Any) -> str:
    """An ARN as text, `{"Ref": X}` written `<X>` (as cdk-nag writes it)."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::Join" in value:
        return "".join(_flat(p) for p in value["Fn::Join"][1])
    return json.dumps(value, sort_keys=True)


def j(*values: str) -> set[str]:
    return set(values)


def test_backup_creates_and_tags_snapshots_only_of_the_configured_instance_and_cluster(built: dict[str, Any]) -> None:
    grants = rds_grants(built["template"], built["roles"]["backup"])
    assert grants["rds:CreateDBSnapshot"] == j(INSTANCE, SNAPS["orders"], SNAPS["ledger"])
    assert grants["rds:CreateDBClusterSnapshot"] == j(CLUSTER, CLUSTER_SNAPS["orders"], CLUSTER_SNAPS["ledger"])
    assert grants["rds:AddTagsToResource"] == j(*SNAPS.values(), *CLUSTER_SNAPS.values())
    assert grants["rds:DescribeDBInstances"] == j(INSTANCE)
    assert grants["rds:DescribeDBClusters"] == j(CLUSTER)
    assert grants["rds:DescribeDBSnapshots"] == j(INSTANCE, CLUSTER, *SNAPS.values(), *CLUSTER_SNAPS.values())
    assert not any(a.startswith("rds:Delete") for a in grants), "backup never deletes snapshots"
    # the pg_dump target on RDS is not in any grant
    assert not any("cat-db" in r or "catalogue" in r for rs in grants.values() for r in rs)


def test_verify_only_describes_and_prune_only_describes_and_deletes(built: dict[str, Any]) -> None:
    verify = rds_grants(built["template"], built["roles"]["verify"])
    assert set(verify) == {"rds:DescribeDBSnapshots", "rds:DescribeDBClusterSnapshots"}
    prune = rds_grants(built["template"], built["roles"]["prune"])
    assert set(prune) == {"rds:DescribeDBSnapshots", "rds:DescribeDBClusterSnapshots", "rds:DeleteDBSnapshot",
                          "rds:DeleteDBClusterSnapshot"}
    assert prune["rds:DeleteDBSnapshot"] == j(*SNAPS.values())
    assert prune["rds:DeleteDBClusterSnapshot"] == j(*CLUSTER_SNAPS.values())
    for job in ("health", "recovery", "license_check", "report"):
        assert rds_grants(built["template"], built["roles"][job]) == {}, job


def test_no_rds_snapshot_target_no_rds_permissions_and_no_drill_for_snapshot_targets(
        built: dict[str, Any], tmp_path: Path, dependency_layer_dir: Path) -> None:
    # the drill (restore into staging) runs only for targets Warden can restore: was one drill schedule
    # per target; now the drill fleet run's plan (infra/fleet.py) skips the snapshot targets, and no
    # target here overrides the drill schedule, so none has a schedule of its own
    schedules = resources(built["template"], "AWS::Scheduler::Schedule").values()
    assert [s for s in schedules if "restore drill of" in s["Properties"].get("Description", "")] == []
    plan = plan_run(STAGE.targets, "drill", STAGE.fleet.drill, FleetInput(trigger="schedule"), datetime.now(UTC))
    assert {i["target"] for i in plan["items"]} == {"catalogue", "graph"}
    assert all(s["reason"].startswith("rds-snapshot") for s in plan["skipped"]) and plan["skipped"]
    plain = _build(PLAIN, tmp_path / "cdk.out", dependency_layer_dir)
    for job, role in plain["roles"].items():
        assert rds_grants(plain["template"], role) == {}, job


def test_only_exported_backups_have_a_near_time_limit_alarm(built: dict[str, Any]) -> None:
    # An rds-snapshot backup is not bounded by the backup function's timeout (RDS makes the copy).
    alarms = {a["Properties"]["AlarmName"]: a["Properties"]
              for a in resources(built["template"], "AWS::CloudWatch::Alarm").values()}
    stage_targets = [t.name for t in STAGE.targets]
    near = {t for n, a in alarms.items() if n.startswith("warden-rds-fleet-backup-near-time-limit")
            for t in fleet_alarm_targets(a, stage_targets)}
    assert near == {"catalogue", "graph"}
