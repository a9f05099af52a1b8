"""Where a maintenance run goes (warden.runner.choose_maintenance, docs/fargate.md "Maintenance on
Fargate"): the configured runner; `auto` by the last durations of the tasks it will run, and a
Lambda run that never finished; the task's command carries the tasks asked for; a statement on
Fargate may take the task's timeout less a margin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from warden.config.target import Target
from warden.maintenance import FARGATE_STATEMENT_MARGIN_S, MAINTENANCE_BUDGET_S, History, fargate_statement_timeout_s
from warden.runner import choose_maintenance, task_command, task_input

NOW = datetime(2026, 12, 1, 3, tzinfo=UTC)


def target(**changes: object) -> Target:
    return Target.model_validate({"name": "pg", "engine": "postgres", "secret_name": "warden/x/pg", **changes})


@pytest.mark.parametrize("runner", ["lambda", "fargate"])
def test_a_configured_runner_is_kept_whatever_the_history(runner: str) -> None:
    known = History(duration_s={"vacuum": 10_000.0} if runner == "lambda" else {"vacuum": 1.0})
    choice = choose_maintenance(target(runner=runner), known, ["vacuum"], budget_s=900, now=NOW)
    assert choice.runner == runner and choice.reason == f"the target's runner is {runner}"


def test_auto_goes_to_fargate_when_the_tasks_last_runs_took_more_than_half_the_budget() -> None:
    known = History(duration_s={"vacuum": 300.0, "analyze": 200.0, "reindex": 5.0})
    choice = choose_maintenance(target(), known, ["vacuum", "analyze"], budget_s=900, now=NOW)
    assert choice.runner == "fargate"
    assert choice.reason == ("its last maintenance runs (vacuum, analyze) took 500 s, more than half the Lambda "
                             "budget of 900 s")


def test_auto_stays_on_lambda_when_the_tasks_it_runs_were_quick_though_another_was_not() -> None:
    # The weekly REINDEX took long; a 6-hourly VACUUM alone fits
    known = History(duration_s={"vacuum": 30.0, "reindex": 3000.0})
    assert choose_maintenance(target(), known, ["vacuum"], budget_s=900, now=NOW).runner == "lambda"
    assert choose_maintenance(target(), known, ["vacuum", "reindex"], budget_s=900, now=NOW).runner == "fargate"


def test_auto_without_a_recorded_run_of_the_tasks_starts_on_lambda() -> None:
    choice = choose_maintenance(target(), History(), ["vacuum"], budget_s=900, now=NOW)
    assert choice.runner == "lambda" and "no maintenance run" in choice.reason


def test_auto_goes_to_fargate_after_a_lambda_run_that_never_finished() -> None:
    # Given a run on Lambda that started 20 min ago and never recorded its end (stopped at the time limit)
    died = History(duration_s={"vacuum": 10.0}, runner="lambda", started_at=NOW - timedelta(minutes=20))
    choice = choose_maintenance(target(), died, ["vacuum"], budget_s=900, now=NOW)
    assert choice.runner == "fargate" and "never finished" in choice.reason
    # A run still within its budget is running, not dead; a finished one is judged by its durations
    running = History(duration_s={"vacuum": 10.0}, runner="lambda", started_at=NOW - timedelta(minutes=5))
    assert choose_maintenance(target(), running, ["vacuum"], budget_s=900, now=NOW).runner == "lambda"
    ended = History(duration_s={"vacuum": 10.0}, runner="lambda", started_at=NOW - timedelta(minutes=20),
                    finished_at=NOW - timedelta(minutes=19))
    assert choose_maintenance(target(), ended, ["vacuum"], budget_s=900, now=NOW).runner == "lambda"


def test_the_task_command_carries_the_tasks_asked_for_and_none_for_the_due_ones() -> None:
    assert task_command(target(), "maintenance", "cli", "cli:alice", ["vacuum", "analyze"]) == [
        "maintenance", "--target", "pg", "--trigger", "cli", "--actor", "cli:alice", "--tasks", "vacuum,analyze"]
    assert "--tasks" not in task_command(target(), "maintenance", "schedule", "function:m")
    sent = task_input(target(), "maintenance", "schedule", "function:m")
    assert sent["job"] == "maintenance" and sent["timeout_s"] == 12 * 3600


def test_a_statement_on_fargate_may_take_the_tasks_timeout_less_the_margin() -> None:
    assert fargate_statement_timeout_s(target(fargate={"timeout_hours": 6})) == 6 * 3600 - FARGATE_STATEMENT_MARGIN_S
    # even the shortest task timeout leaves a statement longer than the whole Lambda budget
    assert fargate_statement_timeout_s(target(fargate={"timeout_hours": 0.5})) > MAINTENANCE_BUDGET_S
