"""The Step Functions part of the cost model (infra/cost.py): what a job's fleet runs cost a month,
Standard by state transitions, Express by executions and duration (docs/cost.md)."""

from __future__ import annotations

import pytest

from infra import cost


@pytest.mark.parametrize(("expression", "runs"), [
    ("rate(5 minutes)", 8640), ("rate(1 hour)", 720), ("rate(1 day)", 30), ("cron(0 2 * * ? *)", 30),
    ("cron(0 */6 * * ? *)", 120), ("cron(0/15 * * * ? *)", 2880), ("cron(5,35 14 * * ? *)", 60),
    ("cron(0 3 ? * SUN *)", 30 / 7), ("cron(30 1 ? * MON-FRI *)", 30 * 5 / 7),
])
def test_runs_a_month_of_a_schedule_expression(expression: str, runs: float) -> None:
    assert cost.runs_per_month(expression) == pytest.approx(runs)


def test_a_health_run_every_5_minutes_as_standard_pays_its_transitions() -> None:
    # Given 500 targets checked every 5 minutes, 40 at once
    standard = cost.fleet_run_cost(express=False, targets=500, expression="rate(5 minutes)", max_concurrency=40)
    # Then a run enters Plan, FanOut, Summarise and per target its iteration, Run and Ok
    assert standard.transitions == 3 + 500 * 3
    assert standard.monthly == pytest.approx(8640 * 1503 * 0.025 / 1000)  # ~$325
    assert standard.per_target == pytest.approx(0.65, abs=0.01)


def test_the_health_run_as_express_costs_under_a_cent_a_target_even_at_its_timeout() -> None:
    kwargs = {"targets": 500, "expression": "rate(5 minutes)", "max_concurrency": 40}
    standard = cost.fleet_run_cost(express=False, **kwargs)  # type: ignore[arg-type]
    express = cost.fleet_run_cost(express=True, **kwargs)  # type: ignore[arg-type]
    slowest = cost.fleet_run_cost(express=True, run_s=300, **kwargs)  # type: ignore[arg-type]
    # Then a run takes its sized time (500 x 0.34 s / 40 + 5 s), billed at 64 MB
    assert express.run_s == pytest.approx(500 * 0.34 / 40 + 5)
    assert express.monthly == pytest.approx(8640 * (1e-6 + 0.0625 * express.run_s * 0.00001667))
    # And even with every run at the 5-minute timeout it stays under a hundredth of Standard's cost
    assert express.per_target < slowest.per_target < 0.01 < standard.per_target
    assert slowest.monthly < standard.monthly / 100


def test_a_windowed_job_pays_its_wait_states_too() -> None:
    backup = cost.fleet_run_cost(express=False, targets=500, expression="cron(0 2 * * ? *)", max_concurrency=4,
                                 windowed=True)
    assert backup.transitions == 3 + 500 * 5  # Delay and WaitForOffset before Run, Ok
    assert backup.monthly == pytest.approx(30 * 2503 * 0.025 / 1000)
