"""Benchmark: synthesis time and template sizes of a stage at growing fleet sizes.

Each size is one synthesis of a fleet stage (tests/fleet_synth.py: engines alternate, four groups,
some targets with RDS, EC2 or log monitoring; cdk-nag on). Printed per size: build and synth
seconds, seconds per target, the stage template's and the largest nested template's resources and
bytes. The ratio is time per target at the largest size against the smallest: a synthesis that
grows linearly with its targets gives about 1 once the fixed part (layers, functions, state
machines) is small beside the targets' part; below 1 the fixed part still dominates.

Sizes: tiny by default (2 and 10 targets), WARDEN_BENCH_SIZE=full (10, 100 and 500; minutes).

    WARDEN_BENCH_SIZE=full .venv/bin/pytest tests/perf/test_synth_perf.py -q -s
"""

from __future__ import annotations

import os
from pathlib import Path

from infra.layers import build_dependency_layer
from tests.fleet_synth import over_limits, synthesize_fleet, template_stats

FULL = os.environ.get("WARDEN_BENCH_SIZE", "tiny") == "full"
SIZES = (10, 100, 500) if FULL else (2, 10)


def test_synthesis_time_grows_with_the_targets_and_every_template_stays_within_limits(
        tmp_path: Path) -> None:
    layer_dir = build_dependency_layer()
    per_target = {}
    for size in SIZES:
        synth = synthesize_fleet(size, tmp_path / f"n{size}", layer_dir)
        templates = synth.templates()
        assert [p for name, t in templates.items() for p in over_limits(name, t)] == []
        parent = template_stats(templates.pop(synth.artifact_id))
        nested = [template_stats(t) for t in templates.values()]
        largest = max(nested, key=lambda s: s["resources"], default={"resources": 0, "bytes": 0})
        per_target[size] = synth.seconds / size
        print(f"\n{size:4d} targets: build {synth.build_seconds:6.1f} s, synth {synth.synth_seconds:6.1f} s, "
              f"{per_target[size]:.3f} s/target; stage template {parent['resources']} resources, "
              f"{parent['bytes']:,} B; {len(nested)} group stacks, largest {largest['resources']} resources, "
              f"{largest['bytes']:,} B")
    small, large = min(SIZES), max(SIZES)
    ratio = per_target[large] / per_target[small]
    print(f"time per target at {large} / at {small}: {ratio:.2f} (linear growth: about 1; below: fixed part)")
    # Super-linear growth (each target costing more as the stage grows) is the failure mode; at the
    # tiny sizes the fixed part dominates and the ratio is well below 1 whatever happens.
    assert ratio <= 1.5
