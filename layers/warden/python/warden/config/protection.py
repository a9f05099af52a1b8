"""Backup protection of a stage (`StageConfig.backup_protection`): S3 Object Lock on the backup
bucket and replication of it to a second region. The stack, prune, verify and recovery act on it.

What "a lock no shorter than the policy's minimum" means here
    A retention policy promises, for each target, that the newest good backup of each of the last
    N periods of its finest calendar rule is kept: with `keep_daily: 7` a day's newest backup is
    kept for at least 7 days, with only `keep_weekly: 4` for 28, with only `keep_monthly: 12` for
    12 x 28 (the shortest month), with only `keep_yearly` N for N x 365; a `max_age_days` below that
    caps it. That span (`guaranteed_days`) is the minimum time the policy itself promises a backup
    is kept; the Object Lock default retention must be at least the largest such span over the
    stage's targets, so that no backup the policy promises to keep can be deleted early, by prune
    or by anyone else. A lock longer than a policy wants is allowed: prune does not delete a locked
    version, reports it ("locked until ...") and leaves the record as it is, so a later run deletes
    it once the lock has expired.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from warden.config.base import Model

if TYPE_CHECKING:
    from warden.config.retention import RetentionPolicy

# S3 accepts a default retention of up to 100 years.
MAX_LOCK_DAYS = 36500
_REGION = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$"
# Days a calendar period is guaranteed to span at least (a month: the shortest, February).
_PERIOD_DAYS = (("keep_daily", 1), ("keep_weekly", 7), ("keep_monthly", 28), ("keep_yearly", 365))



class ObjectLockConfig(Model):
    """S3 Object Lock on the backup bucket: every object version written is retained `days` days.

    `governance`: principals with s3:BypassGovernanceRetention can still delete early (the bucket
    policy denies that permission to everyone). `compliance`: nobody can, not even the account's
    root user, until the date passes; the mode and a period cannot be shortened for stored versions.
    """

    mode: Literal["governance", "compliance"]
    days: Annotated[int, Field(ge=1, le=MAX_LOCK_DAYS)]

    @property
    def s3_mode(self) -> str:
        return self.mode.upper()


class ReplicationConfig(Model):
    """Replicate the backup bucket to `region`, into a bucket encrypted with a key of its own there.

    Version deletions (prune) are never replicated, and delete markers are not either, so the
    replica bucket expires current versions `expire_after_days` after they arrive (and their
    noncurrent versions a day later).
    """

    region: Annotated[str, Field(pattern=_REGION)]
    expire_after_days: Annotated[int, Field(ge=1, le=MAX_LOCK_DAYS)] = 400


class BackupProtection(Model):
    """Optional protections of a stage's backups against a compromised account (both off by default)."""

    object_lock: ObjectLockConfig | None = None
    replication: ReplicationConfig | None = None


def guaranteed_days(policy: RetentionPolicy) -> int:
    """The minimum time `policy` promises to keep a backup (module docstring): the span of its
    finest non-zero calendar rule, capped by `max_age_days`; 1 day for a keep_last-only policy."""
    spans = [getattr(policy, name) * days for name, days in _PERIOD_DAYS if getattr(policy, name) > 0]
    span = spans[0] if spans else 1
    if policy.max_age_days is not None:
        span = min(span, policy.max_age_days)
    return span


def protection_problems(protection: BackupProtection, *, stage: str, region: str,
                        policies: Mapping[str, RetentionPolicy] | Iterable[tuple[str, RetentionPolicy]]) -> list[str]:
    """What is wrong with a stage's `backup_protection`, each naming the field (empty: valid)."""
    problems: list[str] = []
    items = list(policies.items()) if isinstance(policies, Mapping) else list(policies)
    lock, replication = protection.object_lock, protection.replication
    if lock is not None and items:
        name, need = max(((n, guaranteed_days(p)) for n, p in items), key=lambda pair: pair[1])
        if lock.days < need:
            problems.append(
                f"backup_protection.object_lock.days={lock.days} is shorter than the {need} days target "
                f"{name!r}'s retention policy guarantees a backup is kept; set days >= {need}")
    if replication is not None:
        if replication.region == region:
            problems.append(f"backup_protection.replication.region={replication.region!r} is the stage's own "
                            "region; a replica must live in a second region")
        if lock is not None and replication.expire_after_days < lock.days:
            problems.append(
                f"backup_protection.replication.expire_after_days={replication.expire_after_days} is shorter "
                f"than object_lock.days={lock.days}: replicas keep the source's lock, so they could not expire")
        if len(replica_bucket_name(stage, "123456789012", replication.region)) > 63:
            problems.append(f"backup_protection.replication.region={replication.region!r}: the replica bucket "
                            "name would be over 63 characters")
    return problems


# -- names both stacks derive without referring to each other (no cross-region references) -------

def replica_bucket_name(stage: str, account: str, region: str) -> str:
    """The replica bucket: `warden-<stage>-replica-<account>-<replica region>`."""
    return f"warden-{stage}-replica-{account}-{region}"


def replica_key_alias(stage: str) -> str:
    """The alias of the replica bucket's KMS key, in the replica region."""
    return f"alias/warden/{stage}/replica"


def replication_role_name(stage: str, primary_region: str) -> str:
    """The IAM role S3 replication assumes (IAM names are account-wide: the primary region is in it)."""
    return re.sub(r"[^A-Za-z0-9+=,.@_-]", "", f"warden-{stage}-replication-{primary_region}")[:64]


class ReplicaSettings(Model):
    """Where a function finds the replica (set by the stack on verify and recovery when replication
    is on): the bucket, its region and the alias ARN of its key. Read once at the cold start."""

    bucket: str
    region: str
    kms_key: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ReplicaSettings | None:
        """From the `WARDEN_REPLICA_*` variables; None when the stage has no replica."""
        values = {name: environ.get(f"WARDEN_REPLICA_{name.upper()}") for name in ("bucket", "region", "kms_key")}
        if not any(values.values()):
            return None
        missing = sorted(f"WARDEN_REPLICA_{n.upper()}" for n, v in values.items() if not v)
        if missing:
            raise ValueError(f"replica settings incomplete: {', '.join(missing)} not set")
        return cls.model_validate(values)


ENV_REPLICA_BUCKET = "WARDEN_REPLICA_BUCKET"
ENV_REPLICA_REGION = "WARDEN_REPLICA_REGION"
ENV_REPLICA_KMS_KEY = "WARDEN_REPLICA_KMS_KEY"
