"""The local runtime: real Neo4j and PostgreSQL servers, moto for AWS, targets registered as a
deployed stage would have them (config in SSM Parameter Store, credentials in Secrets Manager)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.aws import LocalAws
from local.config import LocalConfig, load_local_config
from local.deploy import Deployment, deploy_template, synthesize_stage
from local.postgres import DEBIAN_PG15_BIN, LocalPostgres, PostgresEndpoint, debian_pg15_available
from warden.config.stage import StageConfig
from warden.config.target import Target

log = logging.getLogger(__name__)


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, what: str, started: float) -> None:
        self.seconds[what] = round(time.monotonic() - started, 2)


class LocalRuntime:
    """Start what the config asks for, register its targets in moto, stop everything on exit.

    Every process started is stopped by `stop()`, which `__exit__` calls even on failure; the
    servers also die with this Python process.
    """

    def __init__(self, work_dir: Path, config: LocalConfig | None = None, *, server: bool = False) -> None:
        self.work_dir = Path(work_dir)
        self.config = config or load_local_config()
        self.aws = LocalAws(server=server)
        self.neo4j: Any = None  # the "neo4j" server (local.neo4j.LocalNeo4j)
        self.neo4j_servers: dict[str, Any] = {}  # every Neo4j started, staging ones included
        self.postgres: dict[str, LocalPostgres] = {}
        self.timings = Timings()
        self.targets: list[Target] = []
        self.skipped: dict[str, str] = {}
        self.deployment: Deployment | None = None

    @property
    def needed(self) -> set[str]:
        return {t.local for t in self.config.targets if t.local}

    def start(self) -> LocalRuntime:
        try:
            self._start_servers()
            started = time.monotonic()
            self.aws.start()
            self.timings.record("aws", started)
            self.register_targets()
            started = time.monotonic()
            self.deployment = deploy_template(self.aws, synthesize_stage(self.stage_config()), self.config.stage)
            self.timings.record("deploy", started)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_servers(self) -> None:
        """PostgreSQL servers here, Neo4j servers (slow JVM starts) in threads meanwhile."""
        from local.neo4j import LocalNeo4j

        neo4j_services = sorted(n for n in self.needed | self.staging_needed if n.startswith("neo4j"))
        errors: list[BaseException] = []
        threads = []
        for service in neo4j_services:
            server = LocalNeo4j(self.work_dir / service, heap="1g" if service == "neo4j" else "512m")
            self.neo4j_servers[service] = server

            def start(service: str = service, server: Any = server) -> None:
                started = time.monotonic()
                try:
                    server.start()
                    self.timings.record(service, started)
                except BaseException as err:
                    errors.append(err)

            threads.append(threading.Thread(target=start, name=f"start-{service}"))
            threads[-1].start()
        self.neo4j = self.neo4j_servers.get("neo4j")
        try:
            for service in sorted(self.needed - set(neo4j_services)):
                if service == "postgres15" and not debian_pg15_available():
                    self.skipped[service] = f"Debian's PostgreSQL 15 is not installed at {DEBIAN_PG15_BIN}"
                    continue
                bin_dir = DEBIAN_PG15_BIN if service == "postgres15" else None
                started = time.monotonic()
                self.postgres[service] = LocalPostgres(self.work_dir / service, bin_dir=bin_dir)
                self.postgres[service].start()
                self.timings.record(service, started)
        finally:
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]

    @property
    def staging_needed(self) -> set[str]:
        return {t.staging for t in self.config.targets if t.staging}

    def endpoint(self, service: str) -> Any:
        if service == "neo4j":
            return self.neo4j.endpoint if self.neo4j else None
        return self.postgres[service].endpoint if service in self.postgres else None

    def local_secrets(self) -> dict[str, dict[str, Any]]:
        """Credentials of each started service, as its target's secret holds them."""
        secrets = {name: postgres_secret(pg.endpoint) for name, pg in self.postgres.items()}
        secrets.update({name: neo4j_secret(server.endpoint) for name, server in self.neo4j_servers.items()})
        return secrets

    def register_targets(self) -> list[Target]:
        self.targets = register_targets(self.aws, self.config, self.local_secrets(), skipped=set(self.skipped))
        return self.targets

    def stage_config(self) -> StageConfig:
        """The stage the local runtime deploys: the registered targets, as a deployed stage has them."""
        return local_stage(self.config.stage, self.targets)

    def stop(self) -> None:
        self.aws.stop()
        for pg in self.postgres.values():
            pg.stop()
        for server in self.neo4j_servers.values():
            server.stop()

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Where a local stage "starts" its Fargate tasks: the ids only have to be well formed; the local runtime
# runs a task as a child process (local.ecs) and ignores its network configuration.
LOCAL_FARGATE = {"subnet_ids": ["subnet-0a0a0a0a0a0a0a0a0"], "security_group_ids": ["sg-0a0a0a0a0a0a0a0a0"]}


def local_stage(name: str, targets: list[Target]) -> StageConfig:
    return StageConfig(name=name, targets=targets, fargate=LOCAL_FARGATE)


def postgres_secret(pg: PostgresEndpoint, dbname: str | None = None) -> dict[str, Any]:
    # The local servers are loopback-only and built without SSL; deployed targets require TLS.
    return {"engine": "postgres", "host": pg.host, "port": pg.port, "username": pg.username,
            "password": pg.password, "dbname": dbname or pg.dbname, "sslmode": "disable"}


def neo4j_secret(ep: Any, database: str = "neo4j") -> dict[str, Any]:
    return {"engine": "neo4j", "uri": ep.uri, "username": ep.username, "password": ep.password,
            "database": database}


def register_targets(aws: LocalAws, config: LocalConfig, local_secrets: dict[str, dict[str, Any]],
                     *, skipped: set[str] | None = None) -> list[Target]:
    """Write each target's config to SSM and its credentials to Secrets Manager (moto), as the
    stack and the operator do in AWS. Targets on a skipped local service are left out."""
    ssm, secrets = aws.client("ssm"), aws.client("secretsmanager")
    targets = []
    for local_target in config.targets:
        if local_target.local and local_target.local in (skipped or set()):
            continue
        target = local_target.as_target(config.stage)
        secret = local_secrets[local_target.local] if local_target.local else local_target.secret(os.environ)
        _put_secret(secrets, target.secret_name, secret)
        if local_target.staging and local_target.staging in local_secrets:
            _put_secret(secrets, local_target.staging_secret_name(config.stage), local_secrets[local_target.staging])
        ssm.put_parameter(
            Name=f"/warden/{config.stage}/targets/{target.name}",
            Value=json.dumps(target.model_dump(mode="json")),
            Type="String",
            Overwrite=True,
        )
        targets.append(target)
    return targets


def _put_secret(client: Any, name: str, value: dict[str, Any]) -> None:
    try:
        client.create_secret(Name=name, SecretString=json.dumps(value))
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=json.dumps(value))
