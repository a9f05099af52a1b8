"""Per-target configuration of the health and licence checks: thresholds, the schema a target must
have, and its licence. Part of a target's configuration (`Target.health`, `Target.required_schema`,
`Target.license`); `thresholds_of` / `schema_of` / `license_of` read them from a target, with the
defaults when the target has none.

Like every configuration model these forbid unknown fields, so a misspelt threshold is an error
rather than a silently ignored default.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from warden.config.base import Model
from warden.versions import SupportPolicy

Seconds = Annotated[float, Field(gt=0)]
Hours = Annotated[float, Field(gt=0)]
Pct = Annotated[float, Field(ge=0, le=100)]
Ratio = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]
Severity = Literal["warn", "fail"]
Name = Annotated[str, Field(min_length=1, max_length=200)]



def _ordered(model: BaseModel, *pairs: tuple[str, str]) -> None:
    for warn, fail in pairs:
        low, high = getattr(model, warn), getattr(model, fail)
        if low is not None and high is not None and low > high:
            raise ValueError(f"{warn} ({low}) must not be above {fail} ({high})")


class HealthThresholds(Model):
    """When a check passes, warns or fails, and how long each tier of checks may take.

    A check that warns makes its target `degraded`; one that fails makes it `unhealthy`.
    """

    # Time limits per tier. Tiers run one after the other; backup freshness runs beside them.
    connectivity_timeout_s: Seconds = 5.0
    schema_timeout_s: Seconds = 10.0
    integrity_timeout_s: Seconds = 30.0
    metrics_timeout_s: Seconds = 20.0
    backup_timeout_s: Seconds = 10.0

    # Activity (both engines): running queries and open transactions, Warden's own excluded.
    long_query_warn_s: Seconds = 60.0
    long_query_fail_s: Seconds = 300.0
    long_tx_warn_s: Seconds = 60.0
    long_tx_fail_s: Seconds = 300.0

    # PostgreSQL
    connections_warn_pct: Pct = 80.0
    connections_fail_pct: Pct = 95.0
    cache_hit_warn: Ratio = 0.90
    cache_hit_fail: Ratio | None = None
    cache_hit_min_blocks: Count = 100_000  # judge the ratio only once this many blocks were read
    blocked_warn_s: Seconds = 30.0
    blocked_fail_s: Seconds = 300.0
    slow_query_warn_ms: Annotated[float, Field(gt=0)] = 1000.0  # mean execution time
    slow_query_min_calls: Annotated[int, Field(ge=1)] = 5
    dead_tuple_warn_ratio: Ratio = 0.2
    dead_tuple_min: Count = 10_000  # tables with fewer dead tuples are never judged
    vacuum_age_warn_h: Hours = 7 * 24.0
    analyze_age_warn_h: Hours = 7 * 24.0
    wraparound_warn_age: Annotated[int, Field(gt=0)] = 500_000_000
    wraparound_fail_age: Annotated[int, Field(gt=0)] = 1_500_000_000
    unused_index_min_bytes: Count = 1024 * 1024  # smaller unused indexes are not listed
    unused_index_warn_bytes: Count | None = None  # warn when unused indexes add up to this
    index_bloat_warn_ratio: Ratio = 0.5
    index_bloat_min_bytes: Count = 100 * 1024 * 1024
    replication_lag_warn_s: Seconds = 60.0
    replication_lag_fail_s: Seconds = 300.0

    # Neo4j
    heap_warn_pct: Pct = 85.0
    heap_fail_pct: Pct = 95.0

    # Size of the database / store (both engines), off unless set.
    size_warn_bytes: Count | None = None
    size_fail_bytes: Count | None = None

    # Schema and integrity: how a violation counts, and how much work one check may do.
    schema_violation: Severity = "fail"
    orphan_violation: Severity = "warn"
    invalid_object_violation: Severity = "warn"  # PostgreSQL invalid indexes, NOT VALID constraints
    violation_count_limit: Annotated[int, Field(ge=1)] = 10_000  # counting stops here ("≥ N")
    sample_size: Annotated[int, Field(ge=0, le=100)] = 5  # examples listed per finding

    # Backup freshness (from the catalog); the defaults suit a daily backup schedule.
    backup_age_warn_h: Hours = 26.0
    backup_age_fail_h: Hours = 50.0
    verified_age_warn_h: Hours = 50.0
    verified_age_fail_h: Hours | None = None
    missing_backup: Severity = "fail"

    # Server version support (warden.versions): minimum version, end-of-support dates, warning lead.
    support: SupportPolicy = SupportPolicy()

    @model_validator(mode="after")
    def _warn_before_fail(self) -> HealthThresholds:
        _ordered(self, ("long_query_warn_s", "long_query_fail_s"), ("long_tx_warn_s", "long_tx_fail_s"),
                 ("connections_warn_pct", "connections_fail_pct"), ("blocked_warn_s", "blocked_fail_s"),
                 ("wraparound_warn_age", "wraparound_fail_age"),
                 ("replication_lag_warn_s", "replication_lag_fail_s"), ("heap_warn_pct", "heap_fail_pct"),
                 ("size_warn_bytes", "size_fail_bytes"), ("backup_age_warn_h", "backup_age_fail_h"),
                 ("verified_age_warn_h", "verified_age_fail_h"))
        if self.cache_hit_fail is not None and self.cache_hit_fail > self.cache_hit_warn:
            raise ValueError(f"cache_hit_fail ({self.cache_hit_fail}) must not be above cache_hit_warn "
                             f"({self.cache_hit_warn}): the ratio warns first as it falls")
        return self

    @property
    def database_tiers_s(self) -> float:
        """The longest the database tiers of one target may take, one after the other."""
        return self.connectivity_timeout_s + self.schema_timeout_s + self.integrity_timeout_s + self.metrics_timeout_s


class ConnectedRule(Model):
    """Nodes with `label` must have at least one relationship (of `type`, when given)."""

    label: Name
    type: Name | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_label(cls, value: Any) -> Any:
        return {"label": value} if isinstance(value, str) else value


class EndpointRule(Model):
    """Relationships of `type` must start at a `from_label` node and end at a `to_label` node."""

    type: Name
    from_label: Name | None = None
    to_label: Name | None = None

    @model_validator(mode="after")
    def _some_label(self) -> EndpointRule:
        if self.from_label is None and self.to_label is None:
            raise ValueError(f"endpoint rule for {self.type!r} needs from_label, to_label or both")
        return self


class RequiredSchema(Model):
    """What must exist in a target. The Neo4j fields apply to Neo4j targets, the PostgreSQL ones to
    PostgreSQL targets; an empty schema requires nothing."""

    # Neo4j
    labels: list[Name] = []
    required_properties: dict[Name, list[Name]] = {}  # label -> properties every such node must have
    indexes: list[Name] = []  # by name; must exist and be ONLINE
    constraints: list[Name] = []  # by name; must exist and their index be ONLINE
    must_be_connected: list[ConnectedRule] = []
    relationship_endpoints: list[EndpointRule] = []
    # PostgreSQL
    tables: list[Name] = []  # "schema.table" or "table" (search_path)
    extensions: list[Name] = []


class LicenseConfig(Model):
    """A Neo4j Enterprise licence: Neo4j does not expose a commercial licence's expiry, so it is
    configuration. Ignored for Community and PostgreSQL targets."""

    expiry: date | None = None
    warn_days: Annotated[int, Field(ge=0)] = 30


def thresholds_of(target: object) -> HealthThresholds:
    """The target's `health` thresholds, or the defaults when the target has none."""
    return getattr(target, "health", None) or HealthThresholds()


def schema_of(target: object) -> RequiredSchema:
    """The target's `required_schema`, or an empty one."""
    return getattr(target, "required_schema", None) or RequiredSchema()


def license_of(target: object) -> LicenseConfig:
    """The target's `license` configuration, or the defaults (no expiry known, warn 30 days ahead)."""
    return getattr(target, "license", None) or LicenseConfig()
