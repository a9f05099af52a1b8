"""How a target is backed up (`Target.backup`), and what an `rds-snapshot` backup records.

Kept apart from `warden.models` (which imports it) so the rules of the backup method live next to
each other; nothing here imports `warden.models`.

Methods: `pg_dump` (PostgreSQL) and `neo4j-logical` (Neo4j) stream a logical copy to S3 and are each
engine's default; `rds-snapshot` asks RDS for a storage snapshot of the target's RDS instance or
Aurora cluster (`Target.rds`), which RDS keeps and RDS restores.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

PG_DUMP = "pg_dump"
NEO4J_LOGICAL = "neo4j-logical"
RDS_SNAPSHOT = "rds-snapshot"
LOGICAL_METHODS = {"neo4j": NEO4J_LOGICAL, "postgres": PG_DUMP}
BackupMethod = Literal["pg_dump", "neo4j-logical", "rds-snapshot"]

# The backup function's timeout is 15 minutes; waiting longer than this inside it leaves no margin
# to record the result before Lambda stops the invocation.
MAX_SNAPSHOT_WAIT_S = 12 * 60


class BackupConfig(BaseModel):
    """`"backup": {"method": "rds-snapshot"}` on a target. Without `method`, the engine's logical
    method (`pg_dump` / `neo4j-logical`).

    `snapshot_wait_s`: how long one backup invocation waits for a new RDS snapshot to become
    available. A snapshot still being made after that stays RUNNING in the catalog with its
    snapshot id; the next backup or verify run of the target finishes the record from the
    snapshot's status (see warden.snapshot_backup).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: BackupMethod | None = None
    snapshot_wait_s: Annotated[int, Field(ge=0, le=MAX_SNAPSHOT_WAIT_S)] = 10 * 60

    def method_for(self, engine: str) -> str:
        """The method in force for a target of `engine` (the configured one, or the default)."""
        return self.method or LOGICAL_METHODS[str(engine)]


def check_backup_method(target: str, engine: str, has_rds: bool, config: BackupConfig) -> None:
    """Raise ValueError (naming the target and the field) when the method does not fit the target."""
    method = config.method
    if method is None:
        return
    if method == RDS_SNAPSHOT:
        if engine != "postgres":
            raise ValueError(f"target {target!r}: backup.method rds-snapshot is for PostgreSQL targets on "
                             f"RDS / Aurora, not {engine}")
        if not has_rds:
            raise ValueError(f"target {target!r}: backup.method rds-snapshot needs `rds` (instance_id or "
                             "cluster_id) to name what RDS snapshots")
        return
    if LOGICAL_METHODS[engine] != method:
        raise ValueError(f"target {target!r}: backup.method {method} is not a {engine} method "
                         f"(use {LOGICAL_METHODS[engine]} or leave it out)")


class SnapshotRef(BaseModel):
    """The RDS snapshot an `rds-snapshot` backup record stands for (`BackupRecord.snapshot`)."""

    model_config = ConfigDict(extra="forbid")

    snapshot_id: str
    snapshot_arn: str | None = None
    kind: Literal["db-snapshot", "db-cluster-snapshot"]
    source_identifier: str
    engine: str = ""
    engine_version: str = ""
    allocated_storage_gib: int = 0
    encrypted: bool | None = None
    kms_key_id: str | None = None
    # What RDS said last time Warden looked ("creating", "available", ...), and how far along.
    status: str | None = None
    percent_progress: int | None = None
    created_at: str | None = None

    @property
    def restore_command(self) -> str:
        """The AWS CLI command that restores this snapshot (into a new instance / cluster)."""
        if self.kind == "db-cluster-snapshot":
            return (f"aws rds restore-db-cluster-from-snapshot --snapshot-identifier {self.snapshot_id} "
                    f"--db-cluster-identifier <new-cluster> --engine {self.engine or 'aurora-postgresql'}")
        return (f"aws rds restore-db-instance-from-db-snapshot --db-snapshot-identifier {self.snapshot_id} "
                "--db-instance-identifier <new-instance>")
