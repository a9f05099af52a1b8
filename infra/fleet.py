"""Fleet scheduling: per job, one EventBridge Scheduler schedule for the stage starts the job's Fleet
state machine:

    Plan (fleet function: the targets due, their events and start times)
      → FanOut (Map over the plan's items, MaxConcurrency = the job's cap, `stage.fleet.<job>`)
          [Delay → WaitForOffset  — only for a job with a window]
          → Run (the job's function; for drills, the Recovery state machine, .sync)
          → Ok            | any error of the item → Failed (the other items go on)
      → Summarise (ok / failed / skipped per target: the execution's output)

Targets that override the job's schedule keep their own per-target schedule (infra/schedules.py,
warden.config.fleet.runs_in_fleet) and are skipped by the plan.

Health runs as an Express workflow (EXPRESS_JOBS): it runs every 5 minutes and must end within 5
minutes (Express's limit) with no .sync or callback task in it; Express bills executions and their
duration, not state transitions — about 0.1 % of the Standard cost (infra/cost.py). Express keeps no
execution history: a run's summary is in the fleet function's log ("fleet run finished"). The other
jobs, rarer and longer (a drill's .sync waits hours), stay Standard.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra import nag
from infra.functions import WardenFunction, encrypted_log_group
from infra.recovery import TRANSIENT_ERRORS
from infra.storage import Storage
from warden.config.fleet import FleetJob, fleet_expression
from warden.config.stage import StageConfig

SCHEDULED_INPUT = {"trigger": "schedule", "scheduled_time": "<aws.scheduler.scheduled-time>"}
# A whole fleet run must end within: health inside its interval; a windowed job inside its window
# plus the time its last run may take; the rest within half a day.
RUN_TIMEOUT = {"health": Duration.minutes(5), "drill": Duration.hours(24)}
EXPRESS_JOBS = frozenset({"health"})
EXPRESS_MAX = Duration.minutes(5)


def _construct_id(job: str) -> str:
    return job.replace("_", " ").title().replace(" ", "")


class FleetJobRun(Construct):
    """The Fleet state machine and the one schedule of one job. Attributes: `state_machine`,
    `schedule`, `fan_out` (the Map state), `role` (the schedule's)."""

    def __init__(self, scope: Construct, id: str, *, stage: StageConfig, storage: Storage, job: str,
                 config: FleetJob, planner: WardenFunction, run: sfn.IChainable | None = None,
                 function: WardenFunction | None = None, recovery: sfn.IStateMachine | None = None,
                 group_name: str) -> None:
        super().__init__(scope, id)
        self.job, self.config = job, config

        def fleet_step(name: str, payload: dict[str, object], result_path: str) -> tasks.LambdaInvoke:
            task = tasks.LambdaInvoke(self, name, lambda_function=planner.function,
                                      payload=sfn.TaskInput.from_object(payload), result_path=result_path,
                                      payload_response_only=True, retry_on_service_exceptions=False,
                                      task_timeout=sfn.Timeout.duration(Duration.minutes(2)))
            task.add_retry(errors=TRANSIENT_ERRORS, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2.0)
            return task

        plan = fleet_step("Plan", {"step": "plan", "job": job, "config": config.model_dump(mode="json"),
                                   "input.$": "$"}, "$.plan")
        summarise = fleet_step("Summarise", {"step": "summarise", "job": job, "plan.$": "$.plan",
                                             "results.$": "$.results"}, "$")
        ok = sfn.Pass(self, "Ok", parameters={"target.$": "$.target", "outcome": "ok"})
        failed = sfn.Pass(self, "Failed", parameters={"target.$": "$.target", "outcome": "failed",
                                                      "error.$": "$.error.Error"})
        if recovery is not None:
            task: sfn.TaskStateBase = tasks.StepFunctionsStartExecution(
                self, "Run", state_machine=recovery, input=sfn.TaskInput.from_json_path_at("$.event"),
                integration_pattern=sfn.IntegrationPattern.RUN_JOB, result_path=sfn.JsonPath.DISCARD,
                task_timeout=sfn.Timeout.duration(Duration.hours(12)))
        else:
            assert function is not None
            task = tasks.LambdaInvoke(
                self, "Run", lambda_function=function.function, input_path="$.event",  # the payload: the item's event
                payload_response_only=True, result_path=sfn.JsonPath.DISCARD, retry_on_service_exceptions=False,
                task_timeout=sfn.Timeout.duration(function.function.timeout or Duration.minutes(15)))
            task.add_retry(errors=TRANSIENT_ERRORS, interval=Duration.seconds(5), max_attempts=3, backoff_rate=2.0)
        task.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        item: sfn.IChainable = task.next(ok)
        if config.window is not None:
            delay = fleet_step("Delay", {"step": "delay", "job": job, "not_before.$": "$.not_before"}, "$.delay")
            delay.add_catch(failed, errors=["States.ALL"], result_path="$.error")
            wait = sfn.Wait(self, "WaitForOffset", time=sfn.WaitTime.seconds_path("$.delay.wait_s"))
            item = delay.next(wait).next(item)

        self.fan_out = sfn.Map(self, "FanOut", items_path="$.plan.items", max_concurrency=config.max_concurrency,
                               result_path="$.results")
        self.fan_out.item_processor(item)
        window = config.window_minutes
        timeout = RUN_TIMEOUT.get(job) or (Duration.minutes(window[1]).plus(Duration.hours(4)) if window
                                           else Duration.hours(12))
        express = job in EXPRESS_JOBS
        if express:  # what Express refuses: a .sync start, a run longer than 5 minutes
            assert recovery is None and timeout.to_seconds() <= EXPRESS_MAX.to_seconds(), job
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            state_machine_name=f"warden-{stage.name}-fleet-{job.replace('_', '-')}",
            definition_body=sfn.DefinitionBody.from_chainable(plan.next(self.fan_out).next(summarise)),
            state_machine_type=sfn.StateMachineType.EXPRESS if express else sfn.StateMachineType.STANDARD,
            timeout=timeout,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=encrypted_log_group(self, "Logs", stage=stage, key=storage.key),
                                level=sfn.LogLevel.ERROR, include_execution_data=False),
        )
        role = self.state_machine.role
        for fn in (planner, function):
            if fn is not None:
                nag.acknowledge(role, f"AwsSolutions-IAM5[Resource::{nag.ref(fn.function, 'Arn')}:*]",
                                "The LambdaInvoke tasks' grant covers the function and its versions and "
                                "aliases (<arn>:*); it is still one function, named.")
        nag.acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                        "Step Functions log delivery (logs:CreateLogDelivery, ...) and X-Ray tracing "
                        "(xray:PutTraceSegments, ...) support no resource-level permissions; '*' is required.")
        nag.acknowledge(self.state_machine, "AwsSolutions-SF1",
                        "Logs errors only: at ALL a health run of 500 targets every 5 minutes logs ~3000 "
                        "events a run (tens of GB a month); the run's summary is its output and each "
                        "job's function logs its own run.")
        if recovery is not None:
            machine = nag.ref(recovery).strip("<>")
            account = stage.account or "<AWS::AccountId>"
            nag.acknowledge(role, f"AwsSolutions-IAM5[Resource::arn:aws:states:{stage.region}:{account}:"
                            f'execution:{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{machine}"}}]}}]}}*]',
                            "A .sync start describes and stops the executions it starts: their ids are not "
                            "known before; the grant is limited to the Recovery machine's executions.")
        self._schedule(stage, job, config, group_name)

    def _schedule(self, stage: StageConfig, job: str, config: FleetJob, group_name: str) -> None:
        self.role = iam.Role(self, "ScheduleRole", assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
                             description=f"EventBridge Scheduler: start the Warden {stage.name} {job} fleet run")
        self.role.add_to_policy(iam.PolicyStatement(actions=["states:StartExecution"],
                                                    resources=[self.state_machine.state_machine_arn]))
        # A late health run is worth nothing once the next one is due.
        max_age = 240 if job == "health" else 3600
        self.schedule = scheduler.CfnSchedule(
            self, "Schedule",
            group_name=group_name,
            description=f"Warden {stage.name}: {job} of every target (fleet run, at most "
                        f"{config.max_concurrency} at once)",
            schedule_expression=fleet_expression(job, config),
            schedule_expression_timezone="Etc/UTC",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.state_machine.state_machine_arn, role_arn=self.role.role_arn,
                input=json.dumps(SCHEDULED_INPUT),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=2,
                                                                       maximum_event_age_in_seconds=max_age)),
        )


class FleetRuns(Construct):
    """One FleetJobRun per scheduled job the stage has (`functions`: the per-target scheduled ones),
    and one for restore drills (starting `recovery`). Attributes: `runs` {job: FleetJobRun}."""

    def __init__(self, scope: Construct, id: str, *, stage: StageConfig, storage: Storage,
                 planner: WardenFunction, functions: Mapping[str, WardenFunction],
                 recovery: sfn.IStateMachine, group: scheduler.CfnScheduleGroup) -> None:
        super().__init__(scope, id)
        self.runs: dict[str, FleetJobRun] = {}
        if not stage.targets:
            return
        for job, fn in functions.items():
            self.runs[job] = FleetJobRun(self, _construct_id(job), stage=stage, storage=storage, job=job,
                                         config=stage.fleet.job(job), planner=planner, function=fn,
                                         group_name=str(group.name))
        self.runs["drill"] = FleetJobRun(self, "Drill", stage=stage, storage=storage, job="drill",
                                         config=stage.fleet.drill, planner=planner, recovery=recovery,
                                         group_name=str(group.name))
        for run in self.runs.values():
            run.schedule.node.add_dependency(group)
