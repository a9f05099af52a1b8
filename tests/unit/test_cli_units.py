"""Small pieces of the CLI's output that need no stage."""

from __future__ import annotations

from warden_cli.main import progress_text


def test_a_running_backups_progress_reads_bytes_rate_and_time_left() -> None:
    assert progress_text(None) == "starting"
    assert progress_text({"bytes": 3 * 2**30, "rate_bytes_s": 50 * 2**20, "eta_s": 600}) == (
        "3,072.0 MiB written, 50.0 MiB/s, 10 min left")
    assert progress_text({"bytes": 2**20, "rate_bytes_s": 2**20, "eta_s": 30}).endswith("30 s left")
    assert progress_text({"bytes": 2**20, "rate_bytes_s": 2**20, "eta_s": None}).endswith("- left")
