"""What the fleet synthesis test (tests/infra/test_fleet_synth.py) and benchmark
(tests/perf/test_synth_perf.py) share: a stage of N targets that looks like a real fleet, its
synthesis (cdk-nag on, as always), and CloudFormation's limits checked on every template of it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.assembly import NESTED_STACK, nested_templates, read_template
from infra.stack import build_app

STAGE = "fleet"
GROUPS = ("default", "payments", "search", "analytics")

# CloudFormation's quotas per template (docs/fleets.md). A template over 51,200 bytes cannot be
# passed inline: the CDK uploads every template to the bootstrap bucket and deploys it by URL.
MAX_RESOURCES = 500
MAX_PARAMETERS = 200
MAX_OUTPUTS = 200
MAX_MAPPINGS = 200
MAX_BODY_BYTES = 1_000_000  # by S3 URL (inline: 51,200)
INLINE_BODY_BYTES = 51_200


def fleet_target(i: int) -> dict[str, Any]:
    """Target number `i` of a fleet: engines alternate, four groups, every 10th ships its log to
    CloudWatch Logs, every 7th PostgreSQL one is on RDS, every 11th Neo4j one names EC2 instances."""
    engine = "postgres" if i % 2 else "neo4j"
    target: dict[str, Any] = {"name": f"db-{i:04d}", "engine": engine, "secret_name": f"warden/{STAGE}/db-{i:04d}",
                              "group": GROUPS[i % len(GROUPS)]}
    if engine == "postgres" and i % 7 == 0:
        target["rds"] = {"instance_id": f"db-{i:04d}"}
    if engine == "neo4j" and i % 11 == 0:
        target["instances"] = {"ec2_instance_ids": [f"i-{i:017x}"], "disk_paths": ["/", "/var/lib/neo4j"]}
    if i % 10 == 0:
        target["logs"] = {"log_group": f"/aws/rds/instance/db-{i:04d}/postgresql" if engine == "postgres"
                          else f"/warden/{STAGE}/db-{i:04d}/neo4j"}
    return target


def fleet_stage(size: int, *, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"account": "123456789012", "region": "eu-west-1",
            "targets": [fleet_target(i) for i in range(size)] + list(extra or [])}


@dataclass
class FleetSynth:
    """One synthesis of a fleet stage: its templates (parent first) and how long it took."""

    size: int
    outdir: Path
    artifact_id: str
    build_seconds: float
    synth_seconds: float
    planned: dict[str, int]  # planned resources by target (infra/targets.py)
    measured: dict[str, int]  # measured resources by target
    group_stacks: dict[str, list[str]]  # group stack id -> its targets

    @property
    def seconds(self) -> float:
        return self.build_seconds + self.synth_seconds

    @property
    def parent(self) -> dict[str, Any]:
        return read_template(self.outdir, self.artifact_id)

    def templates(self) -> dict[str, dict[str, Any]]:
        """Every template of the stage by name: the parent, then each nested one by its logical id."""
        parent = self.parent
        return {self.artifact_id: parent, **nested_templates(parent, self.outdir)}


def synthesize_fleet(size: int, outdir: Path, dependency_layer_dir: Path,
                     extra: list[dict[str, Any]] | None = None) -> FleetSynth:
    """Synthesize a stage of `size` fleet targets (plus `extra`) with cdk-nag on; raises on a finding."""
    started = time.perf_counter()
    app, stacks = build_app({"stages": {STAGE: fleet_stage(size, extra=extra)}, "stage": STAGE},
                            outdir=str(outdir), dependency_layer_dir=dependency_layer_dir)
    built = time.perf_counter()
    app.synth()
    done = time.perf_counter()
    stack = stacks[STAGE]
    groups = stack.targets
    return FleetSynth(
        size=size, outdir=outdir, artifact_id=stack.artifact_id,
        build_seconds=built - started, synth_seconds=done - built,
        planned=dict(groups.planned),
        measured={name: r.resource_count for name, r in groups.by_target.items()},
        group_stacks={sid: sorted(s.targets) for sid, s in groups.stacks.items()},
    )


def over_limits(name: str, template: dict[str, Any]) -> list[str]:
    """What in one template breaks a CloudFormation quota (empty: none)."""
    body = len(json.dumps(template, separators=(",", ":")))
    counts = {
        "resources": (len(template.get("Resources", {})), MAX_RESOURCES),
        "parameters": (len(template.get("Parameters", {})), MAX_PARAMETERS),
        "outputs": (len(template.get("Outputs", {})), MAX_OUTPUTS),
        "mappings": (len(template.get("Mappings", {})), MAX_MAPPINGS),
        "body bytes": (body, MAX_BODY_BYTES),
    }
    return [f"{name}: {what} {count} > {limit}" for what, (count, limit) in counts.items() if count > limit]


def template_stats(template: dict[str, Any]) -> dict[str, int]:
    return {"resources": len(template.get("Resources", {})), "parameters": len(template.get("Parameters", {})),
            "outputs": len(template.get("Outputs", {})),
            "nested": sum(r["Type"] == NESTED_STACK for r in template.get("Resources", {}).values()),
            "bytes": len(json.dumps(template, separators=(",", ":")))}
