"""`make demo` is the main job: it runs end to end, every step passes, and it cleans up."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from local import demo

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end_and_stops_everything(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Its own directory, not pytest's numbered temp dirs (which another pytest run may prune)
    tmp_path = Path(tempfile.mkdtemp(prefix="warden-demo-test-"))
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    code = demo.main(["--work-dir", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert code == 0, out
    for step in ("Backup of graph-local", "Backup of pg-local", "VERIFIED", "Restore drill of graph-local",
                 "Weekly report", "RECOVERY_SUCCESS", "PROMOTED", "Summary", "All steps passed"):
        assert step in out, step
    # every server it started is gone: nothing listens on their data directories any more
    leftovers = [p for p in os.popen("ps -eo args").read().splitlines() if str(tmp_path) in p]
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert leftovers == []
