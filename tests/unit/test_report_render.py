"""The weekly report page, rendered from a week of data without AWS: the numbers that matter are on
it, the HTML is well-formed and self-contained, and missing sources are said, not hidden."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from warden.config.target import Engine
from warden.events import ReportRequest
from warden.models import AuditEntry, BackupRecord, BackupStatus
from warden.report import (
    DETAIL_LIMIT,
    AlarmEvent,
    HealthWeek,
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


@pytest.fixture
def cloudwatch(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A CloudWatch client whose answers are stubbed (no network), handed to warden.report."""
    import boto3
    from botocore.stub import Stubber

    from warden import report

    client = boto3.client("cloudwatch", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setattr(report, "aws_client", lambda service: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_alarm_history_is_split_by_target_and_counts_transitions_to_alarm(cloudwatch: Any) -> None:
    from warden.report import _alarm_history, _split_alarms

    week = report_week(NOW)

    def item(name: str, old: str, new: str, day: int) -> dict[str, Any]:
        data = {"oldState": {"stateValue": old}, "newState": {"stateValue": new, "stateReason": f"{name} {new}"}}
        return {"AlarmName": name, "Timestamp": week.start + timedelta(days=day), "HistoryItemType": "StateUpdate",
                "HistorySummary": f"Alarm updated from {old} to {new}", "HistoryData": json.dumps(data)}

    cloudwatch.add_response("describe_alarm_history", {"AlarmHistoryItems": [
        item("warden-prod-pg-main-backup-failed", "OK", "ALARM", 1),
        item("warden-prod-pg-main-backup-failed", "ALARM", "OK", 1),
        item("warden-prod-pg-unhealthy", "OK", "ALARM", 2),  # target "pg", not "pg-main"
        item("warden-prod-fn-backup-errors", "OK", "ALARM", 3),
        item("warden-dev-pg-main-backup-failed", "OK", "ALARM", 3),  # another stage's
        item("someone-elses-alarm", "OK", "ALARM", 3),
    ]}, {"HistoryItemType": "StateUpdate", "StartDate": week.start, "EndDate": week.end})

    events = _alarm_history("prod", week)
    by_target, stage_alarms = _split_alarms("prod", ["pg", "pg-main"], events)

    assert [(e.old, e.new) for e in by_target["pg-main"]] == [("OK", "ALARM"), ("ALARM", "OK")]
    assert [e.alarm for e in by_target["pg"]] == ["warden-prod-pg-unhealthy"]
    assert [e.alarm for e in stage_alarms or []] == ["warden-prod-fn-backup-errors"]
    tw = TargetWeek(name="pg-main", engine="postgres", alarms=by_target["pg-main"])
    assert len(tw.alarms_fired) == 1 and tw.needs_attention


def test_alarm_history_that_cannot_be_read_is_unavailable_not_an_error(cloudwatch: Any) -> None:
    from warden.report import _alarm_history

    cloudwatch.add_client_error("describe_alarm_history", "AccessDenied")
    assert _alarm_history("prod", report_week(NOW)) is None


def test_cloudwatch_metric_images_are_embedded_as_png_data_uris(cloudwatch: Any) -> None:
    from warden.report import _widget_images

    png = b"\x89PNG\r\n\x1a\nfake"
    for _ in range(2):
        cloudwatch.add_response("get_metric_widget_image", {"MetricWidgetImage": png})
    tw = TargetWeek(name="pg-main", engine="postgres")
    tw.images = _widget_images(tw, report_week(NOW))
    data = sample_week()
    data.targets = [tw]
    data.charts = "cloudwatch"

    html = render_html(data)

    assert html.count('src="data:image/png;base64,iVBORw0KGgpmYWtl"') == 2
    assert "<svg" not in html and "graphs: CloudWatch metric images" in html


def test_health_over_the_week_comes_from_hourly_cloudwatch_health_status(cloudwatch: Any) -> None:
    from warden.report import _health_from_cloudwatch

    week = report_week(NOW)
    points = [{"Timestamp": week.start + timedelta(hours=h), "Maximum": level, "Unit": "Count"}
              for h, level in ((1, 0.0), (2, 0.0), (30, 1.0), (31, 2.0), (50, 0.0))]
    cloudwatch.add_response("get_metric_statistics", {"Datapoints": points}, {
        "Namespace": "Warden", "MetricName": "HealthStatus", "StartTime": week.start, "EndTime": week.end,
        "Period": 3600, "Statistics": ["Maximum"],
        "Dimensions": [{"Name": "Target", "Value": "pg-main"}, {"Name": "service", "Value": "warden"}]})

    health = _health_from_cloudwatch("pg-main", week)

    assert health is not None
    assert health.counts == {"healthy": 3, "degraded": 1, "unhealthy": 1}
    assert health.worst_by_day == {"2026-11-16": 0, "2026-11-17": 2, "2026-11-18": 0}


# -- issue 17: a report that stays readable at 500 targets -------------------------------------

def fleet_week(count: int, failing: set[int], unhealthy: frozenset[int] = frozenset()) -> StageWeek:
    """`count` targets in 5 groups, each with a week of verified backups; those in `failing` lost
    one backup, those in `unhealthy` were unhealthy for 18 hours."""
    week = report_week(NOW)
    targets = []
    for n in range(count):
        name = f"db-{n:03d}"
        tw = TargetWeek(name=name, engine="postgres", group=f"team-{n % 5}",
                        backups=backups(name, failed_day=3 if n in failing else None), alarms=[])
        tw.last_verified = tw.backups[-1]
        if n in unhealthy:
            tw.health = HealthWeek(source="audit trail", counts={"healthy": 150, "degraded": 0, "unhealthy": 18},
                                   worst_by_day={})
        targets.append(tw)
    return StageWeek(stage="prod", week=week, generated_at=NOW, targets=targets, stage_alarms=[], charts="local")


def test_report_of_500_targets_leads_with_the_ones_needing_attention_worst_first() -> None:
    # Given 500 targets of which 20 had a failed backup, 2 of those also unhealthy
    failing = set(range(7, 500, 25))
    data = fleet_week(500, failing, unhealthy=frozenset({257, 107}))
    # When the page is rendered
    html = render_html(data)
    # Then it opens with the attention section, worst first, naming only those 20 and their problems
    assert parse(html).errors == []
    body = html[html.index("<main>"):]
    assert body.index("Needs attention (20)") < body.index("<h2>Groups</h2>")
    attention = body[:body.index("<h2>Groups</h2>")]
    named = sorted((f"db-{n:03d}" for n in range(500) if f">db-{n:03d}<" in attention),
                   key=lambda name: attention.index(f">{name}<"))
    assert named[:2] == ["db-107", "db-257"]  # unhealthy too: worst first
    assert sorted(named) == sorted(f"db-{n:03d}" for n in failing)
    assert "1 failed backup(s)" in attention and "unhealthy in 18 reading(s)" in attention
    # and groups are counted instead of 500 rows, with per-target detail for the 20 only
    assert "<td>team-0</td>" in body and html.count('class="target"') == 20
    assert 'id="t-db-000"' not in html and 'id="t-db-007"' in html


def test_report_of_500_targets_grows_with_the_problems_not_with_the_healthy_targets() -> None:
    # The bound: a healthy target costs nothing beyond its group's counts, so the page of 500 is at
    # most the page of its 20 troubled targets alone plus one table row per group (5) and the
    # attention table; and when everything fails, detail stops at 50 targets: about 380 KB with the
    # 500-row attention table, under 500 KB (a page a browser or mail client opens at once; a full
    # section for each of the 500 would be about 3.5 MB).
    failing = set(range(7, 500, 25))
    fleet = render_html(fleet_week(500, failing))
    troubled = fleet_week(500, failing)
    troubled.targets = [t for t in troubled.targets if t.needs_attention] + troubled.targets[:DETAIL_LIMIT + 1 - 20]
    alone = render_html(troubled)  # same troubled targets, just over the limit: same layout
    assert len(fleet.encode()) < len(alone.encode()) + 5 * 300
    everything = render_html(fleet_week(500, set(range(500))))
    assert everything.count('class="target"') == DETAIL_LIMIT
    assert "Detail below for the 50 worst of the 500 targets needing attention." in everything
    assert len(everything.encode()) < 500_000
    summary = summarize(fleet_week(500, set(range(500)))).splitlines()
    assert len(summary) == 1 + DETAIL_LIMIT + 1 + 5 and summary[-1].startswith("group team-4: 100 target(s)")


def test_small_stage_lists_the_target_needing_attention_first() -> None:
    data = sample_week()
    data.targets.reverse()  # graph-main (fine) configured before pg-main (failed backup, unhealthy)
    html = render_html(data)
    assert html.index('id="t-pg-main"') < html.index('id="t-graph-main"')
    attention = html[html.index("Needs attention (1)"):html.index("<h2>Overview</h2>")]
    assert "pg-main" in attention and "graph-main" not in attention
    assert summarize(data).splitlines()[1].startswith("- pg-main [ATTENTION]")


def test_summary_shows_a_backup_still_running_with_its_runner_and_progress() -> None:
    data = sample_week()
    graph = data.targets[1]
    running = graph.backups[-1].model_copy(update={
        "backup_id": "20261122T230000Z-0000abcd", "status": BackupStatus.RUNNING, "finished_at": None,
        "runner": "fargate", "progress": {"bytes": 5 * 2**30, "rate_bytes_s": 80 * 2**20, "eta_s": 1200}})
    graph.backups.append(running)
    lines = summarize(data).splitlines()
    assert ("- graph-main [RUNNING]: backup 20261122T230000Z-0000abcd on fargate, 5,120.0 MiB written, "
            "80.0 MiB/s, 20 min left") in lines
    assert lines.index(next(x for x in lines if "[RUNNING]" in x)) == 1  # under the header, before the targets
