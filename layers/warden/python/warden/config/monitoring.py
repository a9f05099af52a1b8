"""Per-target configuration of the machine-level monitoring around a database: instance alarms
(`Target.instances`) and log monitoring (`Target.logs`). infra/instance_alarms.py and
infra/log_monitoring.py build the alarms and metric filters from it; docs/monitoring.md explains
every metric, threshold and pattern.

- EC2-hosted (self-hosted) targets name their instances in `instances.ec2_instance_ids`: CPU, memory
  and disk use (CloudWatch agent metrics), network in / out and status checks are alarmed.
- RDS / Aurora targets are named by `Target.rds`; `instances` only tunes their thresholds.
- `logs` names the CloudWatch Logs group the database's log reaches; errors, slow queries and
  authentication failures are counted from it with metric filters.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from warden.config.base import Model

Percent = Annotated[float, Field(gt=0, le=100)]
Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]
EC2_INSTANCE_ID = r"^i-[0-9a-f]{8}(?:[0-9a-f]{9})?$"
# CloudWatch Logs' own rule for a log group name (1-512 of these characters).
LOG_GROUP_NAME = r"^[.\-_/#A-Za-z0-9]{1,512}$"
LogFormat = Literal["postgres", "neo4j"]



class Evaluation(Model):
    """How long a condition must last: `datapoints` breaching periods of `period_minutes` out of the
    last `periods` (M of N). The defaults ride out one spike: 3 of 3 five-minute periods."""

    period_minutes: Annotated[int, Field(ge=1, le=60)] = 5
    datapoints: Count = 3
    periods: Count = 3

    @model_validator(mode="after")
    def _m_of_n(self) -> Evaluation:
        if self.datapoints > self.periods:
            raise ValueError(f"datapoints ({self.datapoints}) must not exceed periods ({self.periods})")
        if self.period_minutes * self.periods > 24 * 60:
            raise ValueError(
                f"periods x period_minutes ({self.periods} x {self.period_minutes}) span more than the "
                f"day CloudWatch allows for periods under an hour"
            )
        return self


class InstanceMonitoring(Model):
    """Instance alarms of a target (`Target.instances`). Percentages are of the whole resource.

    EC2 (self-hosted targets, `ec2_instance_ids`): CPUUtilization (AWS/EC2) above `cpu_percent`;
    mem_used_percent and disk_used_percent (CWAgent, one alarm per `disk_paths` entry) above
    `memory_percent` / `disk_percent`; NetworkIn / NetworkOut above `network_in_mbps` /
    `network_out_mbps` when given (no default: what is normal depends on the instance type and the
    workload); StatusCheckFailed. `recover_on_system_check_failure` adds EC2's recover action.

    RDS / Aurora (`Target.rds`): CPUUtilization above `cpu_percent`; FreeableMemory below
    (100 - `memory_percent`) % of `memory_gb` (the instance class's memory) or, without it, below
    `min_freeable_memory_mb`; FreeStorageSpace (Aurora: FreeLocalStorage) below (100 - `disk_percent`)
    % of `storage_gb` or, without it, below `min_free_storage_gb`; DatabaseConnections above
    `connections_percent` % of `max_connections` (only when `max_connections` is given: CloudWatch
    does not know the parameter); Read / WriteLatency above `read_latency_ms` / `write_latency_ms`;
    replica lag (ReplicaLag, Aurora: AuroraReplicaLag) above `replica_lag_s`.
    """

    ec2_instance_ids: list[Annotated[str, Field(pattern=EC2_INSTANCE_ID)]] = []
    # Mount points whose disk use is alarmed (the agent's `path` dimension).
    disk_paths: list[Annotated[str, Field(pattern=r"^/[^\s]{0,255}$")]] = ["/"]
    cpu_percent: Percent = 80.0
    memory_percent: Percent = 85.0
    disk_percent: Percent = 85.0
    network_in_mbps: Positive | None = None
    network_out_mbps: Positive | None = None
    recover_on_system_check_failure: bool = False

    memory_gb: Positive | None = None
    storage_gb: Positive | None = None
    min_freeable_memory_mb: Positive = 256.0
    min_free_storage_gb: Positive = 10.0
    max_connections: Annotated[int, Field(ge=1)] | None = None
    connections_percent: Percent = 90.0
    read_latency_ms: Positive = 20.0
    write_latency_ms: Positive = 20.0
    replica_lag_s: Positive = 60.0

    evaluation: Evaluation = Evaluation()

    @field_validator("ec2_instance_ids", "disk_paths")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"repeated: {repeated}")
        return values

    @field_validator("disk_paths")
    @classmethod
    def _some_disk(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("name at least one mount point (the default is ['/'])")
        return values


class LogMonitoring(Model):
    """Log monitoring of a target (`Target.logs`): metric filters on `log_group` counting error
    lines, slow queries and authentication failures, and an alarm on each count.

    `format` says which patterns apply (docs/monitoring.md lists them); it defaults to the target's
    engine. PostgreSQL patterns expect RDS's log_line_prefix `%t:%r:%u@%d:[%p]:` (set the same on a
    self-hosted server). What counts as slow is the database's own threshold
    (`log_min_duration_statement`; Neo4j Enterprise `db.logs.query.threshold`): every line it writes
    is a slow query. An alarm fires when a count reaches its threshold within `period_minutes`.
    """

    log_group: Annotated[str, Field(pattern=LOG_GROUP_NAME)]
    format: LogFormat | None = None
    period_minutes: Annotated[int, Field(ge=1, le=60)] = 5
    errors: Count = 10
    slow_queries: Count = 10
    auth_failures: Count = 5


def check_monitoring(
    target: str, engine: str, on_rds: bool, instances: InstanceMonitoring | None, logs: LogMonitoring | None
) -> None:
    """What only makes sense together with the rest of the target: raise ValueError naming the field."""
    if instances is not None:
        if instances.ec2_instance_ids and on_rds:
            raise ValueError(
                f"target {target!r}: instances.ec2_instance_ids is for self-hosted targets; this target runs "
                f"on RDS / Aurora (rds), whose instance alarms come from rds"
            )
        if not instances.ec2_instance_ids and not on_rds:
            raise ValueError(
                f"target {target!r}: instances names no instance: give instances.ec2_instance_ids (self-hosted) "
                f"or rds (RDS / Aurora)"
            )
    if logs is not None and logs.format is not None and logs.format != engine:
        raise ValueError(f"target {target!r}: logs.format {logs.format!r} does not match engine {engine!r}")


def log_format_of(engine: str, logs: LogMonitoring) -> LogFormat:
    """The log format of a target's logs: as configured, else its engine's."""
    if logs.format is not None:
        return logs.format
    if engine not in ("postgres", "neo4j"):
        raise ValueError(f"no log format for engine {engine!r}")
    return "postgres" if engine == "postgres" else "neo4j"
