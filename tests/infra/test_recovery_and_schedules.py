"""The Recovery state machine's states and error paths, and the schedules, as synthesized
(the Fleet state machines' own: tests/infra/test_fleet_schedules.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_helpers import Synthesized, fleet_alarm_targets, resources

from local.aws import render_definition
from warden.config.fleet import default_expression, fleet_expression, runs_in_fleet

pytestmark = pytest.mark.infra


def definition(synthesized: Synthesized, stage: str = "dev") -> dict[str, Any]:
    template = synthesized.template(synthesized.stacks[stage])
    (machine_id,) = [lid for lid, r in resources(template, "AWS::StepFunctions::StateMachine").items()
                     if "Recovery" in lid]
    return dict(json.loads(render_definition(template, machine_id, lambda i, a: f"arn:{i}:{a}")))


def test_recovery_states_run_preflight_restore_validate_approval_promote_finish(synthesized: Synthesized) -> None:
    states = definition(synthesized)["States"]
    assert definition(synthesized)["StartAt"] == "Preflight"
    assert states["Preflight"]["Next"] == "Restore"
    assert states["Restore"]["Next"] == "Validate"
    assert states["Validate"]["Next"] == "ApprovalMode"
    choice = states["ApprovalMode"]
    assert choice["Choices"][0]["Variable"] == "$.plan.approval" and choice["Choices"][0]["Next"] == "RequestApproval"
    assert choice["Default"] == "Promote"
    assert states["RequestApproval"]["Resource"].endswith(":lambda:invoke.waitForTaskToken")
    assert states["RequestApproval"]["Next"] == "Promote"
    assert states["Promote"]["Next"] == "Finish" and states["Finish"]["Next"] == "Recovered"


def test_every_step_after_preflight_rolls_back_and_preflight_touches_nothing(synthesized: Synthesized) -> None:
    states = definition(synthesized)["States"]
    assert [c["Next"] for c in states["Preflight"]["Catch"]] == ["PreflightFailed"]
    for name in ("Restore", "Validate", "RequestApproval", "Promote", "Finish"):
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                                          "Next": "Rollback"}], name
    assert states["Rollback"]["Next"] == "RecoveryFailed"
    assert states["Rollback"]["Catch"][0]["Next"] == "RollbackFailed"
    assert states["RecoveryFailed"]["Type"] == "Fail" and states["PreflightFailed"]["Type"] == "Fail"


def test_only_transient_errors_are_retried_with_backoff_and_every_task_has_a_timeout(
        synthesized: Synthesized) -> None:
    states = definition(synthesized)["States"]
    for name, state in states.items():
        if state["Type"] != "Task":
            continue
        assert state["TimeoutSeconds"] <= 7 * 86400, name
        for retry in state.get("Retry", []):
            assert "States.ALL" not in retry["ErrorEquals"] and "RecoveryRefused" not in retry["ErrorEquals"]
            assert retry["BackoffRate"] >= 2 and retry["MaxAttempts"] <= 3
    assert "DatabaseUnavailable" in states["Restore"]["Retry"][0]["ErrorEquals"]


def test_recovery_machine_logs_all_with_tracing(synthesized: Synthesized) -> None:
    template = synthesized.template(synthesized.stacks["dev"])
    (machine,) = [r for lid, r in resources(template, "AWS::StepFunctions::StateMachine").items()
                  if "Recovery" in lid]
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["TracingConfiguration"] == {"Enabled": True}


def test_every_target_runs_every_job_and_a_drill_on_its_schedule_by_the_fleet_run_or_its_own(
        synthesized: Synthesized) -> None:
    # Was: one schedule per target and job plus a weekly drill. Fleet scheduling (infra/fleet.py) keeps
    # the property that matters: each target's every job runs on the target's expression, either in
    # the job's fleet run (one schedule per job) or, where the target overrides it, on its own schedule.
    for name, stack in synthesized.stacks.items():
        jobs = {"backup", "verify", "prune", "health", "license_check", "maintenance"} & set(stack.functions)
        own = set(stack.schedules.schedules)
        for target in stack.stage.targets:
            for job in (*sorted(jobs), "drill"):
                config = stack.stage.fleet.job(job)
                expression = target.recovery.drill_schedule if job == "drill" else getattr(target.schedules, job)
                has_own = (target.name in stack.recovery.drills) if job == "drill" else (target.name, job) in own
                if runs_in_fleet(target, job, config):
                    assert not has_own, (name, target.name, job)
                    assert expression in (fleet_expression(job, config), default_expression(job))
                else:
                    assert has_own, (name, target.name, job)
        for (target_name, job), schedule in stack.schedules.schedules.items():
            target = next(t for t in stack.stage.targets if t.name == target_name)
            assert schedule.schedule_expression == getattr(target.schedules, job)
            assert json.loads(str(schedule.target.input))["scheduled_time"] == "<aws.scheduler.scheduled-time>"
    # cdk.json's prod stage: analytics-pg backs up at 01:00 and checks health every minute, on its own
    prod = synthesized.stacks["prod"]
    assert set(prod.schedules.schedules) == {("analytics-pg", "backup"), ("analytics-pg", "health")}
    for schedule in resources(synthesized.template(prod), "AWS::Scheduler::Schedule").values():
        assert schedule["Properties"]["ScheduleExpressionTimezone"] == "Etc/UTC"
        assert schedule["Properties"]["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_scheduler_roles_invoke_exactly_one_function_or_start_the_recovery_machine(
        synthesized: Synthesized) -> None:
    template = synthesized.template(synthesized.stacks["dev"])
    schedule_roles = {s["Properties"]["Target"]["RoleArn"]["Fn::GetAtt"][0]
                      for s in resources(template, "AWS::Scheduler::Schedule").values()}
    for lid, policy in resources(template, "AWS::IAM::Policy").items():
        roles = {r["Ref"] for r in policy["Properties"]["Roles"]}
        if roles & schedule_roles:
            (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
            assert statement["Action"] in ("lambda:InvokeFunction", "states:StartExecution"), lid
            resources_ = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert len(resources_) == 1 and "*" not in json.dumps(resources_), lid


def test_a_storage_budget_gets_an_alarm_that_remediation_can_answer_with_prune(synthesized: Synthesized) -> None:
    stack = synthesized.stacks["prod"]
    template = synthesized.template(stack)
    budgeted = [t for t in stack.stage.targets if t.retention.storage_budget_gb]
    assert budgeted, "cdk.json's prod stage has a target with a storage budget"
    alarms = {a["Properties"]["AlarmName"]: a["Properties"]
              for a in resources(template, "AWS::CloudWatch::Alarm").values()
              if isinstance(a["Properties"].get("AlarmName"), str)}
    # One fleet alarm per budget covers exactly the targets that have that budget
    fleet = {n: a for n, a in alarms.items() if n.startswith("warden-prod-fleet-backup-storage-over-budget")}
    names = [t.name for t in stack.stage.targets]
    covered = {n: fleet_alarm_targets(a, names) for n, a in fleet.items()}
    assert sorted(t for ts in covered.values() for t in ts) == sorted(t.name for t in budgeted)
    for target in stack.stage.targets:
        mine = [n for n, ts in covered.items() if target.name in ts]
        if target.retention.storage_budget_gb is None:
            assert mine == []
            continue
        (name,) = mine
        alarm = fleet[name]
        (query,) = [m["Expression"] for m in alarm["Metrics"] if "Expression" in m]
        assert query.startswith("SELECT MAX(StoredBytes) FROM SCHEMA(\"Warden\", Stage, Target, service)")
        assert "Stage = 'prod'" in query and "GROUP BY Target" in query
        assert alarm["Threshold"] == target.retention.storage_budget_gb * 1e9
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] and alarm["OKActions"]
