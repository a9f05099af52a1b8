"""The weekly report page, rendered from a week of data without AWS: the numbers that matter are on
it, the HTML is well-formed and self-contained, and missing sources are said, not hidden."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pydantic import ValidationError

from warden.audit import AuditEntry
from warden.models import BackupRecord, BackupStatus, Engine
from warden.report import (
    AlarmEvent,
    HealthWeek,
    ReportRequest,
    StageWeek,
    TargetWeek,
    render_html,
    report_key,
    report_week,
    summarize,
    svg_bars,
)

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday: the report covers 2026-W47, 16-22 November
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}


class TagBalance(HTMLParser):
    """Fails on any end tag that does not close the innermost open element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def parse(html: str) -> TagBalance:
    parser = TagBalance()
    parser.feed(html)
    parser.close()
    return parser


def backups(target: str, *, failed_day: int | None = None) -> list[BackupRecord]:
    week = report_week(NOW)
    out = []
    for day in range(7):
        started = week.start + timedelta(days=day, hours=2)
        ok = day != failed_day
        out.append(BackupRecord(
            target=target, backup_id=f"{started:%Y%m%dT%H%M%SZ}-0000000{day}", engine=Engine.POSTGRES,
            method="pg_dump", status=BackupStatus.VERIFIED if ok else BackupStatus.FAILED, started_at=started,
            finished_at=started + timedelta(seconds=60 + 10 * day) if ok else None,
            size_bytes=(100 + 10 * day) * 1024 * 1024 if ok else None, duration_s=60 + 10 * day if ok else None,
            error=None if ok else "pg_dump: connection refused"))
    return out


def sample_week() -> StageWeek:
    week = report_week(NOW)
    pg = TargetWeek(name="pg-main", engine="postgres", backups=backups("pg-main", failed_day=3))
    pg.last_verified = pg.backups[-1]
    pg.last_drill = (pg.backups[5], {"at": (week.start + timedelta(days=6, hours=3)).isoformat(), "rto_s": 84.5})
    pg.remediations = [AuditEntry(target="pg-main", at=week.start + timedelta(days=2), operation="remediation",
                                  step="cancel_long_queries", outcome="ok", actor="function:remediate",
                                  details={"alarm": "warden-prod-pg-main-pg-long-running-queries",
                                           "summary": "cancelled 2 queries running > 300 s"})]
    pg.alarms = [AlarmEvent("warden-prod-pg-main-pg-long-running-queries", week.start + timedelta(days=2), "OK",
                            "ALARM", "Threshold Crossed"),
                 AlarmEvent("warden-prod-pg-main-pg-long-running-queries", week.start + timedelta(days=2, hours=1),
                            "ALARM", "OK", "back to normal")]
    pg.health = HealthWeek(source="CloudWatch HealthStatus, hourly", counts={"healthy": 160, "degraded": 6,
                                                                            "unhealthy": 2},
                           worst_by_day={f"{week.start + timedelta(days=2):%Y-%m-%d}": 2})
    graph = TargetWeek(name="graph-main", engine="neo4j", backups=backups("graph-main"))
    return StageWeek(stage="prod", week=week, generated_at=NOW, targets=[pg, graph], stage_alarms=[],
                     charts="local")


def test_report_covers_the_last_complete_iso_week_and_is_keyed_by_it() -> None:
    week = report_week(NOW)
    assert (week.start, week.end) == (datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
    assert report_key("prod", week) == "reports/prod/2026-W47.html"
    assert report_week(datetime(2026, 11, 29, 23, 59, tzinfo=UTC)).label == "2026-W47"
    assert report_week(datetime(2027, 1, 4, 7, tzinfo=UTC)).label == "2026-W53"


def test_rendered_week_is_well_formed_self_contained_html() -> None:
    parser = parse(render_html(sample_week()))
    assert parser.errors == [] and parser.stack == []
    assert parser.tags.count("svg") == 5  # size and duration per target, health for the one that has it
    links = [v for k, v in parser.attrs if k in ("src", "href") and v]
    assert all(v.startswith(("#", "data:")) for v in links)  # nothing to fetch


def test_report_shows_the_weeks_numbers_per_target() -> None:
    html = render_html(sample_week())
    assert 'id="t-pg-main"' in html and 'id="t-graph-main"' in html
    assert "6 good · 1 failed" in html and "7 good · 0 failed" in html
    assert "pg_dump: connection refused" in html
    assert "84 s" in html  # the drill's RTO
    assert "160.0 MiB" in html  # the latest size (day 6)
    assert "cancelled 2 queries running &gt; 300 s" in html
    assert "1 alarm(s) fired." in html
    assert "160 healthy, 6 degraded, 2 unhealthy" in html


def test_missing_sources_are_said_not_hidden() -> None:
    html = render_html(sample_week())
    graph = html[html.index('id="t-graph-main"'):]
    assert "No alarm history available." in graph
    assert "No health data recorded this week." in graph
    assert "No remediation actions this week." in graph
    assert "None recorded." in graph  # slow queries
    assert "no restore drill recorded" in graph


def test_summary_has_one_line_per_target_and_flags_the_one_needing_attention() -> None:
    lines = summarize(sample_week()).splitlines()
    assert lines[0].startswith("Warden prod weekly report 2026-W47 (2026-11-16 to 2026-11-22), 2 target(s)")
    assert lines[1].startswith("- pg-main [ATTENTION]: 7 backups (6 good, 1 failed)")
    assert "last drill RTO 84 s" in lines[1] and "1 alarm(s) fired" in lines[1]
    assert lines[2].startswith("- graph-main [ok]: 7 backups (7 good, 0 failed)")
    assert "alarm history unavailable" in lines[2]


def test_bars_mark_days_without_a_backup_and_failed_days() -> None:
    days = report_week(NOW).days
    svg = svg_bars(days, [1.0, None, 2.0, None, 4.0, 4.0, 4.0], str, failed={1})
    assert svg.count("<rect") == 5 and "✕" in svg and "\N{EN DASH}" in svg


def test_request_takes_the_week_from_the_scheduled_time() -> None:
    request = ReportRequest.model_validate({"trigger": "schedule", "scheduled_time": "2026-11-23T07:00:00Z"})
    assert report_week(request.when(datetime(2000, 1, 1, tzinfo=UTC))).label == "2026-W47"


def test_report_sample_events_match_the_request_model() -> None:
    paths = sorted((Path(__file__).resolve().parents[2] / "events").glob("report_*.json"))
    assert len(paths) >= 3
    for path in paths:
        event = json.loads(path.read_text())
        if "bad_input" in path.stem:
            with pytest.raises(ValidationError):
                ReportRequest.model_validate(event)
        else:
            ReportRequest.model_validate(event)
