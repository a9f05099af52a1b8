"""Per-target configuration of remediation (`Target.remediation`: which alarm actions run, their
limits) and maintenance (`Target.maintenance`: VACUUM / ANALYZE / REINDEX, Neo4j index checks)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from warden.config.base import Model

Seconds = Annotated[float, Field(gt=0)]
Hours = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]



class ActionConfig(Model):
    """One remediation action of one target: off unless enabled; a dry run changes nothing."""

    enabled: bool = False
    dry_run: bool = False
    max_per_hour: Annotated[int, Field(ge=0)] = 2


class RemediationConfig(Model):
    """Per-target remediation (`Target.remediation`). Every action is opt-in."""

    start_backup: ActionConfig = ActionConfig()
    cancel_long_queries: ActionConfig = ActionConfig()
    end_idle_in_transaction: ActionConfig = ActionConfig()
    terminate_long_transactions: ActionConfig = ActionConfig()
    prune: ActionConfig = ActionConfig()
    recheck_health: ActionConfig = ActionConfig()
    # PostgreSQL: queries running longer than this are cancelled, and terminated when a cancel has
    # not stopped them within `cancel_grace_s`.
    long_query_limit_s: Seconds = 300.0
    cancel_grace_s: Annotated[float, Field(ge=0, le=60)] = 5.0
    # PostgreSQL connection saturation: sessions idle in a transaction longer than this are ended.
    idle_in_transaction_limit_s: Seconds = 600.0
    # Neo4j: transactions open longer than this are terminated.
    long_transaction_limit_s: Seconds = 300.0


class MaintenanceConfig(BaseModel):
    """Per-target maintenance (`Target.maintenance`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vacuum_interval_h: Hours = 6.0
    analyze_interval_h: Hours = 12.0
    reindex_interval_h: Hours = 7 * 24.0
    neo4j_interval_h: Hours = 6.0  # index states and statistics resampling
    vacuum_min_dead_tuples: Count = 1000  # tables with fewer dead tuples are left to autovacuum
    reindex_min_bytes: Count = 100 * 1024 * 1024
    reindex_min_bloat_ratio: Annotated[float, Field(ge=0, le=1)] = 0.3
    reindex_max_per_run: Annotated[int, Field(ge=1)] = 5
    statement_timeout_s: Seconds = 600.0  # one VACUUM, ANALYZE or REINDEX at most
    lock_timeout_s: Seconds = 2.0  # never queue the application behind a maintenance lock


def maintenance_of(target: object) -> MaintenanceConfig:
    """The target's maintenance configuration, or the defaults."""
    return getattr(target, "maintenance", None) or MaintenanceConfig()
