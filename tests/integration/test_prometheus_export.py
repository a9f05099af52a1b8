"""`warden health --format prometheus` against the local stage (the synthesized stack in a moto
server, the real Neo4j and PostgreSQL behind it), read back with prometheus_client's parser; and the
Grafana dashboard in dashboards/grafana, checked against what the exporter really emits and against
the CloudWatch dashboard it stands in for."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from local.postgres import PostgresEndpoint
from tests.integration.test_cli import cli_db, local_home, run  # noqa: F401  (the CLI test's local stage)
from warden.models import HealthReport
from warden.prometheus import CHECK_VALUE, STATUS_VALUE, VALUE_METRICS
from warden_cli import main as cli

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "dashboards" / "grafana" / "warden.json"

Families = dict[str, dict[tuple[tuple[str, str], ...], float]]


def exposition(stdout: str) -> str:
    """The CLI's stdout without the JSON lines (logs, EMF) of the handlers, which run in this process
    here (under `warden local up` they run in the runtime's process and log there). No exposition
    line starts with `{`."""
    return "".join(line for line in stdout.splitlines(keepends=True) if not line.startswith("{"))


def parse(text: str) -> Families:
    families: Families = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation, family.name
        assert family.name not in families, f"{family.name} appears twice"
        families[family.name] = {tuple(sorted(s.labels.items())): s.value for s in family.samples}
    return families


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> list[HealthReport]:
    """Every health report the CLI receives from the (real) health function during the test."""
    seen: list[HealthReport] = []
    real = cli.invoke

    def recording(handle: Any, job: str, event: dict[str, Any], **kwargs: Any) -> Any:
        payload = real(handle, job, event, **kwargs)
        if job == "health":
            seen.append(HealthReport.model_validate(payload))
        return payload

    monkeypatch.setattr(cli, "invoke", recording)
    return seen


def expected_families(report: HealthReport) -> Families:
    """What the exposition must say about `report`, family by family (docs/metrics.md)."""
    out: Families = {"warden_health_targets_checked": {key(stage=report.stage): len(report.targets)}}
    for t in report.targets:
        base = {"stage": report.stage, "target": t.target, "engine": t.engine.value}
        out.setdefault("warden_health_status", {})[key(**base)] = STATUS_VALUE[t.status]
        out.setdefault("warden_health_healthy", {})[key(**base)] = int(t.status.value == "healthy")
        for c in t.checks:
            labels = key(**base, check=c.name, tier=str(c.details["tier"]))
            out.setdefault("warden_health_check_status", {})[labels] = CHECK_VALUE[c.status]
            out.setdefault("warden_health_check_duration_seconds", {})[labels] = c.duration_ms / 1000
            for name, value in dict(c.details.get("metrics") or {}).items():
                if name in VALUE_METRICS:
                    spec = VALUE_METRICS[name]
                    out.setdefault(spec.name, {})[key(**base)] = value * spec.scale
        connectivity = next(c for c in t.checks if c.name == "connectivity")
        out.setdefault("warden_server_info", {})[key(**base, version=str(t.server_version),
                                                     edition=str(connectivity.details["edition"]))] = 1
    return out


def test_health_prometheus_output_equals_the_health_report(
        local_home: Path, capsys: pytest.CaptureFixture[str], reports: list[HealthReport],  # noqa: F811
        postgres: PostgresEndpoint, neo4j_server: Any) -> None:
    # When the operator asks for the Prometheus exposition (no backups yet: unhealthy, exit 1)
    code, out = run(capsys, "--format", "prometheus", "health")
    (report,) = reports

    # Then it parses, and each family, label set and value is the report's
    assert code == 1 and report.status.value == "unhealthy"
    families = parse(exposition(out))
    for name, samples in expected_families(report).items():
        assert families[name].keys() == samples.keys(), name
        for labels, value in samples.items():
            assert families[name][labels] == pytest.approx(value, rel=1e-9), (name, labels)
    assert "warden_health_backup_age_seconds" not in families  # no backup: no age, as in CloudWatch
    # ... the versions are what the servers themselves say
    with psycopg.connect(postgres.uri()) as conn:
        pg_version = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]
    versions = {dict(k)["target"]: dict(k)["version"] for k in families["warden_server_info"]}
    assert versions == {"pg-local": pg_version, "graph-local": neo4j_server.version}
    # ... and the end of support of PostgreSQL 18 / Neo4j 5.26 is known without configuration
    series = {dict(k)["target"]: dict(k)["series"] for k in families["warden_server_end_of_support_timestamp_seconds"]}
    assert series == {"pg-local": pg_version.split(".")[0], "graph-local": "5.26"}


def test_health_prometheus_output_file_is_written_whole(
        local_home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path,  # noqa: F811
        reports: list[HealthReport]) -> None:
    # Given an old file in the textfile collector's directory
    directory = tmp_path / "textfile"
    directory.mkdir()
    path = directory / "warden.prom"
    path.write_text("# old\n")
    # When the CLI writes there
    code, out = run(capsys, "--format", "prometheus", "health", "--target", "pg-local", "--output", str(path))
    # Then nothing goes to stdout, the file holds the run's exposition, and no temporary file is left
    assert exposition(out) == "" and code in (0, 1)
    families = parse(path.read_text())
    assert families["warden_health_targets_checked"] == {key(stage="local"): 1}
    assert {dict(k)["target"] for k in families["warden_health_status"]} == {"pg-local"}
    assert families["warden_health_status"][key(stage="local", target="pg-local", engine="postgres")] == \
        STATUS_VALUE[reports[0].status]
    assert [p.name for p in directory.iterdir()] == ["warden.prom"]


def test_bad_prometheus_requests_are_refused_before_anything_runs(
        local_home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path,  # noqa: F811
        reports: list[HealthReport]) -> None:
    missing = tmp_path / "nowhere" / "warden.prom"
    code, _ = run(capsys, "--format", "prometheus", "health", "--output", str(missing))
    assert code == 2 and "does not exist" in run.err and not missing.parent.exists()
    code, _ = run(capsys, "health", "--output", str(tmp_path / "warden.prom"))
    assert code == 2 and "--format prometheus" in run.err and not (tmp_path / "warden.prom").exists()
    code, _ = run(capsys, "--format", "prometheus", "backup", "list", "--target", "pg-local")
    assert code == 2 and "`warden health` only" in run.err
    assert reports == []  # the health function was never invoked


# --- the Grafana dashboard -----------------------------------------------------------------------

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                 "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords,
    label matchers, grouping labels, strings or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        after = text[match.end():].lstrip()
        if after.startswith("(") or match.group().lower() in _PROMQL_WORDS:
            continue  # a function call or a keyword
        names.add(match.group())
    return names


def test_metric_names_are_read_out_of_promql() -> None:
    assert metric_names('sum by (target) (rate(a_total{x="y{z}"}[5m])) / on(target) b') == {"a_total", "b"}
    assert metric_names('(warden_x{stage=~"$stage"} - time()) / 86400') == {"warden_x"}


def grafana_panels() -> list[dict[str, Any]]:
    dashboard = json.loads(GRAFANA.read_text())
    return [p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]]


def test_grafana_dashboard_is_an_importable_prometheus_dashboard() -> None:
    dashboard = json.loads(GRAFANA.read_text())
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert {"stage", "target"} <= variables.keys()
    ids = [p["id"] for p in grafana_panels()]
    assert len(ids) == len(set(ids))
    for panel in grafana_panels():
        if panel["type"] in ("row", "text"):
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert "$stage" in target["expr"] and ("$target" in target["expr"] or "targets_checked" in target["expr"])


# CloudWatch widget (infra/dashboard.py; `{t}` a target) -> the Grafana panel that stands in for it.
COVERED = {
    "Worst health (0 healthy, 1 degraded, 2 unhealthy)": "Health",
    "Tiers not passing (1 warn, 2 fail)": "Checks not passing",
    "Stage alarms (fleet, functions, state machines)": "Checks not passing",
    "Oldest backups (h)": "Backup age",
    "Backups failed": "Backups: freshness and verification",
    "Backups corrupt": "Backups: freshness and verification",
    "Longest backups (s)": "Backup duration",
    "PostgreSQL connections used (%)": "PostgreSQL connections used",
    "PostgreSQL long-running queries": "PostgreSQL long-running queries",
    "Neo4j oldest transaction (s)": "Neo4j transactions",
    "Neo4j heap used (%)": "Neo4j heap used",
    "{t}: health": "Health",
    "{t}: backup age (h)": "Backup age",
    "{t}: backups": "Backups: freshness and verification",
    "{t}: backup size (bytes)": "Backup size",
    "{t}: backup duration (s)": "Backup duration",
    "{t}: Neo4j transactions": "Neo4j transactions",
    "{t}: Neo4j heap used (%)": "Neo4j heap used",
    "{t}: PostgreSQL connections used (%)": "PostgreSQL connections used",
    "{t}: PostgreSQL long-running queries": "PostgreSQL long-running queries",
    "{t}: PostgreSQL database size (bytes)": "PostgreSQL database size",
    "Health runs: targets checked": "Health runs: targets checked",
}
# ... and the ones a health exporter cannot stand in for, with the reason (docs/monitoring.md).
NOT_COVERED = {
    "{t}: licence days left": "the license_check job's metric, not part of a health run",
    "Fewest licence days left": "the license_check job's metric, not part of a health run",
    "Largest stored backups (bytes)": "the backup function's StoredBytes, not part of a health run",
    "PostgreSQL replication lag (s)": ("replica targets only; exported as warden_health_replication_lag_seconds, "
                                       "which the local targets (no replica) never emit"),
    "Functions: errors": "AWS Lambda's own metrics: CloudWatch only",
    "Functions: throttles": "AWS Lambda's own metrics: CloudWatch only",
    "State machines: executions failed / timed out": "AWS Step Functions' own metrics: CloudWatch only",
}
NOT_COVERED_PATTERNS = {  # instance and log graphs: CloudWatch / CloudWatch agent metrics of the hosts
    r"^{t}: (EC2|RDS) ": "host metrics: node_exporter on the host already gives them to Prometheus",
    r"^{t}: log lines per ": "CloudWatch Logs metric filters: CloudWatch only",
}


def cloudwatch_widget_titles(template: dict[str, Any]) -> list[str]:
    (dashboard,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = dashboard["Properties"]["DashboardBody"]
    text = body if isinstance(body, str) else "".join(p if isinstance(p, str) else "TOKEN"
                                                      for p in body["Fn::Join"][1])
    return [w["properties"]["title"] for w in json.loads(text)["widgets"] if w["properties"].get("title")]


def test_grafana_panels_cover_the_cloudwatch_dashboard(local_template: dict[str, Any]) -> None:
    titles = {p["title"] for p in grafana_panels()}
    assert set(COVERED.values()) <= titles
    widgets = cloudwatch_widget_titles(local_template)
    assert widgets, "the local stage's dashboard has widgets"
    for widget in widgets:
        generic = re.sub(r"^(graph-local|pg-local): ", "{t}: ", widget)
        assert generic in COVERED or generic in NOT_COVERED or any(
            re.match(p.replace("{t}", r"\{t\}"), generic) for p in NOT_COVERED_PATTERNS), \
            f"CloudWatch widget {widget!r} has no Grafana panel and no reason given"
    # every mapped widget still exists (a renamed CloudWatch widget must update the map)
    generic_widgets = {re.sub(r"^(graph-local|pg-local): ", "{t}: ", w) for w in widgets}
    assert set(COVERED) | set(NOT_COVERED) <= generic_widgets


def test_grafana_panels_query_only_what_the_exporter_emits(
        local_home: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    # Given both targets backed up and verified, so that every family has samples
    for target in ("graph-local", "pg-local"):
        _, created = run(capsys, "--format", "json", "backup", "create", "--target", target, "--wait")
        backup_id = json.loads(created)["backup_id"]
        assert run(capsys, "backup", "verify", "--target", target, "--backup-id", backup_id)[0] == 0
    # When the exporter runs
    code, out = run(capsys, "--format", "prometheus", "health")
    emitted = set(parse(exposition(out)))
    # Then every metric each panel queries is one the exporter emitted
    used: set[str] = set()
    for panel in grafana_panels():
        for target in panel.get("targets", []):
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= emitted, (panel["title"], names - emitted)
            used |= names
    # ... and the families the CloudWatch dashboard's counterparts need are all in use
    assert {"warden_health_status", "warden_health_check_duration_seconds", "warden_health_backup_age_seconds",
            "warden_health_last_backup_size_bytes", "warden_health_heap_used_ratio",
            "warden_health_connections_used_ratio", "warden_server_end_of_support_timestamp_seconds"} <= used
    assert code == 0, out  # backed up and verified: both targets healthy
