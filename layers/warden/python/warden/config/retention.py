"""How long backups of a target are kept: the policy a target states (`Target.retention`);
warden.retention applies it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from warden.config.base import Model


class RetentionPolicy(Model):
    """How long backups of a target are kept (see warden.retention). All rules work in UTC.

    A backup is kept when any rule keeps it, except that `max_age_days` is a hard ceiling over the
    keep rules; the ceiling never deletes the newest VERIFIED backup, a backup on hold or the
    `min_keep` newest good backups. Calendar rules count periods that have a good backup
    (restic/borg). Only COMPLETED / VERIFIED backups count towards the rules. See warden.retention.
    """

    keep_last: Annotated[int, Field(ge=0)] = 7
    keep_daily: Annotated[int, Field(ge=0)] = 7
    keep_weekly: Annotated[int, Field(ge=0)] = 4
    keep_monthly: Annotated[int, Field(ge=0)] = 12
    keep_yearly: Annotated[int, Field(ge=0)] = 0
    max_age_days: Annotated[int, Field(ge=1)] | None = None
    min_keep: Annotated[int, Field(ge=1)] = 1
    failed_retention_days: Annotated[int, Field(ge=0)] = 7
    # Bytes of backups a target may keep in S3; over it, the storage alarm fires (and, when enabled,
    # remediation prunes). None: no budget.
    storage_budget_gb: Annotated[float, Field(gt=0)] | None = None
