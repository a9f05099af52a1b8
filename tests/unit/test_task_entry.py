"""`python -m warden.task`: bad arguments exit 2 before anything is touched, and heartbeats go out
only while the export's bytes advance (a hung export goes quiet)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from warden.task import Heartbeats, main


@pytest.fixture(autouse=True)
def task_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Powertools settings a task gets (as the functions): the task's logger, imported here first,
    builds warden.observability's Metrics with them, as the handler tests expect it built."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "warden")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Warden")


@pytest.mark.parametrize(("argv", "message"), [
    ([], "required: job"),
    (["restore", "--target", "pg-local"], "invalid choice: 'restore'"),
    (["backup"], "--target"),
    (["backup", "--target", "Not A Target"], "target: String should match pattern"),
    (["backup", "--target", "pg-local", "--trigger", "whenever"], "--trigger: invalid choice"),
    (["backup", "--target", "pg-local", "--actor", ""], "--actor"),
    (["backup", "--target", "pg-local", "--colour", "red"], "unrecognized arguments: --colour"),
])
def test_bad_arguments_exit_2_with_the_reason(argv: list[str], message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv, environ={"WARDEN_STAGE": "local"}) == 2
    assert message in capsys.readouterr().err


def test_a_task_without_a_stage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backup", "--target", "pg-local"], environ={}) == 2
    assert "WARDEN_STAGE" in capsys.readouterr().err


class FakeStepFunctions:
    def __init__(self, fail: bool = False) -> None:
        self.tokens: list[str] = []
        self.fail = fail

    def send_task_heartbeat(self, **kwargs: Any) -> None:
        if self.fail:
            raise RuntimeError("TaskTimedOut")
        self.tokens.append(kwargs["taskToken"])


def test_a_heartbeat_goes_out_only_when_progress_advanced() -> None:
    sfn = FakeStepFunctions()
    beats = Heartbeats(sfn, "token-1", interval_s=60)
    assert beats.beat() is False  # nothing written yet
    beats.advance(1000)
    assert beats.beat() is True
    assert beats.beat() is False  # stalled: quiet
    beats.advance(2000)
    assert beats.beat() is True
    assert sfn.tokens == ["token-1", "token-1"] and beats.sent == 2


def test_the_heartbeat_thread_beats_every_interval_while_bytes_advance() -> None:
    sfn = FakeStepFunctions()
    beats = Heartbeats(sfn, "token-2", interval_s=0.05).start()
    try:
        for i in range(1, 7):
            beats.advance(i * 100)
            time.sleep(0.05)
        sent_while_writing = beats.sent
        time.sleep(0.3)  # the export hangs
        assert beats.sent <= sent_while_writing + 1
    finally:
        beats.stop()
    assert sent_while_writing >= 2


def test_a_failed_heartbeat_is_not_fatal() -> None:
    beats = Heartbeats(FakeStepFunctions(fail=True), "token-3", interval_s=60)
    beats.advance(10)
    assert beats.beat() is False and beats.sent == 0
