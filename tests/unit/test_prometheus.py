"""The Prometheus text exposition of a health report, read back by prometheus_client's own parser."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from warden.config.target import Engine
from warden.health import METRICS
from warden.models import CheckResult, CheckStatus, HealthReport, HealthStatus, TargetHealth
from warden.prometheus import (
    FAMILIES,
    NOT_VALUE_METRICS,
    VALUE_METRICS,
    escape_label_value,
    format_value,
    render,
    write_atomically,
)

CHECKED = "2026-12-02T17:00:00+00:00"


def _report(message_target: str = "graph-main") -> HealthReport:
    return HealthReport(stage="prod", status=HealthStatus.UNHEALTHY, targets=[
        TargetHealth(target=message_target, engine=Engine.NEO4J, status=HealthStatus.DEGRADED, checked_at=CHECKED,
                     server_version="5.26.30", checks=[
                         CheckResult(name="connectivity", status=CheckStatus.PASS, message="ok", duration_ms=12.5,
                                     details={"tier": "connectivity", "version": "5.26.30", "edition": "community"}),
                         CheckResult(name="server_version", status=CheckStatus.PASS, message="ok", duration_ms=0.1,
                                     details={"tier": "connectivity", "series": "5.26", "end_of_support": "2028-06-30",
                                              "metrics": {"ServerSupportDaysLeft": 576}}),
                         CheckResult(name="heap", status=CheckStatus.WARN, message="heap 90 %", duration_ms=40.0,
                                     details={"tier": "metrics", "metrics": {"HeapUsedPct": 90.0}}),
                         CheckResult(name="backup_freshness", status=CheckStatus.PASS, message="fresh",
                                     duration_ms=5.0, details={"tier": "backup", "size_bytes": 123456,
                                                               "duration_s": 4.25,
                                                               "metrics": {"BackupAgeHours": 1.5}}),
                     ]),
        TargetHealth(target="pg-main", engine=Engine.POSTGRES, status=HealthStatus.UNHEALTHY, checked_at=CHECKED,
                     checks=[
                         CheckResult(name="connectivity", status=CheckStatus.FAIL, message="refused",
                                     duration_ms=5000.0, details={"tier": "connectivity", "error": "X"}),
                     ]),
    ])


def _parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    families = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family.name
        assert family.documentation, family.name
        families[family.name] = {tuple(sorted(s.labels.items())): s.value for s in family.samples}
    return families


def _labels(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def test_every_family_is_a_documented_gauge_and_the_values_equal_the_report() -> None:
    # When the report is rendered and parsed back
    families = _parse(render(_report()))
    graph = {"stage": "prod", "target": "graph-main", "engine": "neo4j"}
    pg = {"stage": "prod", "target": "pg-main", "engine": "postgres"}
    # Then statuses, check statuses and durations are there with their label sets
    assert families["warden_health_status"] == {_labels(**graph): 1, _labels(**pg): 2}
    assert families["warden_health_healthy"] == {_labels(**graph): 0, _labels(**pg): 0}
    assert families["warden_health_targets_checked"] == {_labels(stage="prod"): 2}
    checks = families["warden_health_check_status"]
    assert checks[_labels(**graph, check="heap", tier="metrics")] == 1
    assert checks[_labels(**pg, check="connectivity", tier="connectivity")] == 2
    assert len(checks) == 5
    assert families["warden_health_check_duration_seconds"][_labels(**pg, check="connectivity",
                                                                    tier="connectivity")] == 5.0
    assert families["warden_health_check_duration_seconds"][_labels(**graph, check="server_version",
                                                                    tier="connectivity")] == pytest.approx(0.0001)
    # ... value metrics in base units: percent -> ratio, hours -> seconds
    assert families["warden_health_heap_used_ratio"] == {_labels(**graph): pytest.approx(0.9)}
    assert families["warden_health_backup_age_seconds"] == {_labels(**graph): 5400}
    assert families["warden_health_last_backup_size_bytes"] == {_labels(**graph): 123456}
    assert families["warden_health_last_backup_duration_seconds"] == {_labels(**graph): 4.25}
    # ... the server: info with version and edition, and the end of support as a timestamp
    assert families["warden_server_info"] == {_labels(**graph, version="5.26.30", edition="community"): 1}
    assert families["warden_server_end_of_support_timestamp_seconds"] == {
        _labels(**graph, series="5.26"): datetime(2028, 6, 30, tzinfo=UTC).timestamp()}
    assert families["warden_health_last_run_timestamp_seconds"][_labels(**pg)] == \
        datetime.fromisoformat(CHECKED).timestamp()


def test_each_family_appears_once_with_help_and_type_before_its_samples() -> None:
    text = render(_report())
    lines = text.splitlines()
    names = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(names) == len(set(names))
    for name in names:
        help_at, type_at = lines.index(next(x for x in lines if x.startswith(f"# HELP {name} "))), \
            lines.index(f"# TYPE {name} gauge")
        samples = [i for i, x in enumerate(lines) if x.startswith(name + "{")]
        assert help_at + 1 == type_at and samples and min(samples) == type_at + 1
        assert max(samples) - min(samples) + 1 == len(samples)  # contiguous
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_label_values_are_escaped_and_read_back_unchanged() -> None:
    nasty = 'graph "main"\\with\nnewline'
    assert escape_label_value(nasty) == 'graph \\"main\\"\\\\with\\nnewline'
    report = _report()
    # a version string is server-controlled text: quotes and backslashes must not break the file
    odd = report.targets[0].checks[0].model_copy(update={"details": {"tier": "connectivity",
                                                                     "version": nasty, "edition": "x"}})
    target = report.targets[0].model_copy(update={"checks": [odd]})
    families = _parse(render(report.model_copy(update={"targets": [target]})))
    ((labels, value),) = families["warden_server_info"].items()
    assert dict(labels)["version"] == nasty and value == 1


def test_values_are_formatted_as_prometheus_reads_them() -> None:
    assert [format_value(v) for v in (0.0, 3.0, 0.25, 1e20, float("nan"), float("inf"), -float("inf"))] == [
        "0", "3", "0.25", "1e+20", "NaN", "+Inf", "-Inf"]


def test_every_emf_value_metric_has_a_prometheus_family_in_base_units() -> None:
    assert set(VALUE_METRICS) | NOT_VALUE_METRICS == set(METRICS)
    names = [m.name for m in VALUE_METRICS.values()] + list(FAMILIES)
    assert len(names) == len(set(names))
    for emf, spec in VALUE_METRICS.items():
        assert spec.name.startswith("warden_health_") and spec.name == spec.name.lower(), spec.name
        unit = METRICS[emf].unit
        if unit == "Seconds" or emf.endswith("Hours"):
            assert spec.name.endswith("_seconds"), spec.name
        if unit == "Bytes":
            assert spec.name.endswith("_bytes"), spec.name
        if unit == "Percent":
            assert spec.name.endswith("_ratio") and spec.scale == 0.01, spec.name


def test_the_docs_name_every_family() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    for name in [m.name for m in VALUE_METRICS.values()] + list(FAMILIES):
        assert f"`{name}`" in doc, name


def test_write_atomically_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "warden.prom"
    path.write_text("old\n")
    write_atomically(path, render(_report()))
    assert _parse(path.read_text())["warden_health_targets_checked"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warden.prom"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_write_atomically_into_a_missing_directory_fails_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "missing" / "warden.prom", "x\n")
    assert list(tmp_path.iterdir()) == []
