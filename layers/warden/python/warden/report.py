"""The weekly report of a stage: one self-contained HTML page per ISO week, stored in S3 at
`reports/<stage>/<yyyy>-W<ww>.html` (SSE-KMS), and a short text summary on SNS.

Both lead with what needs attention (failed / corrupt / missing backups, no verified restore,
unhealthy or degraded health, alarms fired), worst first. Above DETAIL_LIMIT targets the page shows
counts per group and the detail of the worst targets needing attention only.

Per target: the week's backups (count, sizes and durations with their trend, the last VERIFIED
backup, the last restore drill and its RTO), health over the week, alarms fired, remediation
actions and slow queries. Graphs: CloudWatch metric images (`GetMetricWidgetImage`, embedded as
PNG data URIs) where CloudWatch can draw them; otherwise (the local runtime) inline SVG drawn here
from the same catalog data. Every source that cannot be read degrades to a sentence saying so,
never to a failed report.

The report covers the last complete ISO week (Monday 00:00 to Monday 00:00 UTC) before `now`: the
Monday schedule reports the week that just ended, and a re-run for the same `now` overwrites the
same object.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from warden.errors import ConfigError, WardenError
from warden.models import GOOD_BACKUP, AuditEntry, BackupRecord, BackupStatus
from warden.runner import progress_text
from warden.stores import CatalogStore, Stores
from warden.stores.artifacts import ArtifactError
from warden.stores.audit import AuditError
from warden.stores.clients import aws_client

NAMESPACE, SERVICE = "Warden", "warden"  # docs/metrics.md
HEALTH_LABELS = {0: "healthy", 1: "degraded", 2: "unhealthy"}
Charts = Literal["auto", "cloudwatch", "local"]
DASH = "\N{EN DASH}"  # shown where there is no value


class ReportError(WardenError):
    """The report could not be stored or announced."""


# Up to this many targets the report details every target; above it, per-group counts and the
# detail of the worst targets needing attention only (at most this many sections).
DETAIL_LIMIT = 50


# -- the week's data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Week:
    start: datetime  # Monday 00:00 UTC, inclusive
    end: datetime  # the next Monday 00:00 UTC, exclusive

    @property
    def label(self) -> str:
        iso = self.start.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"

    @property
    def days(self) -> list[datetime]:
        return [self.start + timedelta(days=n) for n in range(7)]


def report_week(now: datetime) -> Week:
    """The last complete ISO week before `now` (UTC)."""
    now = now.astimezone(UTC)
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return Week(start=monday - timedelta(days=7), end=monday)


def report_key(stage: str, week: Week) -> str:
    return f"reports/{stage}/{week.label}.html"


@dataclass(frozen=True)
class AlarmEvent:
    alarm: str
    at: datetime
    old: str
    new: str
    reason: str


@dataclass(frozen=True)
class HealthWeek:
    """Health of a target over the week: hours (or samples) per status and the worst per day."""

    source: str
    counts: dict[str, int]
    worst_by_day: dict[str, int]  # "YYYY-MM-DD" -> 0 / 1 / 2


@dataclass
class TargetWeek:
    name: str
    engine: str
    group: str = "default"
    backups: list[BackupRecord] = field(default_factory=list)  # started in the week, oldest first
    last_verified: BackupRecord | None = None
    last_drill: tuple[BackupRecord, dict[str, Any]] | None = None
    remediations: list[AuditEntry] = field(default_factory=list)
    slow_queries: list[str] = field(default_factory=list)
    slow_query_max: float | None = None  # CloudWatch SlowQueries, worst value of the week
    health: HealthWeek | None = None
    alarms: list[AlarmEvent] | None = None  # None: no alarm history available
    images: list[tuple[str, bytes]] = field(default_factory=list)  # CloudWatch PNGs (title, png)

    @property
    def good(self) -> list[BackupRecord]:
        return [b for b in self.backups if b.status in GOOD_BACKUP or b.status == BackupStatus.EXPIRED]

    @property
    def failed(self) -> list[BackupRecord]:
        return [b for b in self.backups if b.status in (BackupStatus.FAILED, BackupStatus.CORRUPT)]

    @property
    def running(self) -> list[BackupRecord]:
        return [b for b in self.backups if b.status == BackupStatus.RUNNING]

    @property
    def alarms_fired(self) -> list[AlarmEvent]:
        return [a for a in self.alarms or [] if a.new == "ALARM"]

    @property
    def verified(self) -> bool:
        return self.last_verified is not None or any(b.status == BackupStatus.VERIFIED for b in self.backups)

    @property
    def problems(self) -> list[tuple[int, str]]:
        """What needs attention this week, as (severity 2 bad / 1 warning, what), worst first."""
        found: list[tuple[int, str]] = []
        corrupt = sum(b.status == BackupStatus.CORRUPT for b in self.backups)
        if corrupt:
            found.append((2, f"{corrupt} corrupt backup(s)"))
        if len(self.failed) > corrupt:
            found.append((2, f"{len(self.failed) - corrupt} failed backup(s)"))
        if not self.good:
            found.append((2, "no good backup this week"))
        counts = self.health.counts if self.health else {}
        if counts.get("unhealthy"):
            found.append((2, f"unhealthy in {counts['unhealthy']} reading(s)"))
        if not self.verified:
            found.append((1, "no verified restore"))
        if counts.get("degraded"):
            found.append((1, f"degraded in {counts['degraded']} reading(s)"))
        if self.alarms_fired:
            found.append((1, f"{len(self.alarms_fired)} alarm(s) fired"))
        return sorted(found, key=lambda p: -p[0])

    @property
    def severity(self) -> int:
        """2: something failed; 1: a warning; 0: nothing needs attention."""
        return max((level for level, _ in self.problems), default=0)

    @property
    def needs_attention(self) -> bool:
        return bool(self.problems)


@dataclass
class StageWeek:
    stage: str
    week: Week
    generated_at: datetime
    targets: list[TargetWeek]
    stage_alarms: list[AlarmEvent] | None  # function / state machine alarms of the stage
    charts: str  # "cloudwatch" or "local"


def collect_week(stores: Stores, now: datetime, *, charts: Charts = "auto") -> StageWeek:
    """Everything the report shows, read from the catalog, the audit trail and CloudWatch."""
    settings = stores.settings
    if stores.missing("catalog"):
        raise ConfigError("the report needs the catalog table (WARDEN_CATALOG_TABLE)")
    week = report_week(now)
    catalog = stores.catalog
    targets = [TargetWeek(name=t.name, engine=t.engine.value, group=t.group) for t in stores.targets.all().values()]
    alarms = _alarm_history(settings.stage, week)
    by_target, stage_alarms = _split_alarms(settings.stage, [t.name for t in targets], alarms)
    for tw in targets:
        _collect_backups(catalog, tw, week)
        entries = _audit_between(stores, tw.name, week)
        tw.remediations = [e for e in entries if e.operation == "remediation"]
        tw.slow_queries = _slow_queries_from_audit(entries)
        tw.slow_query_max = _metric_max("SlowQueries", tw.name, week) if tw.engine == "postgres" else None
        tw.health = _health_from_cloudwatch(tw.name, week) or _health_from_audit(entries)
        tw.alarms = None if alarms is None else by_target.get(tw.name, [])
    mode = "local" if charts == "local" else "cloudwatch"
    if mode == "cloudwatch":
        try:
            for tw in targets:
                tw.images = _widget_images(tw, week)
        except (ClientError, BotoCoreError, NotImplementedError):
            if charts == "cloudwatch":
                raise
            mode = "local"  # the local runtime (moto) draws no metric images
            for tw in targets:
                tw.images = []
    return StageWeek(stage=settings.stage, week=week, generated_at=now.astimezone(UTC), targets=targets,
                     stage_alarms=stage_alarms, charts=mode)


def _collect_backups(catalog: CatalogStore, tw: TargetWeek, week: Week) -> None:
    for record in catalog.list(tw.name):  # newest first
        if record.started_at >= week.end:
            continue
        if week.start <= record.started_at:
            tw.backups.append(record)
        if tw.last_verified is None and record.status == BackupStatus.VERIFIED:
            tw.last_verified = record
        drill = record.last_drill
        if (drill and drill.get("at") and _parse_time(drill["at"]) < week.end
                and (tw.last_drill is None or _parse_time(drill["at"]) > _parse_time(tw.last_drill[1]["at"]))):
            tw.last_drill = (record, drill)
    tw.backups.reverse()


def _parse_time(value: str | datetime) -> datetime:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _audit_between(stores: Stores, target: str, week: Week) -> list[AuditEntry]:
    """The target's audit entries of the week, oldest first."""
    try:
        return stores.audit.between(target, week.start, week.end)
    except AuditError as err:
        raise ReportError(str(err)) from err


def _slow_queries_from_audit(entries: Iterable[AuditEntry]) -> list[str]:
    """Slow statements that health or maintenance recorded in the audit trail (`slow_queries`)."""
    found = []
    for entry in entries:
        for query in entry.details.get("slow_queries") or []:
            if isinstance(query, dict):
                text = str(query.get("query", "?"))[:160]
                mean = query.get("mean_ms")
                calls = query.get("calls")
                found.append(f"{text} — mean {mean} ms, {calls} calls" if mean is not None else text)
            else:
                found.append(str(query)[:160])
    return found


def _health_from_audit(entries: Iterable[AuditEntry]) -> HealthWeek | None:
    levels = {"healthy": 0, "degraded": 1, "unhealthy": 2}
    samples = [(e.at, levels[str(e.details.get("status", e.outcome))]) for e in entries
               if e.operation == "health" and str(e.details.get("status", e.outcome)) in levels]
    return _health_week("audit trail", samples) if samples else None


def _health_from_cloudwatch(target: str, week: Week) -> HealthWeek | None:
    """Hourly worst `HealthStatus` (0 healthy, 1 degraded, 2 unhealthy) of the week."""
    points = _statistics("HealthStatus", target, week, period=3600, statistic="Maximum")
    samples = [(p["Timestamp"], round(p["Maximum"])) for p in points]
    return _health_week("CloudWatch HealthStatus, hourly", samples) if samples else None


def _health_week(source: str, samples: list[tuple[datetime, int]]) -> HealthWeek:
    counts = Counter(HEALTH_LABELS.get(min(max(level, 0), 2)) for _, level in samples)
    worst: dict[str, int] = {}
    for at, level in samples:
        day = at.astimezone(UTC).strftime("%Y-%m-%d")
        worst[day] = max(worst.get(day, 0), min(max(level, 0), 2))
    return HealthWeek(source=source, counts={k: counts.get(k, 0) for k in HEALTH_LABELS.values()},
                      worst_by_day=worst)


def _metric_max(metric: str, target: str, week: Week) -> float | None:
    points = _statistics(metric, target, week, period=86400, statistic="Maximum")
    return max((p["Maximum"] for p in points), default=None)


def _statistics(metric: str, target: str, week: Week, *, period: int, statistic: str) -> list[dict[str, Any]]:
    try:
        return list(aws_client("cloudwatch").get_metric_statistics(
            Namespace=NAMESPACE, MetricName=metric, StartTime=week.start, EndTime=week.end, Period=period,
            Statistics=[statistic],
            Dimensions=[{"Name": "Target", "Value": target}, {"Name": "service", "Value": SERVICE}],
        ).get("Datapoints", []))
    except (ClientError, BotoCoreError):
        return []  # shown as "no data recorded"


def _alarm_history(stage: str, week: Week) -> list[AlarmEvent] | None:
    """State changes of the stage's alarms in the week; None when CloudWatch cannot tell."""
    events = []
    prefix = f"warden-{stage}-"
    try:
        # DescribeAlarmHistory filters by one alarm name or none: read the week's state changes of
        # the account and keep the stage's (one paginated call instead of one per alarm).
        pages = aws_client("cloudwatch").get_paginator("describe_alarm_history").paginate(
            HistoryItemType="StateUpdate", StartDate=week.start, EndDate=week.end)
        for page in pages:
            for item in page.get("AlarmHistoryItems", []):
                if not item.get("AlarmName", "").startswith(prefix):
                    continue
                data = json.loads(item.get("HistoryData") or "{}")
                events.append(AlarmEvent(
                    alarm=item["AlarmName"], at=item["Timestamp"],
                    old=(data.get("oldState") or {}).get("stateValue", "?"),
                    new=(data.get("newState") or {}).get("stateValue", "?"),
                    reason=(data.get("newState") or {}).get("stateReason", item.get("HistorySummary", ""))))
    except (ClientError, BotoCoreError, NotImplementedError, ValueError):
        return None
    return sorted(events, key=lambda e: e.at)


def _split_alarms(stage: str, targets: list[str], events: list[AlarmEvent] | None,
                  ) -> tuple[dict[str, list[AlarmEvent]], list[AlarmEvent] | None]:
    """Alarms are `warden-<stage>-<target>-<what>`; the longest matching target name wins."""
    if events is None:
        return {}, None
    by_target: dict[str, list[AlarmEvent]] = {}
    rest = []
    prefix = f"warden-{stage}-"
    for event in events:
        subject = event.alarm.removeprefix(prefix)
        owner = max((t for t in targets if subject.startswith(f"{t}-")), key=len, default=None)
        if owner is None:
            rest.append(event)
        else:
            by_target.setdefault(owner, []).append(event)
    return by_target, rest


def _widget_images(tw: TargetWeek, week: Week) -> list[tuple[str, bytes]]:
    """CloudWatch's own graphs of the target's key metrics over the week (PNG)."""
    dims = ["Target", tw.name, "service", SERVICE]
    widgets = [
        ("Backups: size and duration", [
            [NAMESPACE, "BackupSize", *dims, {"stat": "Maximum", "label": "size (bytes)", "period": 86400}],
            [NAMESPACE, "BackupDuration", *dims, {"stat": "Maximum", "label": "duration (s)", "period": 86400,
                                                   "yAxis": "right"}],
        ]),
        ("Health status (0 healthy, 1 degraded, 2 unhealthy)", [
            [NAMESPACE, "HealthStatus", *dims, {"stat": "Maximum", "label": "health status", "period": 3600}],
        ]),
    ]
    images = []
    for title, metrics in widgets:
        widget = {"title": f"{tw.name}: {title}", "view": "timeSeries", "stacked": False, "metrics": metrics,
                  "start": week.start.isoformat(), "end": week.end.isoformat(), "width": 560, "height": 240,
                  "timezone": "+0000"}
        response = aws_client("cloudwatch").get_metric_widget_image(MetricWidget=json.dumps(widget),
                                                                    OutputFormat="png")
        images.append((title, response["MetricWidgetImage"]))
    return images


# -- rendering ---------------------------------------------------------------------------------


def human_bytes(value: float | None) -> str:
    if value is None:
        return DASH
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_seconds(value: float | None) -> str:
    if value is None:
        return DASH
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _duration(record: BackupRecord) -> float | None:
    if record.duration_s is not None:
        return record.duration_s
    if record.finished_at is not None:
        return (record.finished_at - record.started_at).total_seconds()
    return None


def _trend(values: list[float]) -> str:
    """Change from the first to the last value of the week."""
    if len(values) < 2 or not values[0]:
        return "no trend (fewer than two backups)" if len(values) < 2 else DASH
    change = (values[-1] - values[0]) / values[0] * 100
    arrow = "↗" if change > 0.5 else "↘" if change < -0.5 else "→"
    return f"{arrow} {change:+.0f}% over the week"


def _time(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%a %Y-%m-%d %H:%M UTC") if at else DASH


def _short(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%a %m-%d %H:%M") if at else DASH


def attention_first(targets: Iterable[TargetWeek]) -> list[TargetWeek]:
    """Worst first: failures, then warnings, then the rest; more problems first, then by name."""
    return sorted(targets, key=lambda t: (-t.severity, -len(t.problems), t.name))


def summarize(data: StageWeek) -> str:
    """The short text that goes to SNS: the targets needing attention first, worst first; one line
    per target up to DETAIL_LIMIT targets, above it the attention lines (at most DETAIL_LIMIT) and
    counts per group."""
    w = data.week
    ordered = attention_first(data.targets)
    attention = [t for t in ordered if t.needs_attention]
    lines = [f"Warden {data.stage} weekly report {w.label} "
             f"({w.start:%Y-%m-%d} to {(w.end - timedelta(days=1)):%Y-%m-%d}), {len(data.targets)} target(s), "
             f"{len(attention)} need attention."]
    running = [(t.name, b) for t in ordered for b in t.running]
    lines += [f"- {name} [RUNNING]: backup {b.backup_id} on {b.runner or 'lambda'}, {progress_text(b.progress)}"
              for name, b in running[:DETAIL_LIMIT]]
    if len(data.targets) > DETAIL_LIMIT:
        lines += [f"- {t.name} [ATTENTION]: " + ", ".join(text for _, text in t.problems)
                  for t in attention[:DETAIL_LIMIT]]
        if len(attention) > DETAIL_LIMIT:
            lines.append(f"- … and {len(attention) - DETAIL_LIMIT} more needing attention (see the report)")
        for group, members in _by_group(data.targets).items():
            lines.append(f"group {group}: {len(members)} target(s), "
                         f"{sum(t.needs_attention for t in members)} need attention")
        return "\n".join(lines)
    for t in ordered:
        sizes = [b.size_bytes for b in t.good if b.size_bytes is not None]
        parts = [f"{len(t.backups)} backups ({len(t.good)} good, {len(t.failed)} failed)"]
        if sizes:
            parts.append(f"latest {human_bytes(sizes[-1])}")
        parts.append(f"last verified {t.last_verified.backup_id}" if t.last_verified else "never verified")
        if t.last_drill:
            parts.append(f"last drill RTO {human_seconds(t.last_drill[1].get('rto_s'))}")
        else:
            parts.append("no drill")
        parts.append("alarm history unavailable" if t.alarms is None else f"{len(t.alarms_fired)} alarm(s) fired")
        parts.append(f"{len(t.remediations)} remediation action(s)")
        flag = "ATTENTION" if t.needs_attention else "ok"
        lines.append(f"- {t.name} [{flag}]: " + ", ".join(parts))
    if not data.targets:
        lines.append("- no targets configured")
    return "\n".join(lines)


_CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2933;margin:0;background:#f4f6f8}
main{max-width:1100px;margin:0 auto;padding:24px}
header{background:#102a43;color:#fff;padding:20px 24px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#bcccdc}
h2{font-size:18px;margin:0 0 12px;display:flex;align-items:center;gap:10px}
h3{font-size:14px;margin:18px 0 6px;color:#334e68;text-transform:uppercase;letter-spacing:.04em}
section.target,section.overview{background:#fff;border-radius:8px;padding:20px;margin:0 0 20px;
box-shadow:0 1px 3px rgba(16,42,67,.12)}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e4e7eb;vertical-align:top}
th{color:#52606d;font-weight:600;background:#f8fafc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px;margin:0 0 8px}
.card{border:1px solid #e4e7eb;border-radius:6px;padding:10px 12px}
.card .k{color:#52606d;font-size:12px}
.card .v{font-size:18px;font-weight:600;margin-top:2px}
.card .s{color:#52606d;font-size:12px}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600}
.ok{background:#e3f9e5;color:#1f7a3a}.warn{background:#fff3c4;color:#8d6708}.bad{background:#ffe3e3;color:#a61b1b}
.muted{color:#7b8794}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.charts figure{margin:0;border:1px solid #e4e7eb;border-radius:6px;padding:8px}
.charts figcaption{font-size:12px;color:#52606d;margin-bottom:4px}
ul{margin:4px 0;padding-left:20px}
footer{color:#7b8794;font-size:12px;text-align:center;padding:8px 0 24px}
"""

_STATUS_CLASS = {"VERIFIED": "ok", "COMPLETED": "ok", "EXPIRED": "muted", "RUNNING": "warn", "FAILED": "bad",
                 "CORRUPT": "bad"}


def render_html(data: StageWeek, *, actor: str = "") -> str:
    """The report page: self-contained HTML (inline CSS, SVG or data-URI images)."""
    w = data.week
    title = f"Warden {data.stage} — weekly report {w.label}"
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           "<header>", f"<h1>{escape(title)}</h1>",
           f"<p>{w.start:%A %Y-%m-%d} to {(w.end - timedelta(days=1)):%A %Y-%m-%d} (UTC) · "
           f"generated {escape(_time(data.generated_at))}</p>", "</header>", "<main>"]
    ordered = attention_first(data.targets)
    attention = [t for t in ordered if t.needs_attention]
    many = len(data.targets) > DETAIL_LIMIT
    detailed = attention[:DETAIL_LIMIT] if many else ordered
    out += _attention_section(attention, {t.name for t in detailed})
    out += _group_summary(data) if many else _overview(data, ordered)
    if many and len(attention) > DETAIL_LIMIT:
        out.append(f'<p class="muted">Detail below for the {DETAIL_LIMIT} worst of the {len(attention)} targets '
                   f"needing attention.</p>")
    for t in detailed:
        out += _target_section(t, data)
    out += _stage_alarms(data)
    out += ["</main>", f"<footer>Warden · stage {escape(data.stage)} · graphs: "
            f"{'CloudWatch metric images' if data.charts == 'cloudwatch' else 'drawn from the backup catalog'}"
            + (f" · {escape(actor)}" if actor else "") + "</footer>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


def _badge(ok: bool, good: str = "ok", bad: str = "attention") -> str:
    return f'<span class="badge {"ok" if ok else "bad"}">{good if ok else bad}</span>'


def _by_group(targets: Iterable[TargetWeek]) -> dict[str, list[TargetWeek]]:
    groups: dict[str, list[TargetWeek]] = {}
    for t in targets:
        groups.setdefault(t.group, []).append(t)
    return dict(sorted(groups.items()))


def _attention_section(attention: list[TargetWeek], detailed: set[str]) -> list[str]:
    """Only the targets with a problem this week, worst first, each problem named."""
    out = ['<section class="overview attention">', f"<h2>Needs attention ({len(attention)})</h2>"]
    if not attention:
        return [*out, "<p>Nothing needs attention this week.</p>", "</section>"]
    out += ["<table>", "<thead><tr><th>Target</th><th>Group</th><th>Engine</th><th>Problems</th></tr></thead>",
            "<tbody>"]
    for t in attention:
        name = f'<a href="#t-{escape(t.name)}">{escape(t.name)}</a>' if t.name in detailed else escape(t.name)
        problems = " ".join(f'<span class="badge {"bad" if level == 2 else "warn"}">{escape(text)}</span>'
                            for level, text in t.problems)
        out.append(f"<tr><td>{name}</td><td>{escape(t.group)}</td><td>{escape(t.engine)}</td><td>{problems}</td></tr>")
    return [*out, "</tbody>", "</table>", "</section>"]


def _group_summary(data: StageWeek) -> list[str]:
    """Counts per group: what a stage of hundreds of targets shows instead of a row per target."""
    out = ['<section class="overview">', "<h2>Groups</h2>", "<table>",
           "<thead><tr><th>Group</th><th class=\"num\">Targets</th><th class=\"num\">Need attention</th>"
           "<th class=\"num\">Backups</th><th class=\"num\">Failed</th><th class=\"num\">Not verified</th>"
           "<th class=\"num\">Unhealthy</th><th class=\"num\">Alarms fired</th></tr></thead>", "<tbody>"]
    for group, members in _by_group(data.targets).items():
        cells = (len(members), sum(t.needs_attention for t in members), sum(len(t.backups) for t in members),
                 sum(len(t.failed) for t in members), sum(not t.verified for t in members),
                 sum(bool(t.health and t.health.counts.get("unhealthy")) for t in members),
                 sum(len(t.alarms_fired) for t in members))
        out.append(f"<tr><td>{escape(group)}</td>" + "".join(f'<td class="num">{n}</td>' for n in cells) + "</tr>")
    return [*out, "</tbody>", "</table>", "</section>"]


def _overview(data: StageWeek, ordered: list[TargetWeek]) -> list[str]:
    out = ['<section class="overview">', "<h2>Overview</h2>"]
    if not data.targets:
        return [*out, '<p class="muted">No targets are configured for this stage.</p>', "</section>"]
    out += ["<table>", "<thead><tr><th>Target</th><th>Engine</th><th class=\"num\">Backups</th>"
            "<th class=\"num\">Failed</th><th>Last verified</th><th>Last drill RTO</th>"
            "<th class=\"num\">Alarms fired</th><th class=\"num\">Remediations</th><th>Status</th></tr></thead>",
            "<tbody>"]
    for t in ordered:
        alarms = DASH if t.alarms is None else str(len(t.alarms_fired))
        drill = human_seconds(t.last_drill[1].get("rto_s")) if t.last_drill else "none"
        verified = _time(t.last_verified.verified_at or t.last_verified.finished_at) if t.last_verified else "never"
        out.append(f'<tr><td><a href="#t-{escape(t.name)}">{escape(t.name)}</a></td><td>{escape(t.engine)}</td>'
                   f'<td class="num">{len(t.backups)}</td><td class="num">{len(t.failed)}</td>'
                   f"<td>{escape(verified)}</td><td>{escape(drill)}</td><td class=\"num\">{alarms}</td>"
                   f'<td class="num">{len(t.remediations)}</td><td>{_badge(not t.needs_attention)}</td></tr>')
    return [*out, "</tbody>", "</table>", "</section>"]


def _target_section(t: TargetWeek, data: StageWeek) -> list[str]:
    out = [f'<section class="target" id="t-{escape(t.name)}">',
           f"<h2>{escape(t.name)} <span class=\"muted\">{escape(t.engine)}</span> "
           f"{_badge(not t.needs_attention)}</h2>"]
    out += _cards(t)
    out += ["<h3>Graphs</h3>", '<div class="charts">']
    if t.images:
        for caption, png in t.images:
            uri = "data:image/png;base64," + base64.b64encode(png).decode()
            out.append(f"<figure><figcaption>{escape(caption)}</figcaption>"
                       f'<img src="{uri}" alt="{escape(caption)}" width="560" height="240"></figure>')
    else:
        days = data.week.days
        out.append(_figure("Backup size per day (largest good backup)",
                           svg_bars(days, _per_day(t.good, days, lambda b: b.size_bytes), human_bytes,
                                    failed=_failed_days(t, days))))
        out.append(_figure("Backup duration per day (longest)",
                           svg_bars(days, _per_day(t.good, days, _duration), human_seconds, color="#627d98",
                                    failed=_failed_days(t, days))))
        if t.health:
            out.append(_figure(f"Worst health status per day ({t.health.source})", svg_health(days, t.health)))
    out.append("</div>")
    out += _backups_table(t)
    out += _health_section(t)
    out += _alarms_section(t)
    out += _remediation_section(t)
    out += _slow_queries_section(t)
    return [*out, "</section>"]


def _cards(t: TargetWeek) -> list[str]:
    sizes = [float(b.size_bytes) for b in t.good if b.size_bytes is not None]
    durations = [d for d in (_duration(b) for b in t.good) if d is not None]
    if t.last_verified:
        at = t.last_verified.verified_at or t.last_verified.finished_at
        verified = (escape(_short(at)), escape(t.last_verified.backup_id))
    else:
        verified = ("never", "no VERIFIED backup in the catalog")
    if t.last_drill:
        record, drill = t.last_drill
        drill_card = (escape(human_seconds(drill.get("rto_s"))),
                      f"drill {escape(_short(_parse_time(drill['at'])))} UTC of {escape(record.backup_id)}")
    else:
        drill_card = ("none", "no restore drill recorded")
    cards = [
        ("Backups this week", f"{len(t.backups)}", f"{len(t.good)} good · {len(t.failed)} failed"),
        ("Latest size", escape(human_bytes(sizes[-1] if sizes else None)), escape(_trend(sizes))),
        ("Mean duration", escape(human_seconds(sum(durations) / len(durations) if durations else None)),
         escape(_trend(durations))),
        ("Last VERIFIED", *verified),
        ("Last drill RTO", *drill_card),
    ]
    out = ['<div class="cards">']
    for key, value, sub in cards:
        out.append(f'<div class="card"><div class="k">{key}</div><div class="v">{value}</div>'
                   f'<div class="s">{sub}</div></div>')
    return [*out, "</div>"]


def _backups_table(t: TargetWeek) -> list[str]:
    out = ["<h3>Backups</h3>"]
    if not t.backups:
        return [*out, '<p class="muted">No backups started this week.</p>']
    out += ["<table>", "<thead><tr><th>Started</th><th>Backup</th><th>Status</th><th class=\"num\">Size</th>"
            "<th class=\"num\">Duration</th><th>Note</th></tr></thead>", "<tbody>"]
    for b in t.backups:
        cls = _STATUS_CLASS.get(b.status.value, "muted")
        note = b.error or ("on hold" if b.hold else "")
        out.append(f"<tr><td>{escape(_time(b.started_at))}</td><td><code>{escape(b.backup_id)}</code></td>"
                   f'<td><span class="badge {cls}">{escape(b.status.value)}</span></td>'
                   f'<td class="num">{escape(human_bytes(b.size_bytes))}</td>'
                   f'<td class="num">{escape(human_seconds(_duration(b)))}</td><td>{escape(note[:200])}</td></tr>')
    return [*out, "</tbody>", "</table>"]


def _health_section(t: TargetWeek) -> list[str]:
    out = ["<h3>Health</h3>"]
    if t.health is None:
        return [*out, '<p class="muted">No health data recorded this week.</p>']
    c = t.health.counts
    return [*out, f"<p>{c['healthy']} healthy, {c['degraded']} degraded, {c['unhealthy']} unhealthy "
                  f'<span class="muted">({escape(t.health.source)})</span></p>']


def _alarm_rows(events: list[AlarmEvent]) -> list[str]:
    out = ["<table>", "<thead><tr><th>When</th><th>Alarm</th><th>Change</th><th>Reason</th></tr></thead>",
           "<tbody>"]
    for e in events:
        cls = "bad" if e.new == "ALARM" else "ok" if e.new == "OK" else "warn"
        out.append(f"<tr><td>{escape(_time(e.at))}</td><td>{escape(e.alarm)}</td>"
                   f'<td>{escape(e.old)} → <span class="badge {cls}">{escape(e.new)}</span></td>'
                   f"<td>{escape(e.reason[:240])}</td></tr>")
    return [*out, "</tbody>", "</table>"]


def _alarms_section(t: TargetWeek) -> list[str]:
    out = ["<h3>Alarms</h3>"]
    if t.alarms is None:
        return [*out, '<p class="muted">No alarm history available.</p>']
    if not t.alarms:
        return [*out, "<p>No alarm changed state this week.</p>"]
    return [*out, f"<p>{len(t.alarms_fired)} alarm(s) fired.</p>", *_alarm_rows(t.alarms)]


def _stage_alarms(data: StageWeek) -> list[str]:
    if not data.stage_alarms:
        return []
    return ['<section class="overview">', "<h2>Function and workflow alarms</h2>", *_alarm_rows(data.stage_alarms),
            "</section>"]


def _remediation_section(t: TargetWeek) -> list[str]:
    out = ["<h3>Remediation actions</h3>"]
    if not t.remediations:
        return [*out, '<p class="muted">No remediation actions this week.</p>']
    out += ["<table>", "<thead><tr><th>When</th><th>Action</th><th>Outcome</th><th>Alarm</th><th>What</th></tr>"
            "</thead>", "<tbody>"]
    for e in t.remediations:
        cls = "ok" if e.outcome in ("ok", "done") else "warn" if e.outcome in ("dry-run", "dry_run", "skipped") \
            else "bad"
        what = str(e.details.get("summary") or e.details.get("why") or "")
        out.append(f"<tr><td>{escape(_time(e.at))}</td><td>{escape(e.step)}</td>"
                   f'<td><span class="badge {cls}">{escape(e.outcome)}</span></td>'
                   f"<td>{escape(str(e.details.get('alarm') or DASH))}</td><td>{escape(what[:240])}</td></tr>")
    return [*out, "</tbody>", "</table>"]


def _slow_queries_section(t: TargetWeek) -> list[str]:
    out = ["<h3>Slow queries</h3>"]
    if not t.slow_queries and not t.slow_query_max:
        return [*out, '<p class="muted">None recorded.</p>']
    if t.slow_query_max:
        out.append(f"<p>Up to {t.slow_query_max:.0f} statement(s) above the slow-query threshold "
                   f"(CloudWatch SlowQueries).</p>")
    if t.slow_queries:
        out += ["<ul>", *(f"<li><code>{escape(q)}</code></li>" for q in t.slow_queries[:20]), "</ul>"]
    return out


# -- inline SVG charts -------------------------------------------------------------------------


def _per_day(records: list[BackupRecord], days: list[datetime], value: Any) -> list[float | None]:
    """The largest value per day (None: no backup that day)."""
    best: dict[str, float] = {}
    for r in records:
        v = value(r)
        if v is None:
            continue
        day = r.started_at.astimezone(UTC).strftime("%Y-%m-%d")
        best[day] = max(best.get(day, 0.0), float(v))
    return [best.get(d.strftime("%Y-%m-%d")) for d in days]


def _failed_days(t: TargetWeek, days: list[datetime]) -> set[int]:
    failed = {b.started_at.astimezone(UTC).strftime("%Y-%m-%d") for b in t.failed}
    return {i for i, d in enumerate(days) if d.strftime("%Y-%m-%d") in failed}


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}</figure>"


_W, _H, _L, _B, _T = 340, 180, 62, 28, 16  # width, height, left / bottom / top margins


def svg_bars(days: list[datetime], values: list[float | None], fmt: Any, *, color: str = "#2f80ed",
             failed: set[int] | None = None) -> str:
    """A bar per day with its value on top; a day without a value shows a dash, a failed day a red ✕."""
    failed = failed or set()
    top = max((v for v in values if v is not None), default=0.0) or 1.0
    plot_w, plot_h = _W - _L - 8, _H - _B - _T
    slot = plot_w / len(days)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
             f'role="img" font-family="sans-serif" font-size="10">',
             f'<line x1="{_L}" y1="{_T + plot_h}" x2="{_L + plot_w}" y2="{_T + plot_h}" stroke="#9aa5b1"/>',
             f'<line x1="{_L}" y1="{_T}" x2="{_L}" y2="{_T + plot_h}" stroke="#9aa5b1"/>',
             f'<text x="{_L - 4}" y="{_T + 4}" text-anchor="end" fill="#52606d">{escape(fmt(top))}</text>',
             f'<text x="{_L - 4}" y="{_T + plot_h}" text-anchor="end" fill="#52606d">0</text>']
    for i, (day, value) in enumerate(zip(days, values, strict=True)):
        cx = _L + slot * i + slot / 2
        parts.append(f'<text x="{cx:.1f}" y="{_H - 10}" text-anchor="middle" fill="#52606d">'
                     f"{day:%a}</text>")
        if value is None:
            mark = ("✕", "#d64545") if i in failed else (DASH, "#9aa5b1")
            parts.append(f'<text x="{cx:.1f}" y="{_T + plot_h - 4}" text-anchor="middle" fill="{mark[1]}" '
                         f'font-size="12">{mark[0]}</text>')
            continue
        h = max(plot_h * value / top, 1.0)
        parts.append(f'<rect x="{cx - slot * 0.32:.1f}" y="{_T + plot_h - h:.1f}" width="{slot * 0.64:.1f}" '
                     f'height="{h:.1f}" fill="{color}" rx="2"><title>{day:%Y-%m-%d}: {escape(fmt(value))}</title>'
                     "</rect>")
        if i in failed:
            parts.append(f'<text x="{cx:.1f}" y="{_T + plot_h - h - 3:.1f}" text-anchor="middle" fill="#d64545" '
                         f'font-size="12">✕</text>')
    missing = any(v is None and i not in failed for i, v in enumerate(values))
    if failed or missing:
        legend = " · ".join(text for text, shown in (("✕ failed", failed), (f"{DASH} no backup", missing)) if shown)
        parts.append(f'<text x="{_L + plot_w}" y="{_T - 4}" text-anchor="end" fill="#7b8794">{legend}</text>')
    return "".join(parts) + "</svg>"


def svg_health(days: list[datetime], health: HealthWeek) -> str:
    """One square per day, coloured by the day's worst status."""
    colors = {0: "#3ebd6e", 1: "#f0b429", 2: "#d64545"}
    slot = (_W - 16) / len(days)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="70" viewBox="0 0 {_W} 70" role="img" '
             'font-family="sans-serif" font-size="10">']
    for i, day in enumerate(days):
        level = health.worst_by_day.get(day.strftime("%Y-%m-%d"))
        x = 8 + slot * i
        fill = colors.get(level, "#e4e7eb") if level is not None else "#e4e7eb"
        label = HEALTH_LABELS.get(level, "no data") if level is not None else "no data"
        parts.append(f'<rect x="{x + 3:.1f}" y="8" width="{slot - 6:.1f}" height="32" rx="4" fill="{fill}">'
                     f"<title>{day:%Y-%m-%d}: {label}</title></rect>")
        parts.append(f'<text x="{x + slot / 2:.1f}" y="56" text-anchor="middle" fill="#52606d">{day:%a}</text>')
    return "".join(parts) + "</svg>"


# -- entry points ------------------------------------------------------------------------------


def render_report(stores: Stores, now: datetime, *, charts: Charts = "auto",
                  actor: str = "") -> tuple[str, str]:
    """The report of the last complete week before `now`: (HTML page, short text summary)."""
    data = collect_week(stores, now, charts=charts)
    return render_html(data, actor=actor), summarize(data)


def run_report(stores: Stores, now: datetime, actor: str, *, charts: Charts = "auto") -> dict[str, str]:
    """Render the week's report, store it in S3 (SSE-KMS) and publish the summary to SNS.

    Returns `{"key": <S3 key>, "summary": <text>}`. Running again for the same week overwrites
    the same object.
    """
    settings = stores.settings
    if stores.missing("artifacts"):
        raise ConfigError("the report needs the bucket (WARDEN_BUCKET)")
    html, summary = render_report(stores, now, charts=charts, actor=actor)
    key = report_key(settings.stage, report_week(now))
    try:
        stores.artifacts.put_bytes(key, html.encode(), content_type="text/html; charset=utf-8",
                                   metadata={"generated-by": actor[:200]})
    except ArtifactError as err:
        raise ReportError(f"cannot store the report at s3://{settings.bucket}/{key}: {err.code}") from err
    if settings.topic_arn:
        message = f"{summary}\n\nFull report: s3://{settings.bucket}/{key}"
        try:
            aws_client("sns").publish(TopicArn=settings.topic_arn, Message=message,
                                      Subject=f"Warden {settings.stage} weekly report {report_week(now).label}"[:100])
        except ClientError as err:
            raise ReportError(f"cannot announce the report on {settings.topic_arn}: "
                              f"{err.response['Error']['Code']}") from err
    return {"key": key, "summary": summary}
