"""What the fleet tests and benchmarks share: many targets on the session's local servers (a
database each on the one PostgreSQL, several targets on the one Neo4j), registered as the stack
and the operator register them, and a fleet run started and awaited through moto's interpreter."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg

from local.aws import LocalAws
from local.deploy import Deployment
from local.postgres import PostgresEndpoint, create_database
from local.runtime import neo4j_secret, postgres_secret
from tests.conftest import STAGE
from warden import names
from warden.config.target import Target

GROUP = "fleet"
NO_TLS = {"required": False}


def register(aws: LocalAws, target: Target, secret: dict[str, Any]) -> Target:
    """Its configuration in Parameter Store and its credentials in Secrets Manager (moto)."""
    aws.client("secretsmanager").create_secret(Name=target.secret_name, SecretString=json.dumps(secret))
    aws.client("ssm").put_parameter(Name=names.target_parameter(STAGE, target.name),
                                    Value=json.dumps(target.model_dump(mode="json")), Type="String", Overwrite=True)
    return target


def fleet_target(name: str, engine: str, **fields: Any) -> Target:
    return Target.model_validate({"name": name, "engine": engine, "secret_name": f"warden/{STAGE}/{name}",
                                  "group": GROUP, "tls": NO_TLS, **fields})


def create_databases(postgres: PostgresEndpoint, count: int, *, prefix: str = "fleet-pg") -> dict[str, str]:
    """`count` databases on the one server, a small table in each: {target name: database}."""
    databases = {}
    for i in range(count):
        name, dbname = f"{prefix}-{i:03d}", f"{prefix.replace('-', '_')}_{i:03d}"
        uri = create_database(postgres, dbname, replace=True)
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, body text NOT NULL)")
            conn.execute("INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1, 200) g")
        databases[name] = dbname
    return databases


def postgres_fleet(aws: LocalAws, postgres: PostgresEndpoint, databases: dict[str, str]) -> list[Target]:
    """A PostgreSQL target per database (`create_databases`); every other one tagged tier=gold."""
    return [register(aws, fleet_target(name, "postgres", tags={"tier": "gold" if i % 2 else "bronze"}),
                     postgres_secret(postgres, dbname))
            for i, (name, dbname) in enumerate(sorted(databases.items()))]


def neo4j_fleet(aws: LocalAws, neo4j_server: Any, count: int) -> list[Target]:
    """`count` Neo4j targets sharing the one server's `neo4j` database (Community has one)."""
    return [register(aws, fleet_target(f"fleet-graph-{i}", "neo4j"), neo4j_secret(neo4j_server))
            for i in range(count)]


def run_fleet(aws: LocalAws, deployed: Deployment, job: str, payload: dict[str, Any],
              timeout: float = 300) -> tuple[dict[str, Any], float]:
    """Start the deployed Fleet state machine of `job` and wait: (its output, wall seconds).
    moto describes an Express execution (health) too; AWS does not: there its summary is the fleet
    function's "fleet run finished" log line."""
    sfn = aws.client("stepfunctions")
    started = time.monotonic()
    execution = sfn.start_execution(stateMachineArn=deployed.outputs()[names.fleet_output(job)],
                                    name=f"{job}-{uuid.uuid4().hex[:12]}",  # moto names every unnamed one "None"
                                    input=json.dumps(payload))["executionArn"]
    while time.monotonic() - started < timeout:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            wall = time.monotonic() - started
            assert described["status"] == "SUCCEEDED", described
            return json.loads(described["output"]), wall
        time.sleep(0.1)
    raise TimeoutError(f"the {job} fleet run is still running after {timeout} s")


def peak_overlap(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant."""
    intervals = list(intervals)
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                   key=lambda e: (e[0], e[1]))
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak
