"""Synthesize once per session: every stage of cdk.json, the smoke stack, and a probe stack whose
one function holds every grant helper — in one app, with cdk-nag on, so one synth (~5-10 s) serves
every infrastructure test."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from infra_helpers import Synthesized

from infra import functions
from infra.layers import build_dependency_layer
from infra.smoke import SmokeStack
from infra.stack import build_app
from infra.storage import Storage
from warden.config.stage import StageConfig
from warden.config.target import Target

PROBE_STAGE = StageConfig(
    name="probe",
    targets=[
        Target(name="graph", engine="neo4j", secret_name="warden/probe/graph"),
        Target(name="pg", engine="postgres", secret_name="warden/probe/pg"),
    ],
)


def build_probe_stack(app: App, dependency_layer_dir: Path) -> Stack:
    """A stack whose function has every grant helper applied: the helpers themselves are tested."""
    from infra.layers import SharedLayers

    stack = Stack(app, "WardenGrantsProbe")
    storage = Storage(stack, "Storage", stage=PROBE_STAGE)
    layers = SharedLayers.build(stack, "Layers", dependency_layer_dir=dependency_layer_dir)
    fn = functions.WardenFunction(stack, "Everything", job="health", layers=layers, stage=PROBE_STAGE, key=storage.key)
    functions.grant_health(fn, storage)
    for grant in (
        functions.grant_catalog_read_write,
        functions.grant_backups_read,
        functions.grant_backups_write,
        functions.grant_backups_delete,
        functions.grant_notify,
        functions.grant_key_use,
    ):
        grant(fn, storage)
    return stack


@pytest.fixture(scope="session")
def dependency_layer_dir() -> Path:
    return build_dependency_layer()


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory, dependency_layer_dir: Path) -> Synthesized:
    outdir = tmp_path_factory.mktemp("cdk.out")
    started = time.perf_counter()
    app, stacks = build_app(outdir=str(outdir), dependency_layer_dir=dependency_layer_dir)
    smoke = SmokeStack(app, dependency_layer_dir=dependency_layer_dir)
    probe = build_probe_stack(app, dependency_layer_dir)
    app.synth()  # raises on any unacknowledged cdk-nag finding
    return Synthesized(app, outdir, stacks, smoke, probe, time.perf_counter() - started)


@pytest.fixture(scope="session")
def dev(synthesized: Synthesized) -> dict[str, Any]:
    """The dev stage's template."""
    return synthesized.template(synthesized.stacks["dev"])
