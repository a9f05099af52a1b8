"""Server versions as the servers report them, and the support policy's verdicts (pure: no server)."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from warden.config.health import HealthThresholds
from warden.versions import (
    BUILTIN_END_OF_SUPPORT,
    Support,
    SupportPolicy,
    VersionError,
    compare_versions,
    end_of_support,
    judge_support,
    parse_version,
    support_series,
)


@pytest.mark.parametrize(("text", "numbers", "suffix"), [
    ("18.1", (18, 1), ""),
    ("15.18 (Debian 15.18-1.pgdg120+1)", (15, 18), "(Debian 15.18-1.pgdg120+1)"),
    ("17beta2", (17,), "beta2"),
    ("9.6.24", (9, 6, 24), ""),
    ("5.26.30", (5, 26, 30), ""),
    ("2025.10.1", (2025, 10, 1), ""),
    ("4.4.44", (4, 4, 44), ""),
    ("  16.4  ", (16, 4), ""),
])
def test_parse_reads_the_versions_servers_report(text: str, numbers: tuple[int, ...], suffix: str) -> None:
    v = parse_version(text)
    assert (v.numbers, v.suffix, v.raw) == (numbers, suffix, text.strip())


@pytest.mark.parametrize("text", ["", "latest", "v", "PostgreSQL", ".5"])
def test_parse_refuses_what_is_not_a_version(text: str) -> None:
    with pytest.raises(VersionError, match="not a server version"):
        parse_version(text)


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("18.1", "19", -1), ("18.1", "18", 1), ("18.0", "18", 0), ("15.18", "15.9", 1),
    ("5.26.30", "5.26.9", 1), ("2025.10.1", "5.26.30", 1), ("4.4.44", "5.26", -1),
    ("18beta1", "18", -1), ("18", "18rc1", 1), ("18devel", "17.6", 1),
    ("15.18 (Debian 15.18-1.pgdg120+1)", "15.18", 0),
])
def test_versions_compare_numerically_with_prereleases_first(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


@pytest.mark.parametrize(("engine", "version", "series"), [
    ("postgres", "18.1", "18"), ("postgres", "15.18 (Debian)", "15"), ("postgres", "9.6.24", "9.6"),
    ("neo4j", "5.26.30", "5.26"), ("neo4j", "4.4.44", "4.4"), ("neo4j", "2025.10.1", "2025.10"),
    ("neo4j", "5", "5.0"),
])
def test_support_series_is_the_major_for_postgres_and_major_minor_for_neo4j(engine: str, version: str,
                                                                           series: str) -> None:
    assert support_series(engine, version) == series


def test_builtin_dates_are_postgres_community_eol_and_neo4j_lts() -> None:
    pg = BUILTIN_END_OF_SUPPORT["postgres"]
    assert [pg[str(m)] for m in range(13, 19)] == [
        date(2025, 11, 13), date(2026, 11, 12), date(2027, 11, 11), date(2028, 11, 9), date(2029, 11, 8),
        date(2030, 11, 14)]
    assert BUILTIN_END_OF_SUPPORT["neo4j"] == {"4.4": date(2025, 11, 30), "5.26": date(2028, 6, 30)}


def test_the_most_specific_date_wins_and_config_overrides_the_builtin() -> None:
    policy = SupportPolicy(end_of_support={"5": date(2026, 1, 1), "5.26.30": date(2029, 1, 1)})
    assert end_of_support("neo4j", parse_version("5.26.30"), policy) == date(2029, 1, 1)
    assert end_of_support("neo4j", parse_version("5.26.31"), policy) == date(2028, 6, 30)  # builtin 5.26
    assert end_of_support("neo4j", parse_version("5.20.0"), policy) == date(2026, 1, 1)
    assert end_of_support("neo4j", parse_version("2025.10.1"), policy) is None
    overridden = SupportPolicy(end_of_support={"15": date(2027, 6, 30)})
    assert end_of_support("postgres", parse_version("15.18"), overridden) == date(2027, 6, 30)
    assert end_of_support("postgres", parse_version("15.18"), SupportPolicy(builtin_dates=False)) is None


TODAY = date(2026, 12, 2)


@pytest.mark.parametrize(("engine", "version", "policy", "support", "severity", "days", "words"), [
    # far from its end: pass, with the date
    ("postgres", "18.1", SupportPolicy(), Support.SUPPORTED, "pass", 1443, "supported until 2030-11-14"),
    ("postgres", "15.18", SupportPolicy(), Support.SUPPORTED, "pass", 344, "supported until 2027-11-11"),
    # within warn_days_before: warn with the end date
    ("postgres", "15.18", SupportPolicy(warn_days_before=400), Support.ENDING, "warn", 344,
     "ends support on 2027-11-11 (344 days left)"),
    # past its end: the policy's `outdated` severity, with the date it ended
    ("postgres", "14.19", SupportPolicy(), Support.ENDED, "warn", -20, "reached its end of support on 2026-11-12"),
    ("postgres", "13.2", SupportPolicy(outdated="fail"), Support.ENDED, "fail", -384, "2025-11-13"),
    # below the minimum, however supported
    ("postgres", "18.1", SupportPolicy(minimum_version="19"), Support.SUPPORTED, "warn", 1443,
     "below the minimum version 19"),
    ("neo4j", "5.26.30", SupportPolicy(minimum_version="2025.01"), Support.SUPPORTED, "warn", 576,
     "below the minimum version 2025.01"),
    ("neo4j", "5.26.30", SupportPolicy(minimum_version="5.26.30"), Support.SUPPORTED, "pass", 576, "2028-06-30"),
    ("neo4j", "4.4.44", SupportPolicy(), Support.ENDED, "warn", -367, "neo4j 4.4 reached its end of support"),
    # no date known: pass, and say how to configure one
    ("neo4j", "2025.10.1", SupportPolicy(), Support.UNKNOWN, "pass", None, "no end-of-support date known"),
])
def test_judge_support(engine: str, version: str, policy: SupportPolicy, support: Support, severity: str,
                       days: int | None, words: str) -> None:
    verdict = judge_support(engine, version, policy, TODAY)
    assert (verdict.support, verdict.severity, verdict.days_left) == (support, severity, days), verdict.message
    assert words in verdict.message


def test_policy_refuses_bad_versions_and_keys_and_rides_in_health_thresholds() -> None:
    with pytest.raises(ValidationError, match="not a server version"):
        SupportPolicy(minimum_version="latest")
    with pytest.raises(ValidationError, match="not a version series"):
        SupportPolicy.model_validate({"end_of_support": {"fifteen": "2027-11-11"}})
    with pytest.raises(ValidationError):
        SupportPolicy.model_validate({"warn_days_before": -1})
    with pytest.raises(ValidationError):
        SupportPolicy.model_validate({"minimum": "16"})  # misspelt: refused, not ignored
    thresholds = HealthThresholds.model_validate({"support": {
        "minimum_version": "16", "end_of_support": {"5.26": "2028-06-30"}, "warn_days_before": 30}})
    assert thresholds.support.end_of_support == {"5.26": date(2028, 6, 30)}
    assert HealthThresholds().support == SupportPolicy()
