"""The Warden stack of one stage, and the app of all stages. Stacks compose; constructs build."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Duration, Environment, Stack, Tags
from constructs import Construct

from infra.config import load_stages, read_cdk_json_context
from infra.functions import WardenFunction, grant_health
from infra.layers import SharedLayers
from infra.nag import enable_nag
from infra.storage import Storage
from warden.models import StageConfig


class WardenStack(Stack):
    """Everything one stage deploys. Attributes: `stage`, `storage`, `layers`, `functions` (by job)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        stage: StageConfig,
        dependency_layer_dir: Path | None = None,
    ) -> None:
        super().__init__(
            scope,
            id,
            env=Environment(account=stage.account, region=stage.region),
            description=f"Warden {stage.name}: backups, verification and health of Neo4j and PostgreSQL",
            termination_protection=stage.name == "prod",
        )
        Tags.of(self).add("project", "warden")
        Tags.of(self).add("stage", stage.name)
        self.stage = stage
        self.storage = Storage(self, "Storage", stage=stage)
        self.layers = SharedLayers.build(self, "Layers", dependency_layer_dir=dependency_layer_dir)
        self.functions: dict[str, WardenFunction] = {}

        health = self._function("health", timeout=Duration.minutes(2))
        grant_health(health, self.storage)

    def _function(self, job: str, **options: Any) -> WardenFunction:
        fn = WardenFunction(
            self,
            job.replace("_", " ").title().replace(" ", ""),
            job=job,
            layers=self.layers,
            stage=self.stage,
            key=self.storage.key,
            **options,
        )
        self.functions[job] = fn
        return fn


def stack_id(stage: StageConfig) -> str:
    return f"Warden-{stage.name}"


def build_app(
    context: Mapping[str, Any] | None = None,
    *,
    outdir: str | None = None,
    dependency_layer_dir: Path | None = None,
) -> tuple[App, dict[str, WardenStack]]:
    """The CDK app: one WardenStack per selected stage, cdk-nag on.

    Context is cdk.json's, then `context` over it; when the CDK CLI runs the app, its context
    (cdk.json and `-c`) wins over both.
    """
    app = App(context={**read_cdk_json_context(), **(context or {})}, outdir=outdir)
    enable_nag(app)
    stages = load_stages({key: app.node.try_get_context(key) for key in ("stages", "stage")})
    stacks = {
        stage.name: WardenStack(app, stack_id(stage), stage=stage, dependency_layer_dir=dependency_layer_dir)
        for stage in stages
    }
    return app, stacks
