"""Fleet scheduling as synthesized (infra/fleet.py): one schedule per job and stage starting the
job's Fleet state machine, whose Map caps concurrency at the stage's `fleet.<job>.max_concurrency`
and catches each target's failure; per-target schedules only where a target overrides its job's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_helpers import Synthesized, logical_id, resources

from infra import cost
from infra.fleet import EXPRESS_JOBS, SCHEDULED_INPUT
from infra.stack import WardenStack
from local.aws import render_definition
from warden.config.fleet import fleet_expression

pytestmark = pytest.mark.infra


def fleet_definition(synthesized: Synthesized, stack: WardenStack, job: str) -> dict[str, Any]:
    template = synthesized.template(stack)
    machine_id = logical_id(stack, stack.fleet.runs[job].state_machine)
    return dict(json.loads(render_definition(template, machine_id, lambda i, a: f"arn:{i}:{a}")))


def test_each_job_has_one_schedule_per_stage_that_starts_its_fleet_state_machine(synthesized: Synthesized) -> None:
    for name, stack in synthesized.stacks.items():
        template = synthesized.template(stack)
        schedules = resources(template, "AWS::Scheduler::Schedule")
        machines = {logical_id(stack, run.state_machine): job for job, run in stack.fleet.runs.items()}
        by_job: dict[str, list[dict[str, Any]]] = {}
        for schedule in schedules.values():
            arn = schedule["Properties"]["Target"]["Arn"]
            if isinstance(arn, dict) and arn.get("Ref") in machines:
                by_job.setdefault(machines[arn["Ref"]], []).append(schedule["Properties"])
        scheduled = {"backup", "verify", "prune", "health", "license_check", "maintenance"} & set(stack.functions)
        assert set(by_job) == scheduled | {"drill"}, name
        for job, (props,) in by_job.items():
            assert props["ScheduleExpression"] == fleet_expression(job, stack.stage.fleet.job(job)), (name, job)
            assert json.loads(props["Target"]["Input"]) == SCHEDULED_INPUT
            assert props["ScheduleExpressionTimezone"] == "Etc/UTC"


def test_the_fleet_map_runs_at_most_the_configured_cap_and_catches_each_targets_failure(
        synthesized: Synthesized) -> None:
    stack = synthesized.stacks["dev"]
    assert stack.stage.fleet.health.max_concurrency == 20  # cdk.json's dev stage sets it
    for job in stack.fleet.runs:
        definition = fleet_definition(synthesized, stack, job)
        states = definition["States"]
        assert definition["StartAt"] == "Plan" and states["Plan"]["Next"] == "FanOut", job
        fan_out = states["FanOut"]
        assert fan_out["Type"] == "Map" and fan_out["ItemsPath"] == "$.plan.items"
        assert fan_out["MaxConcurrency"] == stack.stage.fleet.job(job).max_concurrency, job
        assert fan_out["Next"] == "Summarise" and states["Summarise"]["End"] is True
        items = fan_out["ItemProcessor"]["States"]
        assert items["Run"]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}]
        assert items["Run"]["Next"] == "Ok"
        assert items["Failed"]["Parameters"]["outcome"] == "failed" and items["Ok"]["Parameters"]["outcome"] == "ok"
    assert fleet_definition(synthesized, stack, "health")["States"]["FanOut"]["MaxConcurrency"] == 20
    assert fleet_definition(synthesized, stack, "backup")["States"]["FanOut"]["MaxConcurrency"] == 2


def test_a_windowed_job_waits_for_each_targets_offset_before_it_runs(synthesized: Synthesized) -> None:
    stack = synthesized.stacks["dev"]
    items = fleet_definition(synthesized, stack, "backup")["States"]["FanOut"]["ItemProcessor"]
    assert items["StartAt"] == "Delay"
    assert items["States"]["Delay"]["Next"] == "WaitForOffset"
    assert items["States"]["WaitForOffset"] == {"Type": "Wait", "SecondsPath": "$.delay.wait_s", "Next": "Run"}
    health = fleet_definition(synthesized, stack, "health")["States"]["FanOut"]["ItemProcessor"]
    assert health["StartAt"] == "Run"  # no window: no wait


def test_drills_start_the_recovery_machine_and_wait_for_it(synthesized: Synthesized) -> None:
    stack = synthesized.stacks["dev"]
    run = fleet_definition(synthesized, stack, "drill")["States"]["FanOut"]["ItemProcessor"]["States"]["Run"]
    assert run["Resource"].endswith(":states:startExecution.sync:2")
    assert run["Parameters"]["Input.$"] == "$.event"


def test_a_health_run_must_end_within_its_interval(synthesized: Synthesized) -> None:
    stack = synthesized.stacks["dev"]
    assert fleet_definition(synthesized, stack, "health")["TimeoutSeconds"] == 300


def test_the_health_run_is_an_express_workflow_with_nothing_express_refuses(synthesized: Synthesized) -> None:
    stack = synthesized.stacks["dev"]
    template = synthesized.template(stack)
    for job, run in stack.fleet.runs.items():
        props = template["Resources"][logical_id(stack, run.state_machine)]["Properties"]
        # Then health (every 5 minutes) is Express, billed by duration; the rest stay Standard
        assert props["StateMachineType"] == ("EXPRESS" if job in EXPRESS_JOBS else "STANDARD"), job
    assert sorted(EXPRESS_JOBS) == ["health"]
    definition = fleet_definition(synthesized, stack, "health")
    # And it holds no task Express refuses (.sync, callbacks), ends within Express's 5 minutes, and
    # logs to CloudWatch Logs (Express keeps no execution history of its own)
    resources_used = json.dumps(definition)
    assert ".sync" not in resources_used and "waitForTaskToken" not in resources_used
    assert definition["TimeoutSeconds"] <= 300
    props = template["Resources"][logical_id(stack, stack.fleet.runs["health"].state_machine)]["Properties"]
    assert props["LoggingConfiguration"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]


@pytest.mark.parametrize("items", [1, 500])
def test_the_cost_models_transitions_agree_with_each_fleet_definition(synthesized: Synthesized, items: int) -> None:
    stack = synthesized.stacks["dev"]
    for job in stack.fleet.runs:
        config = stack.stage.fleet.job(job)
        modelled = cost.fleet_run_cost(express=False, targets=items, expression=fleet_expression(job, config),
                                       max_concurrency=config.max_concurrency, windowed=config.window is not None)
        assert modelled.transitions == cost.definition_transitions(fleet_definition(synthesized, stack, job),
                                                                   items), job
