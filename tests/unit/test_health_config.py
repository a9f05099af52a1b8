"""The health configuration models, and the parts of the health runner that need no database: tier
time limits, partial results, and the metrics a report yields."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from warden.checks import Check, CheckGroup, CheckTimedOut, Tier, run_tier
from warden.config.health import (
    ConnectedRule,
    HealthThresholds,
    LicenseConfig,
    RequiredSchema,
    license_of,
    schema_of,
    thresholds_of,
)
from warden.config.target import Engine, Target
from warden.health import METRICS, format_text, metric_points
from warden.models import CheckResult, CheckStatus, HealthReport, HealthStatus, TargetHealth

TARGET = Target(name="graph-main", engine=Engine.NEO4J, secret_name="s")


def test_thresholds_default_to_the_documented_values() -> None:
    t = HealthThresholds()
    assert (t.connectivity_timeout_s, t.schema_timeout_s, t.integrity_timeout_s, t.metrics_timeout_s) == (5, 10, 30, 20)
    assert (t.connections_warn_pct, t.connections_fail_pct, t.cache_hit_warn) == (80, 95, 0.90)
    assert (t.long_query_warn_s, t.long_query_fail_s, t.long_tx_warn_s, t.dead_tuple_warn_ratio) == (60, 300, 60, 0.2)
    assert (t.wraparound_warn_age, t.wraparound_fail_age) == (500_000_000, 1_500_000_000)
    assert (t.backup_age_warn_h, t.backup_age_fail_h, t.verified_age_warn_h, t.heap_warn_pct) == (26, 50, 50, 85)
    assert t.database_tiers_s == 65


@pytest.mark.parametrize("bad", [
    {"connections_warn_pct": 96},
    {"long_query_warn_s": 400},
    {"backup_age_warn_h": 60},
    {"cache_hit_fail": 0.95},
    {"schema_violation": "error"},
    {"metrics_timeout_s": 0},
    {"connections_warn_pct": 120},
    {"heap_warn_pct_typo": 80},
])
def test_thresholds_reject_inconsistent_or_unknown_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HealthThresholds.model_validate(bad)


def test_thresholds_are_frozen() -> None:
    with pytest.raises(ValidationError):
        HealthThresholds().heap_warn_pct = 10  # type: ignore[misc]


def test_required_schema_accepts_label_shorthand_and_checks_endpoint_rules() -> None:
    schema = RequiredSchema.model_validate({
        "labels": ["Person"], "required_properties": {"Person": ["name"]},
        "must_be_connected": ["Order", {"label": "Invoice", "type": "FOR"}],
        "relationship_endpoints": [{"type": "PLACED_BY", "to_label": "Customer"}],
        "tables": ["public.orders"], "extensions": ["vector"]})
    assert schema.must_be_connected == [ConnectedRule(label="Order"), ConnectedRule(label="Invoice", type="FOR")]
    with pytest.raises(ValidationError, match="needs from_label, to_label or both"):
        RequiredSchema.model_validate({"relationship_endpoints": [{"type": "X"}]})
    with pytest.raises(ValidationError):
        RequiredSchema.model_validate({"indexs": ["typo"]})


def test_license_config_parses_an_expiry_date() -> None:
    config = LicenseConfig.model_validate({"expiry": "2027-03-31", "warn_days": 45})
    assert config.expiry == date(2027, 3, 31) and config.warn_days == 45
    with pytest.raises(ValidationError):
        LicenseConfig.model_validate({"warn_days": -1})


def test_targets_without_health_fields_get_the_defaults() -> None:
    assert thresholds_of(TARGET) == HealthThresholds()
    assert schema_of(TARGET) == RequiredSchema()
    assert license_of(TARGET) == LicenseConfig()


def test_targets_with_health_fields_use_them() -> None:
    class Configured:  # how Target looks once it has the fields
        health = HealthThresholds(heap_warn_pct=70)
        required_schema = RequiredSchema(labels=["A"])
        license = LicenseConfig(warn_days=10)

    assert thresholds_of(Configured()).heap_warn_pct == 70
    assert schema_of(Configured()).labels == ["A"]
    assert license_of(Configured()).warn_days == 10


# --- the tier runner ---------------------------------------------------------------------------


def _ok(_: Any, left: float) -> tuple[CheckStatus, str, dict[str, object]]:
    return CheckStatus.PASS, f"{left:.1f} s left", {}


def _sleep(seconds: float) -> Any:
    def run(_: Any, left: float) -> tuple[CheckStatus, str, dict[str, object]]:
        time.sleep(seconds)
        return CheckStatus.PASS, "slept", {}

    return run


def test_a_hung_group_times_out_at_the_tier_limit_and_finished_checks_keep_their_results() -> None:
    # Given a tier with a quick group, and a group whose second check hangs
    tier = Tier("metrics", 0.5, (
        CheckGroup((Check("quick", _ok),)),
        CheckGroup((Check("first", _ok), Check("hangs", _sleep(30)), Check("never", _ok))),
    ))
    # When it runs
    started = time.monotonic()
    results = {r.name: r for r in run_tier(tier)}
    elapsed = time.monotonic() - started
    # Then it returns at its limit (+ grace), with every check accounted for
    assert elapsed < 0.5 + 1.2
    assert [results[n].status for n in ("quick", "first")] == [CheckStatus.PASS, CheckStatus.PASS]
    for name in ("hangs", "never"):
        assert results[name].status is CheckStatus.FAIL
        assert results[name].message == "timed out after 0.5 s (metrics tier limit)"
        assert results[name].details == {"tier": "metrics", "timed_out": True}


def test_errors_become_failed_checks_and_do_not_stop_the_group() -> None:
    def server_cancelled(_: Any, left: float) -> Any:
        raise CheckTimedOut("cancelled")

    def defect(_: Any, left: float) -> Any:
        raise KeyError("oops")

    tier = Tier("schema", 2, (CheckGroup((Check("cancelled", server_cancelled), Check("defect", defect),
                                          Check("fine", _ok))),))
    results = {r.name: r for r in run_tier(tier)}
    assert results["cancelled"].message == "timed out after 2 s (schema tier limit)"
    assert results["defect"].status is CheckStatus.FAIL and "KeyError" in results["defect"].message
    assert results["fine"].status is CheckStatus.PASS


def test_a_session_that_cannot_open_fails_every_check_of_its_group() -> None:
    from warden.errors import DatabaseUnavailable

    def refuse(limit: float) -> Any:
        raise DatabaseUnavailable("connection refused")

    tier = Tier("schema", 2, (CheckGroup((Check("a", _ok), Check("b", _ok)), refuse),))
    results = run_tier(tier)
    assert [(r.name, r.status, r.message) for r in results] == [
        ("a", CheckStatus.FAIL, "connection refused"), ("b", CheckStatus.FAIL, "connection refused")]


# --- report output -----------------------------------------------------------------------------


def _report() -> HealthReport:
    checks = [
        CheckResult(name="connectivity", status=CheckStatus.PASS, message="ok", duration_ms=3.0),
        CheckResult(name="heap", status=CheckStatus.WARN, message="heap 90 %", duration_ms=12.5,
                    details={"tier": "metrics", "metrics": {"HeapUsedPct": 90.0, "NotAMetric": 1, "NodeCount": True}}),
    ]
    target = TargetHealth(target="graph-main", engine=Engine.NEO4J, status=HealthStatus.DEGRADED,
                          checked_at="2026-01-01T00:00:00+00:00", checks=checks)
    return HealthReport(stage="prod", status=HealthStatus.DEGRADED, targets=[target])


def test_metric_points_have_the_documented_names_and_dimensions() -> None:
    points = {(p.name, tuple(sorted(p.dimensions.items()))): (p.value, p.unit) for p in metric_points(_report())}
    target = (("Stage", "prod"), ("Target", "graph-main"))
    # HealthStatus carries the target's status; `Healthy` (its 0/1 twin) is no longer sent
    assert points[("HealthStatus", target)] == (1.0, "Count")
    assert not any(name == "Healthy" for name, _ in points)
    # A tier that warns sends TierStatus 1; a passing tier (connectivity) sends nothing
    assert points[("TierStatus", (*target, ("Tier", "metrics")))] == (1.0, "Count")
    assert [dims for name, dims in points if name == "TierStatus"] == [(*target, ("Tier", "metrics"))]
    # Per-check status and duration are not CloudWatch metrics any more (the structured log has them)
    assert not any(name in ("CheckStatus", "CheckDuration") for name, _ in points)
    assert points[("HeapUsedPct", target)] == (90.0, "Percent")
    assert not any(name in ("NotAMetric", "NodeCount") for name, _ in points)  # unknown names, booleans
    assert all(dict(dims)["Stage"] == "prod" for _, dims in points)  # stages never share a stream


def test_check_statuses_and_durations_go_to_one_structured_log_line_per_target(
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from warden.health import log_checks

    with caplog.at_level(logging.INFO, logger="warden.health"):
        log_checks(_report())
    (record,) = [r for r in caplog.records if r.getMessage() == "target checked"]
    assert (record.stage, record.target, record.status) == ("prod", "graph-main", "degraded")  # type: ignore[attr-defined]
    assert record.checks["heap"] == {"status": "warn", "duration_ms": 12.5, "tier": "metrics",  # type: ignore[attr-defined]
                                     "metrics": {"HeapUsedPct": 90.0, "NotAMetric": 1, "NodeCount": True}}
    assert record.checks["connectivity"]["duration_ms"] == 3.0  # type: ignore[attr-defined]


def test_every_metric_is_documented_in_docs_metrics_md() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    for name in [*METRICS, "HealthStatus", "TierStatus", "LicenseDaysLeft", "BackupFailure", "BackupCorrupt"]:
        assert f"`{name}`" in doc, name


def test_text_report_has_one_line_per_check_with_status_message_and_duration() -> None:
    text = format_text(_report())
    assert text.splitlines()[0] == "stage prod: DEGRADED"
    assert "[warn] heap" in text and "heap 90 %" in text and "(12 ms)" in text


# --- Neo4j verdicts on rows as SHOW INDEXES returns them ---------------------------------------


def _index(name: str, state: str, percent: float, failure: str = "") -> dict[str, Any]:
    return {"name": name, "type": "RANGE", "state": state, "populationPercent": percent, "failureMessage": failure,
            "labelsOrTypes": ["Person"], "properties": ["id"]}


def test_populating_index_warns_with_its_progress_and_failed_index_fails() -> None:
    from warden.engines.neo4j.health import judge_index_states

    online = _index("a", "ONLINE", 100.0)
    status, message, details = judge_index_states({"a": online, "b": _index("b", "POPULATING", 42.5)})
    assert status is CheckStatus.WARN and message == "index(es) not online yet: b POPULATING 42 %"
    assert details["metrics"] == {"IndexesNotOnline": 1}
    status, message, _ = judge_index_states({"a": online, "c": _index("c", "FAILED", 0.0, "boom\n\tat x")})
    assert status is CheckStatus.FAIL and message == "FAILED index(es): c (boom)"
    assert judge_index_states({"a": online})[0] is CheckStatus.PASS
