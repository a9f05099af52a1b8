"""`make demo` is the main job: it runs end to end, every step passes, and it cleans up."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from local import demo
from warden import tls

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end_and_stops_everything(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Its own directory, not pytest's numbered temp dirs (which another pytest run may prune)
    tmp_path = Path(tempfile.mkdtemp(prefix="warden-demo-test-"))
    monkeypatch.delenv("POWERTOOLS_LOG_LEVEL", raising=False)  # the demo's own default (INFO, into its log file)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    tls.forget_warnings()  # as in the fresh process `warden demo` runs in
    code = demo.main(["--work-dir", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert code == 0, out
    for step in ("Backup of graph-local", "Backup of pg-local", "VERIFIED", "Restore drill of graph-local",
                 "Weekly report", "RECOVERY_SUCCESS", "PROMOTED", "Summary", "All steps passed"):
        assert step in out, step
    # stdout holds the demo's steps only: no JSON log line among them
    assert [line for line in out.splitlines() if _is_json_object(line)] == []
    # the functions' logs are in the file the demo names, at its start and its end
    log_file = tmp_path / "demo" / "function-logs.jsonl"
    assert out.splitlines()[1].endswith(str(log_file)) and out.rstrip().endswith(f"Function logs: {log_file}")
    logs = [json.loads(line) for line in log_file.read_text().splitlines()]
    messages = {entry["message"] for entry in logs}
    assert {"backup finished", "health checked", "prune decided"} <= messages, messages
    assert all(entry["service"] == "warden" for entry in logs)
    assert any(entry.get("function_name") for entry in logs)  # from inside the handlers (Lambda context)
    # a deliberate TLS opt-out is logged once per database (graph-local, its staging server, pg-local and the
    # databases its recoveries restore into), not on every connection
    opted_out = [(e.get("uri"), e.get("host"), e.get("port"), e.get("dbname"), e.get("sslmode"))
                 for e in logs if "opted out of required TLS" in e["message"]]
    assert opted_out and len(opted_out) == len(set(opted_out)), opted_out
    # every server it started is gone: nothing listens on their data directories any more
    leftovers = [p for p in os.popen("ps -eo args").read().splitlines() if str(tmp_path) in p]
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert leftovers == []


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
