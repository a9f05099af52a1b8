"""A health report in the Prometheus text exposition format (version 0.0.4), for node_exporter's
textfile collector or any scraper that reads a file (`warden health --format prometheus`).

The families mirror the CloudWatch metrics of docs/metrics.md in Prometheus' conventions: snake_case
names under `warden_`, base units (seconds, bytes, ratios 0..1 instead of percent and hours), and
labels instead of dimensions (`stage`, `target`, `engine`; `check`, `tier` per check). Every family is
a gauge: the file is a snapshot of one health run. Written by hand (a few lines) so the Lambda layer
does not carry prometheus_client; the tests parse the output with prometheus_client's parser.

Status values: `warden_health_status` 0 healthy, 1 degraded, 2 unhealthy; `warden_health_check_status`
0 pass, 1 warn, 2 fail — the same numbers as the CloudWatch `HealthStatus` / `CheckStatus`.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from warden.models import CheckStatus, HealthReport, HealthStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

STATUS_VALUE = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}
CHECK_VALUE = {CheckStatus.PASS: 0, CheckStatus.WARN: 1, CheckStatus.FAIL: 2}


@dataclass(frozen=True)
class ValueMetric:
    """How a value metric of a check (`details["metrics"][<EMF name>]`) is exposed."""

    name: str
    help: str
    scale: float = 1.0  # Prometheus value = EMF value * scale (percent -> ratio, hours -> seconds)


# Every EMF value metric (warden.health.METRICS; a unit test holds the two together) but
# ServerSupportDaysLeft, exposed as warden_server_end_of_support_timestamp_seconds (a date does not
# go stale the way "days left" does).
VALUE_METRICS: dict[str, ValueMetric] = {
    "ActiveTransactions": ValueMetric("warden_health_active_transactions",
        "Neo4j open transactions, Warden's own excluded"),
    "LongestTransactionSeconds": ValueMetric("warden_health_longest_transaction_seconds",
        "Age of the oldest open transaction"),
    "HeapUsedPct": ValueMetric("warden_health_heap_used_ratio",
        "Neo4j heap in use after the last GC, 0..1 of the maximum heap", 0.01),
    "IndexesNotOnline": ValueMetric("warden_health_indexes_not_online", "Neo4j indexes POPULATING or FAILED"),
    "NodeCount": ValueMetric("warden_health_nodes", "Neo4j nodes (count store)"),
    "RelationshipCount": ValueMetric("warden_health_relationships", "Neo4j relationships (count store)"),
    "OrphanNodes": ValueMetric("warden_health_orphan_nodes", "Nodes that must be connected but are not (capped)"),
    "EndpointViolations": ValueMetric("warden_health_endpoint_violations",
        "Relationships whose endpoints lack the required labels (capped)"),
    "Connections": ValueMetric("warden_health_connections", "PostgreSQL client connections"),
    "ConnectionsUsedPct": ValueMetric("warden_health_connections_used_ratio",
        "PostgreSQL client connections, 0..1 of max_connections", 0.01),
    "IdleInTransaction": ValueMetric("warden_health_idle_in_transaction_sessions",
        "PostgreSQL sessions idle in a transaction"),
    "CacheHitRatio": ValueMetric("warden_health_cache_hit_ratio",
        "PostgreSQL buffer cache hits / (hits + reads), 0..1"),
    "LongQueries": ValueMetric("warden_health_long_queries",
        "PostgreSQL queries running longer than long_query_warn_s"),
    "LongestQuerySeconds": ValueMetric("warden_health_longest_query_seconds",
        "Running time of the longest running query"),
    "BlockedQueries": ValueMetric("warden_health_blocked_queries",
        "PostgreSQL queries waiting on another session's lock"),
    "LongestBlockedSeconds": ValueMetric("warden_health_longest_blocked_query_seconds",
        "Running time of the longest blocked query"),
    "SlowQueries": ValueMetric("warden_health_slow_statements",
        "pg_stat_statements entries with mean time >= slow_query_warn_ms"),
    "MaxDeadTupleRatio": ValueMetric("warden_health_max_dead_tuple_ratio",
        "Highest dead / (live + dead) tuples of a table with enough dead tuples"),
    "TablesNeedingVacuum": ValueMetric("warden_health_tables_needing_vacuum",
        "Tables overdue for (auto)vacuum or analyze"),
    "WraparoundAge": ValueMetric("warden_health_wraparound_xid_age",
        "Max age(datfrozenxid) over the cluster's databases, in transactions"),
    "UnusedIndexBytes": ValueMetric("warden_health_unused_index_bytes", "Size of never-scanned non-unique indexes"),
    "BloatedIndexBytes": ValueMetric("warden_health_bloated_index_bytes",
        "Estimated wasted bytes of bloated b-tree indexes"),
    "InvalidIndexes": ValueMetric("warden_health_invalid_indexes", "PostgreSQL indexes left INVALID"),
    "VectorIndexBytes": ValueMetric("warden_health_vector_index_bytes", "Size of pgvector HNSW / IVFFlat indexes"),
    "VectorIndexScans": ValueMetric("warden_health_vector_index_scans",
        "Scans of pgvector indexes since statistics were reset"),
    "ReplicationLagSeconds": ValueMetric("warden_health_replication_lag_seconds", "Replay lag of a replica target"),
    "DatabaseSizeBytes": ValueMetric("warden_health_database_size_bytes",
        "Database size (Neo4j: store size, with APOC)"),
    "BackupAgeHours": ValueMetric("warden_health_backup_age_seconds",
        "Seconds since the newest COMPLETED or VERIFIED backup finished", 3600.0),
    "VerifiedBackupAgeHours": ValueMetric("warden_health_verified_backup_age_seconds",
        "Seconds since the newest VERIFIED backup finished", 3600.0),
}
NOT_VALUE_METRICS = frozenset({"ServerSupportDaysLeft"})

# The families besides the value metrics: name -> help.
FAMILIES: dict[str, str] = {
    "warden_health_status": "Health of a target: 0 healthy, 1 degraded (a check warns), 2 unhealthy (a check fails)",
    "warden_health_healthy": "1 when the target is healthy, else 0",
    "warden_health_check_status": "Status of a check: 0 pass, 1 warn, 2 fail",
    "warden_health_check_duration_seconds": "How long the check took (a timed-out check: until its tier's limit)",
    "warden_health_last_run_timestamp_seconds": "When the target was checked (Unix time)",
    "warden_health_targets_checked": "Targets in this health run",
    "warden_server_info": "The server's version and edition as reported to the connectivity check (always 1)",
    "warden_server_end_of_support_timestamp_seconds":
        "The server's version series' end-of-support date, 00:00 UTC (Unix time)",
    "warden_health_last_backup_size_bytes": "Size of the newest COMPLETED or VERIFIED backup",
    "warden_health_last_backup_duration_seconds": "How long the newest COMPLETED or VERIFIED backup took",
}


@dataclass
class _Family:
    name: str
    help: str
    samples: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    def add(self, labels: Mapping[str, str], value: float) -> None:
        self.samples.setdefault(tuple(labels.items()), value)  # one series per label set: the first wins


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed escaped, as the exposition format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers without a fraction, NaN / +Inf / -Inf spelled as Prometheus does."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def render(report: HealthReport) -> str:
    """The report as exposition text: HELP and TYPE before each family's samples, one family per name."""
    families: dict[str, _Family] = {}

    def put(name: str, labels: Mapping[str, str], value: float, help: str | None = None) -> None:
        family = families.setdefault(name, _Family(name, help or FAMILIES[name]))
        family.add(labels, value)

    put("warden_health_targets_checked", {"stage": report.stage}, len(report.targets))
    for t in report.targets:
        base = {"stage": report.stage, "target": t.target, "engine": t.engine.value}
        put("warden_health_status", base, STATUS_VALUE[t.status])
        put("warden_health_healthy", base, 1 if t.status is HealthStatus.HEALTHY else 0)
        put("warden_health_last_run_timestamp_seconds", base, datetime.fromisoformat(t.checked_at).timestamp())
        for c in t.checks:
            labels = {**base, "check": c.name, "tier": str(c.details.get("tier", ""))}
            put("warden_health_check_status", labels, CHECK_VALUE[c.status])
            put("warden_health_check_duration_seconds", labels, c.duration_ms / 1000)
            values = c.details.get("metrics")
            for metric, raw in (values.items() if isinstance(values, dict) else ()):
                number, spec = _number(raw), VALUE_METRICS.get(metric)
                if number is not None and spec is not None:
                    put(spec.name, base, number * spec.scale, spec.help)
            if c.name == "connectivity" and c.details.get("version") is not None:
                put("warden_server_info", {**base, "version": str(c.details["version"]),
                                           "edition": str(c.details.get("edition") or "")}, 1)
            if c.name == "server_version" and c.details.get("end_of_support"):
                ends = date.fromisoformat(str(c.details["end_of_support"]))
                put("warden_server_end_of_support_timestamp_seconds", {**base, "series": str(c.details["series"])},
                    datetime(ends.year, ends.month, ends.day, tzinfo=UTC).timestamp())
            if c.name == "backup_freshness":
                size, seconds = _number(c.details.get("size_bytes")), _number(c.details.get("duration_s"))
                if size is not None:
                    put("warden_health_last_backup_size_bytes", base, size)
                if seconds is not None:
                    put("warden_health_last_backup_duration_seconds", base, seconds)

    lines: list[str] = []
    for family in families.values():
        lines += [f"# HELP {family.name} {_escape_help(family.help)}", f"# TYPE {family.name} gauge"]
        for label_set, value in family.samples.items():
            text = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in label_set)
            lines.append(f"{family.name}{{{text}}} {format_value(value)}")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same directory and a rename, so a
    reader (node_exporter's textfile collector) never sees half a file. Permissions 0644."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
