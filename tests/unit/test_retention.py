"""Retention decides which backups of a target stay, and says why; it never deletes a protected one."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden.config.retention import RetentionPolicy
from warden.models import BackupRecord, BackupStatus
from warden.retention import Decision, decide, summarize

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # a Wednesday, ISO week 2026-W48
GOOD = (BackupStatus.COMPLETED, BackupStatus.VERIFIED)
NOT_GOOD = (BackupStatus.FAILED, BackupStatus.CORRUPT, BackupStatus.RUNNING, BackupStatus.EXPIRED)
_serial = itertools.count()


def backup(started: datetime | str, status: BackupStatus | str = BackupStatus.COMPLETED, *, hold: bool = False,
           size: int | None = 100, serial: int | None = None, target: str = "db", **fields: object) -> BackupRecord:
    """A catalog record; its id is made from the UTC start time, like the real ones."""
    if isinstance(started, str):
        started = datetime.fromisoformat(started)
    serial = next(_serial) if serial is None else serial
    utc = started.astimezone(UTC) if started.tzinfo else started
    return BackupRecord(
        target=target, backup_id=f"{utc:%Y%m%dT%H%M%SZ}-{serial:08x}", engine="postgres", method="pg_dump",
        status=BackupStatus(status), started_at=started, hold=hold, size_bytes=size, **fields,
    )


def only(**rules: int | None) -> RetentionPolicy:
    """A policy where every rule is off (and min_keep is 1) unless given."""
    off = {"keep_last": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, "keep_yearly": 0,
           "min_keep": 1, "failed_retention_days": 7}
    return RetentionPolicy(**{**off, **rules})


def kept_days(decisions: list[Decision]) -> set[str]:
    return {d.started_at.date().isoformat() for d in decisions if d.keep}


def by_id(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.backup_id: d for d in decisions}


def daily(first: str, last: str, hour: int = 2) -> list[BackupRecord]:
    """One COMPLETED backup a day at `hour` UTC, from `first` to `last` (dates, inclusive)."""
    day, end = date.fromisoformat(first), date.fromisoformat(last)
    records = []
    while day <= end:
        records.append(backup(datetime(day.year, day.month, day.day, hour, tzinfo=UTC)))
        day += timedelta(days=1)
    return records


# --- Concrete examples -------------------------------------------------------------------------


def test_400_days_of_daily_backups_keep_7_days_4_weeks_and_12_months() -> None:
    # Given one backup a day at 02:00 UTC for 400 days, up to today (Wednesday 2026-11-25, week 48)
    history = daily("2025-10-22", "2026-11-25")
    assert len(history) == 400
    # When the policy keeps 7 daily, 4 weekly and 12 monthly backups
    decisions = decide(history, only(keep_daily=7, keep_weekly=4, keep_monthly=12), NOW)
    # Then, worked out by hand on a calendar:
    seven_days = {"2026-11-25", "2026-11-24", "2026-11-23", "2026-11-22", "2026-11-21", "2026-11-20", "2026-11-19"}
    # weeks 48 (still running: today), 47, 46 and 45 end on Sundays 11-22, 11-15, 11-08
    four_weeks = {"2026-11-25", "2026-11-22", "2026-11-15", "2026-11-08"}
    # November so far (today), then the last day of each month back to December 2025
    twelve_months = {"2026-11-25", "2026-10-31", "2026-09-30", "2026-08-31", "2026-07-31", "2026-06-30",
                     "2026-05-31", "2026-04-30", "2026-03-31", "2026-02-28", "2026-01-31", "2025-12-31"}
    assert kept_days(decisions) == seven_days | four_weeks | twelve_months
    assert summarize(decisions) == {"kept": 20, "deleted": 380, "bytes_freed": 380 * 100}
    by_day = {d.started_at.date().isoformat(): d for d in decisions}
    assert by_day["2026-11-25"].reasons == (
        "kept: one of the 1 newest good backups (min_keep)",
        "kept: newest of day 2026-11-25", "kept: newest of week 2026-W48", "kept: newest of month 2026-11",
    )
    assert by_day["2026-11-22"].reasons == ("kept: newest of day 2026-11-22", "kept: newest of week 2026-W47")
    assert by_day["2025-12-31"].reasons == ("kept: newest of month 2025-12",)
    assert by_day["2025-12-30"].reasons == ("deleted: not kept by any rule",)


def test_yearly_rule_keeps_the_newest_backup_of_each_calendar_year() -> None:
    history = daily("2024-12-20", "2026-01-10")
    decisions = decide(history, only(keep_yearly=5), NOW)
    assert kept_days(decisions) == {"2026-01-10", "2025-12-31", "2024-12-31"}


def test_calendar_rules_count_periods_that_have_a_backup_not_calendar_periods() -> None:
    # Given three backups weeks apart (an outage in between)
    history = [backup("2026-11-25T02:00Z"), backup("2026-11-10T02:00Z"), backup("2026-10-01T02:00Z"),
               backup("2026-09-01T02:00Z")]
    # When 3 daily backups are kept
    decisions = decide(history, only(keep_daily=3), NOW)
    # Then the 3 most recent days that HAVE a backup are kept (restic/borg), not just the last 3 days
    assert kept_days(decisions) == {"2026-11-25", "2026-11-10", "2026-10-01"}


def test_only_the_newest_backup_of_a_day_is_kept_by_the_daily_rule() -> None:
    history = [backup("2026-11-24T01:00Z"), backup("2026-11-24T13:00Z"), backup("2026-11-24T23:59:59Z"),
               backup("2026-11-25T00:00Z")]
    decisions = decide(history, only(keep_daily=2), NOW)
    assert [d.started_at.isoformat() for d in decisions if d.keep] == [
        "2026-11-25T00:00:00+00:00", "2026-11-24T23:59:59+00:00"]


def test_keep_last_keeps_the_n_newest_good_backups_whatever_their_day() -> None:
    history = [backup(NOW - timedelta(hours=h)) for h in range(10)]
    history.append(backup(NOW - timedelta(minutes=30), BackupStatus.FAILED))
    decisions = decide(history, only(keep_last=3), NOW)
    kept = [d for d in decisions if d.keep and d.status in GOOD]
    assert [d.started_at for d in kept] == [NOW, NOW - timedelta(hours=1), NOW - timedelta(hours=2)]
    assert kept[1].reasons == ("kept: one of the last 3",)


def test_backup_kept_by_several_rules_lists_every_reason() -> None:
    held_newest = backup(NOW - timedelta(hours=1), BackupStatus.VERIFIED, hold=True)
    policy = only(keep_last=2, keep_daily=1, keep_weekly=1, keep_monthly=1, keep_yearly=1, min_keep=2)
    [decision] = decide([held_newest], policy, NOW)
    assert decision.reasons == (
        "kept: on hold", "kept: newest VERIFIED backup", "kept: one of the 2 newest good backups (min_keep)",
        "kept: one of the last 2", "kept: newest of day 2026-11-25", "kept: newest of week 2026-W48",
        "kept: newest of month 2026-11", "kept: newest of year 2026",
    )


# --- Protections and max_age_days ---------------------------------------------------------------


def test_prune_keeps_newest_verified_backup_past_max_age() -> None:
    # Given the only VERIFIED backup is 400 days old and newer ones were never verified
    verified = backup(NOW - timedelta(days=400), BackupStatus.VERIFIED)
    newer = [backup(NOW - timedelta(days=d)) for d in range(1, 4)]
    # When max_age_days is 30
    decisions = by_id(decide([verified, *newer], only(keep_last=3, max_age_days=30), NOW))
    # Then the old VERIFIED backup stays, and says why
    assert decisions[verified.backup_id].keep
    assert decisions[verified.backup_id].reasons == (
        "kept: newest VERIFIED backup", "kept: older than 30 days, but max_age_days never deletes a protected backup")
    assert all(decisions[r.backup_id].keep for r in newer)


def test_only_the_newest_verified_backup_is_protected() -> None:
    newest, older = backup(NOW - timedelta(days=50), "VERIFIED"), backup(NOW - timedelta(days=60), "VERIFIED")
    recent = backup(NOW - timedelta(days=1))
    decisions = by_id(decide([newest, older, recent], only(max_age_days=30), NOW))
    assert decisions[newest.backup_id].keep
    assert decisions[older.backup_id].reasons == ("deleted: older than 30 days and not kept by any rule",)


def test_backup_on_hold_is_never_deleted_whatever_its_status_or_age() -> None:
    held = [backup(NOW - timedelta(days=900), hold=True), backup(NOW - timedelta(days=900), "FAILED", hold=True),
            backup(NOW - timedelta(days=900), "CORRUPT", hold=True)]
    decisions = decide([backup(NOW), *held], only(max_age_days=30, failed_retention_days=1), NOW)
    assert [d.reasons[0] for d in decisions if d.backup_id in {r.backup_id for r in held}] == ["kept: on hold"] * 3
    assert all(d.keep for d in decisions)


def test_min_keep_keeps_the_newest_good_backups_past_max_age() -> None:
    # Given nothing but backups past max_age_days, and a failed one newer than all of them
    old = [backup(NOW - timedelta(days=100 + d)) for d in range(6)]
    failed = backup(NOW - timedelta(days=50), "FAILED")
    # When min_keep is 3
    decisions = decide([*old, failed], only(keep_daily=30, max_age_days=30, min_keep=3, failed_retention_days=90), NOW)
    # Then the 3 newest GOOD backups stay, the failed one does not count towards min_keep
    assert [d.backup_id for d in decisions if d.keep and d.status in GOOD] == [r.backup_id for r in old[:3]]
    # 103 days before 2026-11-25
    assert by_id(decisions)[old[3].backup_id].reasons == (
        "deleted: older than 30 days (max_age_days is a hard ceiling over: newest of day 2026-08-14)",)


def test_max_age_is_a_ceiling_over_the_keep_rules() -> None:
    history = daily("2026-01-01", "2026-11-25")
    decisions = decide(history, only(keep_monthly=12, max_age_days=60), NOW)
    # Months Nov, Oct and the end of September (2026-09-30 is 56 days before now) survive; older month-ends go
    assert kept_days(decisions) == {"2026-11-25", "2026-10-31", "2026-09-30"}
    august = next(d for d in decisions if d.started_at.date() == date(2026, 8, 31))
    assert august.reasons == (
        "deleted: older than 60 days (max_age_days is a hard ceiling over: newest of month 2026-08)",)


def test_backup_exactly_max_age_days_old_is_not_older_than_max_age() -> None:
    at_limit, just_past = backup(NOW - timedelta(days=30)), backup(NOW - timedelta(days=30, seconds=1))
    decisions = by_id(decide([backup(NOW), at_limit, just_past], only(keep_last=3, max_age_days=30), NOW))
    assert decisions[at_limit.backup_id].reasons == ("kept: one of the last 3",)
    assert decisions[just_past.backup_id].reasons == (
        "deleted: older than 30 days (max_age_days is a hard ceiling over: one of the last 3)",)


def test_good_backup_not_kept_by_any_rule_is_deleted_even_without_max_age() -> None:
    decisions = decide([backup(NOW), backup(NOW - timedelta(days=1))], only(), NOW)
    assert [d.keep for d in decisions] == [True, False]
    assert decisions[1].reasons == ("deleted: not kept by any rule",)


def test_running_backup_is_never_deleted() -> None:
    running = backup(NOW - timedelta(days=1000), BackupStatus.RUNNING)
    [decision] = decide([running], only(max_age_days=1, failed_retention_days=0), NOW)
    assert decision.keep
    assert decision.reasons == ("kept: RUNNING, not pruned (the lease cleanup handles crashed runs)",)


def test_expired_records_get_no_decision() -> None:
    expired = backup(NOW - timedelta(days=3), BackupStatus.EXPIRED, size=10**9)
    decisions = decide([backup(NOW), expired], only(), NOW)
    assert [d.status for d in decisions] == [BackupStatus.COMPLETED]
    assert summarize(decisions)["bytes_freed"] == 0


# --- FAILED / CORRUPT records --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "age", "keep", "reason"),
    [
        ("FAILED", timedelta(days=9), False, "deleted: FAILED 9 days ago (failed records kept 7 days)"),
        ("CORRUPT", timedelta(days=30), False, "deleted: CORRUPT 30 days ago (failed records kept 7 days)"),
        ("FAILED", timedelta(days=7, hours=3), False, "deleted: FAILED over 7 days ago (failed records kept 7 days)"),
        ("FAILED", timedelta(days=7), True, "kept: FAILED 7 days ago (failed records kept 7 days)"),
        ("FAILED", timedelta(days=2, hours=5), True, "kept: FAILED 2 days ago (failed records kept 7 days)"),
        ("CORRUPT", timedelta(days=1), True, "kept: CORRUPT 1 day ago (failed records kept 7 days)"),
        ("FAILED", timedelta(hours=3), True, "kept: FAILED less than a day ago (failed records kept 7 days)"),
    ],
)
def test_failed_records_stay_failed_retention_days(status: str, age: timedelta, keep: bool, reason: str) -> None:
    record = backup(NOW - age, status)
    decision = by_id(decide([backup(NOW), record], only(failed_retention_days=7), NOW))[record.backup_id]
    assert (decision.keep, decision.reasons) == (keep, (reason,))


def test_failed_retention_counts_from_the_last_event_of_the_record() -> None:
    # Given a 60-day-old backup found CORRUPT yesterday, and a backup that failed 2 days after starting
    found_corrupt = backup(NOW - timedelta(days=60), "CORRUPT", finished_at=NOW - timedelta(days=60),
                           verified_at=NOW - timedelta(days=1))
    slow_failure = backup(NOW - timedelta(days=9), "FAILED", finished_at=NOW - timedelta(days=7))
    # When failed records are kept 7 days
    decisions = by_id(decide([found_corrupt, slow_failure], only(failed_retention_days=7), NOW))
    # Then both are still there to be looked at
    assert decisions[found_corrupt.backup_id].reasons == ("kept: CORRUPT 1 day ago (failed records kept 7 days)",)
    assert decisions[slow_failure.backup_id].keep


# --- Calendar: UTC, month ends, ISO weeks -----------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "last_of_february"), [(2028, "2028-02-29T12:00:00+00:00"), (2027, "2027-02-28T12:00:00+00:00")])
def test_month_rule_keeps_the_last_backup_of_february_in_leap_and_common_years(year: int,
                                                                                last_of_february: str) -> None:
    history = [backup(f"{year}-01-31T23:59:59Z"), backup(f"{year}-02-01T00:00:00Z"), backup(f"{year}-02-28T11:00Z"),
               backup(f"{year}-02-28T12:00Z"), backup(f"{year}-03-01T00:00:00Z")]
    if year == 2028:
        history.append(backup("2028-02-29T12:00Z"))
    decisions = decide(history, only(keep_monthly=3), datetime(year, 3, 2, tzinfo=UTC))
    assert [d.started_at.isoformat() for d in decisions if d.keep] == [
        f"{year}-03-01T00:00:00+00:00", last_of_february, f"{year}-01-31T23:59:59+00:00"]
    assert f"kept: newest of month {year}-02" in next(d for d in decisions if d.started_at.month == 2).reasons


def test_leap_day_is_a_day_of_its_own() -> None:
    history = daily("2028-02-27", "2028-03-01")
    decisions = decide(history, only(keep_daily=3), datetime(2028, 3, 1, 6, tzinfo=UTC))
    assert kept_days(decisions) == {"2028-03-01", "2028-02-29", "2028-02-28"}


def test_iso_week_53_spans_new_year() -> None:
    # Given (as Python's calendar says) 2026-12-28 .. 2027-01-03 form week 2026-W53
    assert date(2026, 12, 31).isocalendar()[:2] == (2026, 53)
    assert date(2027, 1, 1).isocalendar()[:2] == (2026, 53)
    assert date(2027, 1, 4).isocalendar()[:2] == (2027, 1)
    history = [backup("2026-12-27T02:00Z"), backup("2026-12-28T02:00Z"), backup("2027-01-01T02:00Z"),
               backup("2027-01-03T02:00Z"), backup("2027-01-04T02:00Z")]
    # When 3 weekly backups are kept
    decisions = decide(history, only(keep_weekly=3), datetime(2027, 1, 5, tzinfo=UTC))
    # Then the newest of 2027-W01, of 2026-W53 (a Sunday in 2027) and of 2026-W52 stay
    assert kept_days(decisions) == {"2027-01-04", "2027-01-03", "2026-12-27"}
    assert by_id(decisions)[history[3].backup_id].reasons == ("kept: newest of week 2026-W53",)


def test_last_days_of_december_can_belong_to_week_1_of_the_next_year() -> None:
    # Given 2025-12-29 (a Monday) starts ISO week 2026-W01
    assert date(2025, 12, 29).isocalendar()[:2] == (2026, 1)
    history = [backup("2025-12-28T02:00Z"), backup("2025-12-29T02:00Z"), backup("2025-12-31T02:00Z"),
               backup("2026-01-02T02:00Z"), backup("2026-01-05T02:00Z")]
    now = datetime(2026, 1, 6, tzinfo=UTC)
    # When weeks are kept, December 29-31 and January 2 share a week
    weekly = decide(history, only(keep_weekly=3), now)
    assert kept_days(weekly) == {"2026-01-05", "2026-01-02", "2025-12-28"}
    assert by_id(weekly)[history[3].backup_id].reasons == ("kept: newest of week 2026-W01",)
    # But years are calendar years, not ISO years: 2025-12-31 is the newest backup of 2025
    yearly = decide(history, only(keep_yearly=2), now)
    assert kept_days(yearly) == {"2026-01-05", "2025-12-31"}


def test_backup_shortly_after_midnight_in_paris_counts_for_the_previous_utc_day_and_month() -> None:
    # Given a backup at 2026-03-01T00:30+01:00, which is 2026-02-28T23:30 UTC
    paris = backup("2026-03-01T00:30:00+01:00")
    history = [backup("2026-02-27T12:00Z"), paris, backup("2026-03-01T12:00Z")]
    # When months are kept
    decisions = by_id(decide(history, only(keep_monthly=2, keep_daily=2), datetime(2026, 3, 2, tzinfo=UTC)))
    # Then it is February's newest backup, and its day is February 28
    assert decisions[paris.backup_id].reasons == ("kept: newest of day 2026-02-28", "kept: newest of month 2026-02")
    assert decisions[paris.backup_id].started_at == datetime(2026, 2, 28, 23, 30, tzinfo=UTC)
    assert not decisions[history[0].backup_id].keep


def test_now_in_another_time_zone_is_the_same_instant() -> None:
    history = daily("2026-10-01", "2026-11-25")
    policy = only(keep_daily=3, max_age_days=20)
    tokyo_now = NOW.astimezone(timezone(timedelta(hours=9)))
    assert decide(history, policy, tokyo_now) == decide(history, policy, NOW)


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        decide([backup(NOW)], only(), datetime(2026, 11, 25, 6))
    with pytest.raises(ValueError, match=r"started_at of \S+ must be timezone-aware"):
        decide([backup(datetime(2026, 11, 25, 6))], only(), NOW)
    failed = backup(NOW - timedelta(days=1), "FAILED", finished_at=datetime(2026, 11, 24, 7))
    with pytest.raises(ValueError, match="timezone-aware"):
        decide([failed], only(), NOW)


# --- Input checks, ordering, summary -------------------------------------------------------------


def test_records_of_two_targets_are_rejected() -> None:
    with pytest.raises(ValueError, match="one target at a time"):
        decide([backup(NOW, target="a"), backup(NOW, target="b")], only(), NOW)


def test_repeated_backup_id_is_rejected() -> None:
    with pytest.raises(ValueError, match="more than once"):
        decide([backup(NOW, serial=1), backup(NOW, "EXPIRED", serial=1)], only(), NOW)


def test_decisions_are_newest_first_and_equal_start_times_are_ordered_by_id() -> None:
    history = [backup(NOW - timedelta(days=2)), backup(NOW, serial=1), backup(NOW, serial=2),
               backup(NOW - timedelta(days=1), "FAILED")]
    decisions = decide(history, only(keep_last=1), NOW)
    assert [d.backup_id for d in decisions] == [history[2].backup_id, history[1].backup_id,
                                                history[3].backup_id, history[0].backup_id]
    assert decisions[0].keep and not decisions[1].keep


def test_summarize_counts_kept_and_deleted_and_bytes_freed() -> None:
    history = [backup(NOW, size=5), backup(NOW - timedelta(days=1), size=7),
               backup(NOW - timedelta(days=2), size=None), backup(NOW - timedelta(days=30), "FAILED", size=11)]
    decisions = decide(history, only(), NOW)
    assert summarize(decisions) == {"kept": 1, "deleted": 3, "bytes_freed": 18}
    assert summarize([]) == {"kept": 0, "deleted": 0, "bytes_freed": 0}
    assert decide([], only(), NOW) == []


# --- Properties over random histories -------------------------------------------------------------

ZONES = [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30)),
         timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]
SPANS = [timedelta(days=2), timedelta(days=60), timedelta(days=3 * 365)]


@functools.cache
def _record_fields(statuses: tuple[BackupStatus, ...], span: timedelta, step: int) -> st.SearchStrategy:
    """(seconds before NOW, zone, status, hold, size, run time, verified after) of one record."""
    return st.tuples(
        st.integers(-3600 // step, int(span.total_seconds()) // step).map(lambda n: n * step),
        st.sampled_from(ZONES), st.sampled_from(statuses), st.integers(0, 7).map(lambda n: n == 0),
        st.none() | st.integers(0, 10**12), st.none() | st.integers(0, 3 * 86400),
        st.none() | st.integers(0, 40 * 86400),
    )


@st.composite
def histories(draw: st.DrawFn, statuses: tuple[BackupStatus, ...] = tuple(BackupStatus), first_serial: int = 0,
              max_size: int = 40) -> list[BackupRecord]:
    """Random catalogs of one target: any statuses, holds, zones, start times over 2 days to 3 years
    (on the hour sometimes, so that equal start times happen), a few in the near future (clock skew)."""
    span, step = draw(st.sampled_from(SPANS)), draw(st.sampled_from([1, 3600]))
    records = []
    for serial, fields in enumerate(draw(st.lists(_record_fields(statuses, span, step), max_size=max_size)),
                                    start=first_serial):
        seconds, zone, status, hold, size, run_time, verified_after = fields
        started = (NOW - timedelta(seconds=seconds)).astimezone(zone)
        finished = started + timedelta(seconds=run_time) if run_time is not None else None
        verified = None
        if finished is not None and verified_after is not None and status in (BackupStatus.VERIFIED,
                                                                               BackupStatus.CORRUPT):
            verified = finished + timedelta(seconds=verified_after)
        records.append(backup(started, status, hold=hold, serial=serial, size=size, finished_at=finished,
                              verified_at=verified))
    return records


policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(0, 8), keep_daily=st.integers(0, 10), keep_weekly=st.integers(0, 6),
    keep_monthly=st.integers(0, 14), keep_yearly=st.integers(0, 3),
    max_age_days=st.none() | st.integers(1, 1200), min_keep=st.integers(1, 5),
    failed_retention_days=st.integers(0, 30),
)
nows = st.sampled_from(ZONES).map(NOW.astimezone)
PROPERTY = settings(max_examples=150, deadline=None)


def newest_first(records: list[BackupRecord]) -> list[BackupRecord]:
    return sorted(records, key=lambda r: (r.started_at.astimezone(UTC), r.backup_id), reverse=True)


def good_newest_first(records: list[BackupRecord]) -> list[BackupRecord]:
    return [r for r in newest_first(records) if r.status in GOOD]


@PROPERTY
@given(histories(), policies, nows)
def test_every_live_record_gets_one_decision_newest_first_with_a_reason(
        records: list[BackupRecord], policy: RetentionPolicy, now: datetime) -> None:
    decisions = decide(records, policy, now)
    live = [r for r in newest_first(records) if r.status != BackupStatus.EXPIRED]
    assert [d.backup_id for d in decisions] == [r.backup_id for r in live]
    for decision in decisions:
        assert decision.reasons
        assert all(reason.startswith("kept: " if decision.keep else "deleted: ") for reason in decision.reasons)
        assert decision.started_at.tzinfo is UTC


@PROPERTY
@given(histories(), policies, nows)
def test_newest_verified_backup_is_never_deleted(records: list[BackupRecord], policy: RetentionPolicy,
                                                 now: datetime) -> None:
    verified = [r for r in newest_first(records) if r.status == BackupStatus.VERIFIED]
    if verified:
        assert by_id(decide(records, policy, now))[verified[0].backup_id].keep


@PROPERTY
@given(histories(), policies, nows)
def test_backup_on_hold_and_running_backup_are_never_deleted(records: list[BackupRecord], policy: RetentionPolicy,
                                                             now: datetime) -> None:
    decisions = by_id(decide(records, policy, now))
    for record in records:
        if record.status != BackupStatus.EXPIRED and (record.hold or record.status == BackupStatus.RUNNING):
            assert decisions[record.backup_id].keep


@PROPERTY
@given(histories(), policies, nows)
def test_min_keep_newest_good_backups_always_stay(records: list[BackupRecord], policy: RetentionPolicy,
                                                  now: datetime) -> None:
    decisions = by_id(decide(records, policy, now))
    assert all(decisions[r.backup_id].keep for r in good_newest_first(records)[: policy.min_keep])


@PROPERTY
@given(histories(), policies, nows)
def test_deciding_again_after_the_deletions_deletes_nothing(records: list[BackupRecord], policy: RetentionPolicy,
                                                            now: datetime) -> None:
    # Given a first run whose deletions are applied
    deleted = {d.backup_id for d in decide(records, policy, now) if not d.keep}
    remaining = [r for r in records if r.backup_id not in deleted]
    # When the policy runs again at the same instant
    second = decide(remaining, policy, now)
    # Then it deletes nothing more
    assert [d.backup_id for d in second if not d.keep] == []


@PROPERTY
@given(histories(statuses=GOOD), histories(statuses=NOT_GOOD, first_serial=1000), policies, nows)
def test_failed_corrupt_running_and_expired_records_never_change_decisions_about_good_backups(
        good: list[BackupRecord], others: list[BackupRecord], policy: RetentionPolicy, now: datetime) -> None:
    alone = decide(good, policy, now)
    mixed = [d for d in decide([*others, *good], policy, now) if d.status in GOOD]
    assert mixed == alone


@PROPERTY
@given(st.data(), histories(), policies, nows)
def test_input_order_does_not_change_decisions(data: st.DataObject, records: list[BackupRecord],
                                               policy: RetentionPolicy, now: datetime) -> None:
    shuffled = data.draw(st.permutations(records))
    assert decide(shuffled, policy, now) == decide(records, policy, now)


def _periods() -> dict[str, Callable[[date], object]]:
    return {"keep_daily": lambda d: d, "keep_weekly": lambda d: d.isocalendar()[:2],
            "keep_monthly": lambda d: (d.year, d.month), "keep_yearly": lambda d: d.year}


def expected_keep(records: list[BackupRecord], policy: RetentionPolicy, now: datetime) -> dict[str, bool]:
    """A brute-force model of the documented policy: group by period, take the newest N periods."""
    good = good_newest_first(records)
    by_rule: set[str] = {r.backup_id for r in good[: policy.keep_last]}
    for rule, period_of in _periods().items():
        newest_of: dict[object, BackupRecord] = {}
        for record in good:  # newest first: the first one seen in a period is its newest
            newest_of.setdefault(period_of(record.started_at.astimezone(UTC).date()), record)
        periods = sorted(newest_of, key=lambda p: newest_of[p].started_at, reverse=True)
        by_rule |= {newest_of[p].backup_id for p in periods[: getattr(policy, rule)]}
    verified = [r for r in good if r.status == BackupStatus.VERIFIED]
    protected = {r.backup_id for r in good[: policy.min_keep]} | {r.backup_id for r in verified[:1]}
    protected |= {r.backup_id for r in records if r.hold}

    keep = {}
    for record in records:
        if record.status in GOOD:
            too_old = policy.max_age_days is not None and now - record.started_at > timedelta(days=policy.max_age_days)
            keep[record.backup_id] = record.backup_id in protected or (record.backup_id in by_rule and not too_old)
        elif record.status in (BackupStatus.FAILED, BackupStatus.CORRUPT):
            last = max(t for t in (record.started_at, record.finished_at, record.verified_at) if t is not None)
            keep[record.backup_id] = record.hold or now - last <= timedelta(days=policy.failed_retention_days)
        elif record.status == BackupStatus.RUNNING:
            keep[record.backup_id] = True
    return keep


@PROPERTY
@given(histories(), policies, nows)
def test_decisions_match_a_brute_force_model_of_the_policy(records: list[BackupRecord], policy: RetentionPolicy,
                                                           now: datetime) -> None:
    decisions = decide(records, policy, now)
    assert {d.backup_id: d.keep for d in decisions} == expected_keep(records, policy, now)


@PROPERTY
@given(histories(statuses=GOOD), policies)
def test_kept_backup_older_than_max_age_is_always_a_protected_one(records: list[BackupRecord],
                                                                 policy: RetentionPolicy) -> None:
    policy = policy.model_copy(update={"max_age_days": 30})
    for decision in decide(records, policy, NOW):
        if decision.keep and NOW - decision.started_at > timedelta(days=30):
            assert decision.reasons[-1] == "kept: older than 30 days, but max_age_days never deletes a protected backup"
            assert any(r in decision.reasons for r in ("kept: on hold", "kept: newest VERIFIED backup")) or any(
                "(min_keep)" in r for r in decision.reasons)
