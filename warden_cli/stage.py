"""Finding a stage from outside it (the CLI): the deployed stack's outputs, or the local runtime's
state file. Either way the result is the functions' settings plus the function names."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from warden.errors import ConfigError
from warden.settings import Settings
from warden.stores.clients import aws_client

# Stack output name → the setting it fills (see infra.stack.WardenStack._outputs).
OUTPUTS = {
    "CatalogTable": "WARDEN_CATALOG_TABLE",
    "AuditTable": "WARDEN_AUDIT_TABLE",
    "StateTable": "WARDEN_STATE_TABLE",
    "Bucket": "WARDEN_BUCKET",
    "Topic": "WARDEN_TOPIC_ARN",
    "Key": "WARDEN_KMS_KEY_ID",
}


@dataclass(frozen=True)
class StageHandle:
    name: str
    settings: Settings
    functions: dict[str, str] = field(default_factory=dict)  # job → function name
    endpoint_url: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)

    def function(self, job: str) -> str:
        if job not in self.functions:
            raise ConfigError(f"stage {self.name!r} has no {job} function (deployed: {', '.join(self.functions)})")
        return self.functions[job]


def from_outputs(name: str, outputs: dict[str, str], *, extra: dict[str, str] | None = None,
                 endpoint_url: str | None = None) -> StageHandle:
    env = {"WARDEN_STAGE": name, **{OUTPUTS[k]: v for k, v in outputs.items() if k in OUTPUTS}, **(extra or {})}
    functions = {_job(k): v for k, v in outputs.items() if k.endswith("Function") and k != "RecoveryStateMachine"}
    return StageHandle(name=name, settings=Settings.from_env(env), functions=functions, endpoint_url=endpoint_url,
                       outputs=dict(outputs))


def deployed_stage(name: str) -> StageHandle:
    """A stage deployed with `cdk deploy -c stage=<name>`: read stack `Warden-<name>`'s outputs."""
    try:
        stacks = aws_client("cloudformation").describe_stacks(StackName=f"Warden-{name}")["Stacks"]
    except ClientError as err:
        raise ConfigError(f"stage {name!r} is not deployed here (stack Warden-{name}): {err}") from err
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return from_outputs(name, outputs)


def local_stage(state_file: Path) -> tuple[StageHandle, dict[str, Any]]:
    """The local runtime started by `warden local up` (its state file)."""
    if not state_file.exists():
        raise ConfigError(f"the local runtime is not running (no {state_file}); start it with `warden local up`")
    state = json.loads(state_file.read_text())
    handle = from_outputs(state["stage"], state["outputs"], extra=state.get("function_environment", {}),
                          endpoint_url=state["endpoint_url"])
    return handle, state


def _job(output: str) -> str:
    stem = output.removesuffix("Function")
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(stem))
