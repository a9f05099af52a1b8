"""Health checks of targets. Each target is checked in its own thread and each tier has its own
time limit, so one slow or dead database never stalls the report of the others.

Tiers, one after the other per target (limits from `HealthThresholds`):
  connectivity (5 s)  server reachable, credentials accepted, version and edition;
  schema (10 s)       required labels / properties / indexes / constraints, tables / extensions;
  integrity (30 s)    orphan nodes, relationship endpoints; invalid indexes, unvalidated constraints;
  metrics (20 s)      transactions, heap, index states, store (Neo4j); connections, cache, queries,
                      vacuum, wraparound, indexes, pgvector, size, replication (PostgreSQL).
Backup freshness (from the catalog) runs beside the database tiers with its own limit. When
connectivity fails the database tiers after it are not run: the target is unhealthy already.

Within a tier, checks run in groups (one Neo4j session or one PostgreSQL connection each), groups in
parallel, each in a daemon thread. At the tier's limit the report takes what has finished and marks
the rest as timed out; a thread still waiting on a hung server is abandoned, never joined (the
servers' own statement / transaction timeouts end it when the server is alive at all).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from warden.checks import GRACE_S, Check, CheckGroup, MetricDef, MetricPoint, Outcome, Tier, run_tier, spawn_daemon
from warden.config.health import HealthThresholds, RequiredSchema, schema_of, thresholds_of
from warden.config.target import Engine, Target
from warden.engines import engine_for
from warden.models import (
    GOOD_BACKUP,
    BackupRecord,
    BackupStatus,
    CheckResult,
    CheckStatus,
    HealthReport,
    HealthStatus,
    TargetHealth,
)
from warden.stores.secrets import load_secret
from warden.versions import VersionError, judge_support

if TYPE_CHECKING:
    from warden.stores.base import AuditStore

log = logging.getLogger(__name__)














# Every value metric a check may report in `details["metrics"]` (see docs/metrics.md).
METRICS: dict[str, MetricDef] = {
    # Neo4j
    "ActiveTransactions": MetricDef("Count", "open transactions, Warden's own excluded"),
    "LongestTransactionSeconds": MetricDef("Seconds", "age of the oldest open transaction (both engines)"),
    "HeapUsedPct": MetricDef("Percent", "Neo4j heap in use after the last GC, % of the maximum heap"),
    "IndexesNotOnline": MetricDef("Count", "Neo4j indexes POPULATING or FAILED"),
    "NodeCount": MetricDef("Count", "Neo4j nodes (count store)"),
    "RelationshipCount": MetricDef("Count", "Neo4j relationships (count store)"),
    "OrphanNodes": MetricDef("Count", "nodes that must be connected but are not (capped)"),
    "EndpointViolations": MetricDef("Count", "relationships whose endpoints lack the required labels (capped)"),
    # PostgreSQL
    "Connections": MetricDef("Count", "client connections"),
    "ConnectionsUsedPct": MetricDef("Percent", "client connections, % of max_connections"),
    "IdleInTransaction": MetricDef("Count", "sessions idle in a transaction"),
    "CacheHitRatio": MetricDef("None", "buffer cache hits / (hits + reads) of the database, 0..1"),
    "LongQueries": MetricDef("Count", "queries running longer than long_query_warn_s"),
    "LongestQuerySeconds": MetricDef("Seconds", "running time of the longest running query"),
    "BlockedQueries": MetricDef("Count", "queries waiting on another session's lock"),
    "LongestBlockedSeconds": MetricDef("Seconds", "running time of the longest blocked query"),
    "SlowQueries": MetricDef("Count", "pg_stat_statements entries with mean time >= slow_query_warn_ms"),
    "MaxDeadTupleRatio": MetricDef("None", "highest dead / (live + dead) tuples of a table with enough dead tuples"),
    "TablesNeedingVacuum": MetricDef("Count", "tables overdue for (auto)vacuum or analyze"),
    "WraparoundAge": MetricDef("Count", "max age(datfrozenxid) over the cluster's databases"),
    "UnusedIndexBytes": MetricDef("Bytes", "size of never-scanned non-unique indexes"),
    "BloatedIndexBytes": MetricDef("Bytes", "estimated wasted bytes of bloated b-tree indexes"),
    "InvalidIndexes": MetricDef("Count", "indexes left INVALID (e.g. a failed CREATE INDEX CONCURRENTLY)"),
    "VectorIndexBytes": MetricDef("Bytes", "size of pgvector HNSW / IVFFlat indexes"),
    "VectorIndexScans": MetricDef("Count", "scans of pgvector indexes since statistics were reset"),
    "ReplicationLagSeconds": MetricDef("Seconds", "replay lag of a replica target"),
    # Both
    "DatabaseSizeBytes": MetricDef("Bytes", "database size (Neo4j: store size, only when APOC provides it)"),
    # Server version (connectivity tier, warden.versions)
    "ServerSupportDaysLeft": MetricDef("Count", "days until the server's version series ends support (negative: past)"),
    # Backups (catalog)
    "BackupAgeHours": MetricDef("None", "hours since the newest COMPLETED or VERIFIED backup finished"),
    "VerifiedBackupAgeHours": MetricDef("None", "hours since the newest VERIFIED backup finished"),
}
















def _age_hours(record: BackupRecord, now: datetime) -> float:
    taken = record.finished_at or record.started_at
    return round((now - taken.astimezone(UTC)).total_seconds() / 3600, 2)


def _judge_age(age: float, warn: float, fail: float | None) -> CheckStatus:
    if fail is not None and age > fail:
        return CheckStatus.FAIL
    return CheckStatus.WARN if age > warn else CheckStatus.PASS


def backup_tier(target: Target, catalog: Any, thresholds: HealthThresholds, now: datetime | None = None) -> Tier:
    """Backup freshness from the catalog: the newest good (COMPLETED / VERIFIED) and VERIFIED backups."""
    missing = CheckStatus(thresholds.missing_backup)

    def freshness(_: Any, left: float) -> Outcome:
        moment = now or datetime.now(UTC)
        good = catalog.latest(target.name, GOOD_BACKUP)
        if good is None:
            return missing, f"no completed backup of {target.name} in the catalog", {}
        age = _age_hours(good, moment)
        status = _judge_age(age, thresholds.backup_age_warn_h, thresholds.backup_age_fail_h)
        return status, f"last good backup {good.backup_id} ({good.status.value}) is {age:.1f} h old", {
            "backup_id": good.backup_id, "age_hours": age, "size_bytes": good.size_bytes,
            "duration_s": good.duration_s, "warn_h": thresholds.backup_age_warn_h,
            "fail_h": thresholds.backup_age_fail_h, "metrics": {"BackupAgeHours": age}}

    def verified(_: Any, left: float) -> Outcome:
        moment = now or datetime.now(UTC)
        record = catalog.latest(target.name, frozenset({BackupStatus.VERIFIED}))
        if record is None:
            return missing, f"no verified backup of {target.name} in the catalog", {}
        age = _age_hours(record, moment)
        status = _judge_age(age, thresholds.verified_age_warn_h, thresholds.verified_age_fail_h)
        return status, f"last verified backup {record.backup_id} is {age:.1f} h old", {
            "backup_id": record.backup_id, "age_hours": age,
            "verified_at": record.verified_at.isoformat() if record.verified_at else None,
            "warn_h": thresholds.verified_age_warn_h, "fail_h": thresholds.verified_age_fail_h,
            "metrics": {"VerifiedBackupAgeHours": age}}

    checks = (Check("backup_freshness", freshness), Check("verified_backup", verified))
    return Tier("backup", thresholds.backup_timeout_s, (CheckGroup(checks),))


def database_tiers(target: Target, secret: Any, thresholds: HealthThresholds, schema: RequiredSchema) -> list[Tier]:
    """The engine's schema, integrity and metrics tiers (`warden.engines.<engine>.health.tiers`)."""
    return engine_for(target.engine).health_tiers(secret, thresholds=thresholds, schema=schema)


def check_target(
    target: Target,
    pool: Executor | None = None,
    *,
    thresholds: HealthThresholds | None = None,
    schema: RequiredSchema | None = None,
    catalog: Any = None,
    now: datetime | None = None,
) -> TargetHealth:
    """Every tier of one target. `thresholds` / `schema` default to the target's configuration;
    backup freshness is checked when a `catalog` (warden.stores.catalog.Catalog) is given."""
    thresholds = thresholds or thresholds_of(target)
    schema = schema or schema_of(target)
    backups = spawn_daemon(run_tier, backup_tier(target, catalog, thresholds, now), pool,
                     name=f"health-{target.name}-backup") if catalog is not None else None
    secrets: list[Any] = []

    def connectivity(_: Any, left: float) -> Outcome:
        secrets.append(load_secret(target))
        # A fixed timeout, not `left`: the Neo4j adapter caches one driver per timeout value.
        info = engine_for(target.engine).server_info(secrets[0], timeout=thresholds.connectivity_timeout_s)
        details: dict[str, object] = {"version": info.version, "edition": info.edition}
        return CheckStatus.PASS, f"{target.engine} {info.version} ({info.edition}) answers", details

    checks = run_tier(Tier("connectivity", thresholds.connectivity_timeout_s,
                           (CheckGroup((Check("connectivity", connectivity),)),)), pool)
    version = checks[0].details.get("version") if checks[0].status is CheckStatus.PASS else None
    if checks[0].status is CheckStatus.PASS:
        checks.extend(run_tier(Tier("connectivity", thresholds.connectivity_timeout_s, (CheckGroup((
            Check("server_version", version_check(target, checks[0].details, thresholds, now)),)),)), pool))
        for tier in database_tiers(target, secrets[0], thresholds, schema):
            checks.extend(run_tier(tier, pool))
    if backups is not None:
        try:
            checks.extend(backups.result(timeout=thresholds.backup_timeout_s + 2 * GRACE_S))
        except FutureTimeout:  # run_tier answers within its limit; this is belt and braces
            checks.append(CheckResult(name="backup_freshness", status=CheckStatus.FAIL,
                                      message=f"timed out after {thresholds.backup_timeout_s:.3g} s",
                                      duration_ms=thresholds.backup_timeout_s * 1000, details={"tier": "backup"}))
    return TargetHealth(
        target=target.name,
        engine=target.engine,
        status=_worst(checks),
        checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        checks=checks,
        server_version=str(version) if version is not None else None,
    )


def version_check(target: Target, info: Mapping[str, object], thresholds: HealthThresholds,
                  now: datetime | None = None) -> Callable[[Any, float], Outcome]:
    """The `server_version` check: the version connectivity read, judged by `thresholds.support`
    (warden.versions). Pure: no query of its own."""

    def judge(_: Any, left: float) -> Outcome:
        version, policy = str(info.get("version") or ""), thresholds.support
        details: dict[str, object] = {"version": version, "edition": info.get("edition"),
                                      "minimum_version": policy.minimum_version}
        try:
            verdict = judge_support(target.engine.value, version, policy, (now or datetime.now(UTC)).date())
        except VersionError as err:
            return CheckStatus.WARN, f"cannot judge the server version: {err}", details
        details |= {"series": verdict.series, "support": verdict.support.value,
                    "below_minimum": verdict.below_minimum, "days_left": verdict.days_left,
                    "end_of_support": verdict.end_of_support.isoformat() if verdict.end_of_support else None}
        if verdict.days_left is not None:
            details["metrics"] = {"ServerSupportDaysLeft": verdict.days_left}
        return CheckStatus(verdict.severity), verdict.message, details

    return judge


def check_targets(
    stage: str,
    targets: Iterable[Target],
    *,
    catalog: Any = None,
    thresholds: Mapping[str, HealthThresholds] | None = None,
    schemas: Mapping[str, RequiredSchema] | None = None,
    now: datetime | None = None,
) -> HealthReport:
    """Check every target concurrently; the report is complete even when some targets hang.

    `thresholds` / `schemas` (by target name) override the targets' own configuration."""
    targets = list(targets)
    thresholds, schemas = thresholds or {}, schemas or {}
    futures = [
        spawn_daemon(functools.partial(check_target, t, thresholds=thresholds.get(t.name), schema=schemas.get(t.name),
                                 catalog=catalog, now=now), name=f"health-{t.name}")
        for t in targets
    ]
    results = [f.result() for f in futures]  # each answers within its own tiers' limits
    overall = max((r.status for r in results), key=_RANK.__getitem__, default=HealthStatus.HEALTHY)
    return HealthReport(stage=stage, status=overall, targets=results)


_RANK = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}
_CHECK_RANK = {CheckStatus.PASS: 0, CheckStatus.WARN: 1, CheckStatus.FAIL: 2}


def _worst(checks: list[CheckResult]) -> HealthStatus:
    if any(c.status is CheckStatus.FAIL for c in checks):
        return HealthStatus.UNHEALTHY
    if any(c.status is CheckStatus.WARN for c in checks):
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def format_text(report: HealthReport) -> str:
    """The report for people: one line per check (pass / warn / fail, message, duration)."""
    lines = [f"stage {report.stage}: {report.status.value.upper()}"]
    for t in report.targets:
        lines.append(f"  {t.target} ({t.engine.value}): {t.status.value}")
        for c in t.checks:
            lines.append(f"    [{c.status.value:4}] {c.name:<24} {c.message}  ({c.duration_ms:.0f} ms)")
    return "\n".join(lines)




def record_health(audit: AuditStore, report: HealthReport, *, actor: str) -> None:
    """One compact audit entry per target and run (operation "health", outcome its status), where
    the weekly report reads a target's health in every stage (CloudWatch metrics need not exist:
    moto serves none). Status, the non-passing checks and the server version: no check details."""
    for t in report.targets:
        audit.audit(target=t.target, operation="health", step="check", outcome=t.status.value, actor=actor,
                    status=t.status.value, checked_at=t.checked_at, server_version=t.server_version,
                    not_passing={c.name: c.status.value for c in t.checks if c.status is not CheckStatus.PASS})


# The value metrics a health run sends to CloudWatch (docs/metrics.md, docs/cost.md): the ones the
# alarms watch and the dashboards graph. Every other value stays in the report, the structured log
# and the Prometheus exposition: a custom metric costs $0.30 a month per target.
# The values each engine sends to CloudWatch: only what an alarm or a dashboard reads (a metric
# stream costs money per target); every other value goes to the structured log line (`log_checks`).
CLOUDWATCH_METRICS: dict[Engine, frozenset[str]] = {
    Engine.NEO4J: frozenset({"ActiveTransactions", "LongestTransactionSeconds", "HeapUsedPct",
                             "DatabaseSizeBytes", "BackupAgeHours"}),
    Engine.POSTGRES: frozenset({"ConnectionsUsedPct", "LongQueries", "ReplicationLagSeconds",
                                "DatabaseSizeBytes", "BackupAgeHours"}),
}


def metric_points(report: HealthReport) -> list[MetricPoint]:
    """The CloudWatch metrics a report yields (documented in docs/metrics.md), all with `Stage`:
    per target `HealthStatus` {Stage, Target}; per tier that does not pass `TierStatus` {Stage,
    Target, Tier} (1 warn, 2 fail; a passing tier sends nothing, so a healthy target pays nothing
    for it); and each value of its engine's `CLOUDWATCH_METRICS` a check measured {Stage, Target}. Check
    durations and the other values go to the structured log (`log_checks`)."""
    points: list[MetricPoint] = []
    for t in report.targets:
        target = {"Stage": report.stage, "Target": t.target}
        sent = CLOUDWATCH_METRICS[t.engine]
        points.append(MetricPoint("HealthStatus", "Count", float(_RANK[t.status]), target))
        tiers: dict[str, int] = {}
        for c in t.checks:
            tier = str(c.details.get("tier") or "connectivity")
            tiers[tier] = max(tiers.get(tier, 0), _CHECK_RANK[c.status])
            values = c.details.get("metrics")
            for name, value in (values.items() if isinstance(values, dict) else ()):
                if (name in sent and name in METRICS and isinstance(value, int | float)
                        and not isinstance(value, bool)):
                    points.append(MetricPoint(name, METRICS[name].unit, float(value), target))
        for tier, rank in tiers.items():
            if rank:
                points.append(MetricPoint("TierStatus", "Count", float(rank), {**target, "Tier": tier}))
    return points


def log_checks(report: HealthReport) -> None:
    """One structured log line per target: every check's status, duration and values (what the
    CloudWatch metrics no longer carry; Logs Insights queries them)."""
    for t in report.targets:
        log.info("target checked", extra={
            "stage": report.stage, "target": t.target, "engine": t.engine.value, "status": t.status.value,
            "checks": {c.name: {"status": c.status.value, "duration_ms": c.duration_ms,
                                "tier": c.details.get("tier"), "metrics": c.details.get("metrics")}
                       for c in t.checks}})
