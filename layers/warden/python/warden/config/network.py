"""Private networking of a stage (`StageConfig.network`) and TLS of a target (`Target.tls`).

Networking: the functions that talk to databases (DB_FUNCTIONS) run in private subnets of an
existing VPC, with one security group of their own; everything else they call is reached through
VPC endpoints, so no NAT gateway is needed. The VPC is found by id with a CDK context lookup, so the
result is checked in (cdk.context.json) and synthesis stays offline. infra/network.py builds it.

TLS: on by default for every target. A PostgreSQL secret without `sslmode` means `verify-full`
against the RDS CA bundle shipped in the layer (warden/certs/); a Neo4j secret's URI must be
`neo4j+s://` or `bolt+s://`. `tls: {"required": false}` on a target is the only way to connect
otherwise, and every such connection logs a warning (warden.tls).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from warden.config.base import Model

# The functions that open database connections; the others stay out of the VPC (they call AWS APIs
# only: verify reads S3 and RDS snapshot status, prune deletes from S3 / RDS, report reads the
# catalog and CloudWatch). rotate (Secrets Manager rotation) changes passwords in the databases.
DB_FUNCTIONS = ("backup", "health", "license_check", "maintenance", "recovery", "remediate", "rotate")

# What the functions in the VPC call, by endpoint service name (com.amazonaws.<region>.<name>).
GATEWAY_ENDPOINTS = ("s3", "dynamodb")
# secretsmanager: credentials; kms: the stage key; monitoring: metrics and alarms; logs; sns:
# notifications; states: recovery's task tokens; sts; rds: rds-snapshot targets; ssm: the targets'
# configuration (Parameter Store); lambda: remediate starts a backup. The Fargate tasks of long jobs
# (docs/fargate.md) run in the same subnets: ecr.api and ecr.dkr pull their image (its layers come
# through the s3 gateway); ecs: the backup function stops an abandoned run's task.
INTERFACE_ENDPOINTS = ("secretsmanager", "kms", "monitoring", "logs", "sns", "states", "sts", "rds", "ssm",
                       "lambda", "ecr.api", "ecr.dkr", "ecs")
ENDPOINT_SERVICES = GATEWAY_ENDPOINTS + INTERFACE_ENDPOINTS

NEO4J_BOLT_PORT = 7687
POSTGRES_PORT = 5432

EndpointMode = Literal["create", "reuse"]



class NetworkConfig(Model):
    """Where a stage's database-facing functions run.

    `vpc_id`: an existing VPC (looked up from cdk.context.json). `subnet_ids`: the private subnets
    the functions use (one or more of that VPC's private or isolated subnets), or `subnet_group`:
    the name of a subnet group of the VPC (the `aws-cdk:subnet-name` tag, e.g. "Private"); neither:
    every private subnet of the VPC. `security_group_id`: use this group for the functions instead
    of creating `warden-<stage>-db-clients` (Warden adds no rules to it). `endpoints`: `create`
    every VPC endpoint the functions need, `reuse` (the VPC already reaches those services: its own
    endpoints or a NAT gateway), or a per-service mapping (services left out are created).
    `database_ports`: the ports the functions may connect to (default: 7687 for Neo4j targets,
    5432 for PostgreSQL ones); `database_cidrs`: where the databases are (default: the VPC's CIDR).
    """

    vpc_id: Annotated[str, Field(pattern=r"^vpc-([0-9a-f]{8}|[0-9a-f]{17})$")]
    subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$")]] = []
    subnet_group: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    security_group_id: Annotated[str, Field(pattern=r"^sg-([0-9a-f]{8}|[0-9a-f]{17})$")] | None = None
    endpoints: EndpointMode | dict[str, EndpointMode] = "create"
    database_ports: list[Annotated[int, Field(ge=1, le=65535)]] | None = None
    database_cidrs: list[str] | None = None

    @field_validator("subnet_ids")
    @classmethod
    def _subnets_unique(cls, value: list[str]) -> list[str]:
        dupes = sorted({s for s in value if value.count(s) > 1})
        if dupes:
            raise ValueError(f"subnet_ids repeats {dupes}")
        return value

    @field_validator("endpoints")
    @classmethod
    def _known_services(cls, value: EndpointMode | dict[str, EndpointMode]) -> EndpointMode | dict[str, EndpointMode]:
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(ENDPOINT_SERVICES))
            if unknown:
                raise ValueError(f"unknown endpoint service(s) {unknown}; known: {', '.join(ENDPOINT_SERVICES)}")
        return value

    @field_validator("database_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        for cidr in value or []:
            try:
                ipaddress.IPv4Network(cidr)
            except ValueError as err:
                raise ValueError(f"database_cidrs: {cidr!r} is not an IPv4 CIDR ({err})") from None
        if value is not None and not value:
            raise ValueError("database_cidrs: leave it out (the VPC's CIDR) or give at least one CIDR")
        return value

    @model_validator(mode="after")
    def _one_subnet_selection(self) -> NetworkConfig:
        if self.subnet_ids and self.subnet_group:
            raise ValueError("network: give subnet_ids or subnet_group, not both")
        return self

    def endpoint_mode(self, service: str) -> EndpointMode:
        """Whether Warden creates the endpoint of `service` or the VPC already provides it."""
        if service not in ENDPOINT_SERVICES:
            raise ValueError(f"unknown endpoint service {service!r}")
        if isinstance(self.endpoints, str):
            return self.endpoints
        return self.endpoints.get(service, "create")

    def ports_for(self, engines: set[str]) -> list[int]:
        """The database ports the function security group may reach."""
        if self.database_ports is not None:
            return sorted(set(self.database_ports))
        ports = {NEO4J_BOLT_PORT} if "neo4j" in engines else set()
        if "postgres" in engines:
            ports.add(POSTGRES_PORT)
        return sorted(ports)


def network_problems(network: NetworkConfig | None, *, account: str | None) -> list[str]:
    """What is wrong with a stage's `network` beyond its own fields (empty: valid)."""
    if network is not None and account is None:
        return [f"network.vpc_id={network.vpc_id!r} needs the stage's account: a VPC is looked up per account "
                "and region (cdk.context.json), so set `account`"]
    return []


class TlsConfig(Model):
    """TLS to a target's database. `required` (default): PostgreSQL `sslmode` verify-full (or
    verify-ca) and Neo4j `neo4j+s://` / `bolt+s://` only. `required: false` is the explicit opt-out:
    whatever the secret says is used, and connecting without verified TLS logs a warning (once per
    database and process: warden.tls)."""

    required: bool = True
