"""Retention: which backups of one target to keep, and why. Pure: no AWS calls, no clock.

`decide(records, policy, now)` returns one `Decision` per catalog record, each with human-readable
reasons (every reason starts with "kept: " or "deleted: "); the prune job deletes what is not kept.
Decisions come newest first by `started_at`; equal start times are ordered by backup_id, larger
first, so ties are settled the same way on every run. The semantics:

Calendar
    Everything is in UTC. A backup belongs to the periods of its `started_at` converted to UTC: day =
    UTC date, week = ISO week of that date (`date.isocalendar()`, so 2027-01-01 is in 2026-W53 and
    2025-12-29 in 2026-W01), month = calendar month, year = calendar year (not the ISO year).
    `now` and every timestamp used must be timezone-aware: naive datetimes are rejected with
    ValueError (guessing a zone could delete the wrong backup); aware ones are converted to UTC.
    A backup dated after `now` (clock skew) is simply the newest one; it is never past max age.

Good backups
    Only COMPLETED / VERIFIED backups ("good") count towards the keep rules, `min_keep` and the
    newest-VERIFIED protection; FAILED, CORRUPT, RUNNING and EXPIRED records never change a decision
    about a good backup.

Keep rules (a good backup is kept when any rule keeps it; every rule that keeps it is listed)
    keep_last N     the N newest good backups.
    keep_daily N    the newest good backup of each of the N most recent days that HAVE a good
    keep_weekly N   backup (likewise weeks, months, years). This is the restic/borg convention:
    keep_monthly N  a gap in the history (an outage, a paused target) does not use up a period,
    keep_yearly N   and the periods are not anchored to `now`.
    A good backup no rule keeps is deleted, whatever its age.

max_age_days (a hard ceiling)
    A good backup older than `max_age_days` (now - started_at > max_age_days days) is deleted even
    when a keep rule would keep it - unless one of the protections below applies.

Protections (never deleted, whatever the rules and max_age_days say)
    - the newest VERIFIED backup;
    - a backup on hold (any status);
    - the `min_keep` newest good backups;
    - RUNNING backups: a running backup is not the policy's business (the lease cleanup deals with
      crashed runs).

FAILED / CORRUPT records
    Kept for `failed_retention_days` after their last known event (the latest of started_at,
    finished_at and verified_at: a backup found CORRUPT today stays for investigation even if it
    is old), then deleted together with their leftovers (partial data, manifests). Holds still
    apply. A status this module does not know is kept, never guessed at.

EXPIRED records
    Already deleted: skipped, no decision is returned for them.

Idempotency
    Every keep rule and protection is monotone: removing other backups never makes a kept backup
    lose its place. So applying the deletions and deciding again at the same `now` deletes nothing.

Records must all belong to one target and have distinct backup ids (ValueError otherwise): mixing
targets would let one target's backups satisfy another's rules.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple, TypedDict

from warden.config.retention import RetentionPolicy
from warden.models import BackupRecord, BackupStatus


class Decision(NamedTuple):
    """What to do with one backup and why. `started_at` is in UTC.

    Immutable; a named tuple rather than a frozen dataclass because a prune run builds one per
    catalog record (100 000 in under a second; a frozen dataclass is ~4x slower to build) and
    `_asdict()` suits structured logs.
    """

    backup_id: str
    keep: bool
    reasons: tuple[str, ...]
    status: BackupStatus
    started_at: datetime
    size_bytes: int | None

    @property
    def delete(self) -> bool:
        return not self.keep


# Decision(*fields) without the Python-level __new__ of a named tuple: one per record of a prune run.
_NEW_DECISION: Callable[[tuple[object, ...]], Decision] = functools.partial(tuple.__new__, Decision)


class Summary(TypedDict):
    kept: int
    deleted: int
    bytes_freed: int


# A calendar rule: its name, and the period key / label of a UTC date. Keys only ever decrease
# along a newest-first walk, so the backups of one period are a run in a sorted history.
_Period = tuple[str, Callable[[date], object], Callable[[date], str]]
_DAY: _Period = ("day", lambda d: d, date.isoformat)
_WEEK: _Period = ("week", lambda d: d.isocalendar()[:2], lambda d: "{}-W{:02d}".format(*d.isocalendar()[:2]))
_MONTH: _Period = ("month", lambda d: (d.year, d.month), lambda d: f"{d.year}-{d.month:02d}")
_YEAR: _Period = ("year", lambda d: d.year, lambda d: str(d.year))


def decide(records: Iterable[BackupRecord], policy: RetentionPolicy, now: datetime) -> list[Decision]:
    """Decide, for each backup of one target, whether to keep it, with the reasons (newest first).

    See the module docstring for the semantics. Raises ValueError for a naive `now` or timestamp,
    records of several targets, or a repeated backup id.
    """
    now = _as_utc(now, "now")
    # "older than max_age_days": now - started_at > max_age_days, i.e. started_at < cutoff
    cutoff = now - timedelta(days=policy.max_age_days) if policy.max_age_days is not None else None
    min_keep, keep_last = policy.min_keep, policy.keep_last
    min_keep_reason = f"kept: one of the {min_keep} newest good backups (min_keep)"
    last_reason = f"kept: one of the last {keep_last}"
    # [name, periods still to keep, key of a date, label of a date, key of the current period]
    calendar_rules = [
        [name, count, key_of, label_of, None]
        for (name, key_of, label_of), count in (
            (_DAY, policy.keep_daily), (_WEEK, policy.keep_weekly),
            (_MONTH, policy.keep_monthly), (_YEAR, policy.keep_yearly),
        )
        if count > 0
    ]

    # Every rule and protection depends only on newer backups, so one newest-first walk decides all.
    # Most of a long history can be neither protected nor kept (count rules used up, no new calendar
    # period since the previous good backup): those take a fast path. So do those kept by keep_last
    # alone (a long keep_last, past min_keep, no new calendar period): their reasons never change.
    head = max(min_keep, keep_last)
    past_ceiling_unkept = (f"deleted: older than {policy.max_age_days} days and not kept by any rule",)
    last_only = (last_reason,)
    last_past_ceiling = _past_ceiling(policy.max_age_days, [], [last_reason])[1] if cutoff is not None else ()
    decisions: list[Decision] = []
    append = decisions.append
    new_decision = _NEW_DECISION
    good_seen = 0
    verified_seen = False
    last_day = None  # UTC date of the previous good backup: periods are made of whole days
    for record, started in zip(*_newest_first(records), strict=True):
        backup_id, status = record.backup_id, record.status
        # `==` on the str values: hashing an enum member (`in GOOD_BACKUP`) is a Python-level call.
        is_verified = status == _VERIFIED
        if not is_verified and status != _COMPLETED:
            keep, reasons = _decide_not_good(record, started, now, policy)
            append(new_decision((backup_id, keep, reasons, status, started, record.size_bytes)))
            continue
        day = started.date() if calendar_rules else None
        new_day = day is not None and day != last_day
        if not new_day and not record.hold and (verified_seen or not is_verified):
            if good_seen >= head:  # no rule or protection left for it
                reasons = past_ceiling_unkept if cutoff is not None and started < cutoff else _NOT_KEPT
                append(new_decision((backup_id, False, reasons, status, started, record.size_bytes)))
                continue
            if good_seen >= min_keep:  # so good_seen < keep_last: keep_last is all that keeps it
                good_seen += 1
                if cutoff is not None and started < cutoff:
                    append(new_decision((backup_id, False, last_past_ceiling, status, started, record.size_bytes)))
                else:
                    append(new_decision((backup_id, True, last_only, status, started, record.size_bytes)))
                continue

        protected = [_ON_HOLD] if record.hold else []
        if is_verified and not verified_seen:
            verified_seen = True
            protected.append(_NEWEST_VERIFIED)
        if good_seen < min_keep:
            protected.append(min_keep_reason)
        rules = [last_reason] if good_seen < keep_last else []
        good_seen += 1
        if new_day:
            last_day = day
            for rule in calendar_rules:
                key = rule[2](day)
                if key != rule[4]:  # the first (so newest) good backup of a new period
                    rules.append(f"kept: newest of {rule[0]} {rule[3](day)}")
                    rule[1] -= 1
                    rule[4] = key
            if any(rule[1] == 0 for rule in calendar_rules):
                calendar_rules = [rule for rule in calendar_rules if rule[1] > 0]

        if cutoff is not None and started < cutoff:
            keep, reasons = _past_ceiling(policy.max_age_days, protected, rules)
        elif protected or rules:
            keep, reasons = True, (*protected, *rules)
        else:
            keep, reasons = False, _NOT_KEPT
        append(new_decision((backup_id, keep, reasons, status, started, record.size_bytes)))
    return decisions


def summarize(decisions: Iterable[Decision]) -> Summary:
    """How many backups are kept and deleted, and the bytes the deletions free (unknown sizes as 0)."""
    kept = deleted = freed = 0
    for decision in decisions:
        if decision.keep:
            kept += 1
        else:
            deleted += 1
            freed += decision.size_bytes or 0
    return {"kept": kept, "deleted": deleted, "bytes_freed": freed}


_COMPLETED, _VERIFIED, _EXPIRED = "COMPLETED", "VERIFIED", "EXPIRED"
_RUNNING_STATUS, _FAILED_STATUS, _CORRUPT_STATUS = "RUNNING", "FAILED", "CORRUPT"
_ON_HOLD = "kept: on hold"
_NEWEST_VERIFIED = "kept: newest VERIFIED backup"
_NOT_KEPT = ("deleted: not kept by any rule",)
_RUNNING = "kept: RUNNING, not pruned (the lease cleanup handles crashed runs)"


def _as_utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is UTC:
        return value
    if value.utcoffset() is None:
        raise _naive(value, what)
    return value.astimezone(UTC)


def _naive(value: datetime, what: str) -> ValueError:
    return ValueError(f"{what} must be timezone-aware (UTC), got naive {value.isoformat()}")


def _newest_first(records: Iterable[BackupRecord]) -> tuple[list[BackupRecord], list[datetime]]:
    """The live (not EXPIRED) records newest first, and their start times in UTC.

    Ties in start time are broken by backup_id (the larger first), so the order is total.
    """
    # Whole-list comprehensions and index sorts rather than one loop building a tuple per record:
    # this runs over the whole catalog, and fewer long-lived objects means fewer full GC passes.
    records = list(records)
    targets = {record.target for record in records}
    if len(targets) > 1:
        raise ValueError(f"retention decides one target at a time, got {sorted(targets)}")
    all_ids = [record.backup_id for record in records]
    if len(set(all_ids)) != len(all_ids):
        repeated = sorted(backup_id for backup_id, count in Counter(all_ids).items() if count > 1)
        raise ValueError(f"backup ids appear more than once: {repeated}")

    live = [record for record in records if record.status != _EXPIRED]
    naive = next((record for record in live if record.started_at.utcoffset() is None), None)
    if naive is not None:
        raise _naive(naive.started_at, f"started_at of {naive.backup_id}")
    starts = [record.started_at.astimezone(UTC) for record in live]
    ids = [record.backup_id for record in live]
    order = sorted(range(len(live)), key=ids.__getitem__, reverse=True)
    order.sort(key=starts.__getitem__, reverse=True)  # stable: equal times stay in id order
    return [live[i] for i in order], [starts[i] for i in order]


def _past_ceiling(max_age_days: int, protected: list[str], rules: list[str]) -> tuple[bool, tuple[str, ...]]:
    older = f"older than {max_age_days} days"
    if protected:
        return True, (*protected, f"kept: {older}, but max_age_days never deletes a protected backup")
    if rules:
        overridden = ", ".join(reason.removeprefix("kept: ") for reason in rules)
        return False, (f"deleted: {older} (max_age_days is a hard ceiling over: {overridden})",)
    return False, (f"deleted: {older} and not kept by any rule",)


def _decide_not_good(record: BackupRecord, started: datetime, now: datetime,
                     policy: RetentionPolicy) -> tuple[bool, tuple[str, ...]]:
    """`started` is the record's start time, already checked and in UTC (_newest_first)."""
    protected = (_ON_HOLD,) if record.hold else ()
    status = record.status
    if status == _RUNNING_STATUS:
        return True, (*protected, _RUNNING)
    if status != _FAILED_STATUS and status != _CORRUPT_STATUS:  # a status this module does not know: keep
        return True, (*protected, f"kept: status {status} is not handled by retention")
    # A failed record is kept from its last known event: a backup found CORRUPT today is news.
    # Aware datetimes compare and subtract in UTC whatever their zone, so only naive ones need care.
    last_event = started
    for at in (record.finished_at, record.verified_at):
        if at is not None:
            if at.utcoffset() is None:
                raise _naive(at, f"timestamps of {record.backup_id}")
            last_event = max(last_event, at)
    age = now - last_event
    limit = policy.failed_retention_days
    kept_for = f"(failed records kept {_days(limit)})"
    if age > timedelta(days=limit):
        if protected:
            return True, protected
        when = f"over {_days(limit)}" if age.days <= limit else _days(age.days)
        return False, (f"deleted: {record.status} {when} ago {kept_for}",)
    if age < timedelta(0):
        when = "with a timestamp in the future"
    elif age.days == 0:
        when = "less than a day ago"
    else:
        when = f"{_days(age.days)} ago"
    return True, (*protected, f"kept: {record.status} {when} {kept_for}")


def _days(count: int) -> str:
    return "1 day" if count == 1 else f"{count} days"
