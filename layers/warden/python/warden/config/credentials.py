"""The shape of a target's Secrets Manager secret, per engine (the RDS secret layout for PostgreSQL).
Credentials never appear in a target's configuration; `Target.secret_name` names the secret.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, SecretStr

from warden.config.base import Model


class PostgresSecret(Model):
    """The Secrets Manager secret of a PostgreSQL target (the RDS secret layout)."""

    engine: Literal["postgres"] = "postgres"
    host: str
    port: int = 5432
    username: str
    password: SecretStr
    dbname: str = "postgres"
    # TLS by default, verified against the RDS CA bundle shipped in the layer (warden.tls); a
    # weaker mode needs the target's explicit `tls: {"required": false}`.
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "verify-full"
    # The CA certificate(s) a verify-* mode trusts: a file path; default the RDS global bundle.
    sslrootcert: str | None = None

    model_config = ConfigDict(extra="ignore", frozen=True)


class Neo4jSecret(Model):
    """The Secrets Manager secret of a Neo4j target."""

    engine: Literal["neo4j"] = "neo4j"
    uri: Annotated[str, Field(pattern=r"^(neo4j|bolt)(\+s|\+ssc)?://")]
    username: str = "neo4j"
    password: SecretStr
    database: str = "neo4j"

    model_config = ConfigDict(extra="ignore", frozen=True)


DatabaseSecret = Annotated[PostgresSecret | Neo4jSecret, Field(discriminator="engine")]
