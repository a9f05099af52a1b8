"""EventBridge Scheduler: the stage's schedule group, and a schedule per target and job for the
targets that override the job's fleet schedule (the others run in the job's fleet run, infra/fleet.py).

Every schedule sends `{"target": <name>, "trigger": "schedule", "scheduled_time": <time>}`; the
scheduled time lets the backup function recognise a retried delivery of the same event. Each job
has its own scheduler role that may invoke exactly that job's function (no version wildcard).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from infra.functions import WardenFunction
from warden.config.fleet import runs_in_fleet
from warden.config.stage import StageConfig
from warden.config.target import Schedules, Target


class TargetSchedules(Construct):
    """Schedules for the targets whose `schedules.<job>` overrides the fleet's, for every function of
    `functions` (the jobs whose row in the job table, infra/jobs.py, has `Trigger.PER_TARGET_SCHEDULE`);
    each one's expression is the target's `schedules.<job>`; the fleet plan skips these targets.

    Attributes: `group`, `roles` {job: Role}, `schedules` {(target, job): CfnSchedule}.
    """

    def __init__(self, scope: Construct, id: str, *, stage: StageConfig,
                 functions: Mapping[str, WardenFunction], per_target: bool = True) -> None:
        super().__init__(scope, id)
        self.stage = stage
        self.functions = dict(functions)
        self.group = scheduler.CfnScheduleGroup(self, "Group", name=f"warden-{stage.name}")
        self.roles: dict[str, iam.Role] = {}
        self.schedules: dict[tuple[str, str], scheduler.CfnSchedule] = {}
        for job, fn in functions.items():
            if job not in Schedules.model_fields:
                raise ValueError(f"job {job!r} runs per target on a schedule, but targets' schedules have no {job!r}")
            own = [t for t in stage.targets if not runs_in_fleet(t, job, stage.fleet.job(job))]
            if not own:
                continue
            role = iam.Role(self, f"{job}-role", assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
                            description=f"EventBridge Scheduler: invoke the Warden {stage.name} {job} function")
            role.add_to_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"],
                                                   resources=[fn.function.function_arn]))
            self.roles[job] = role
        if per_target:  # else each target's schedules are built by `build_target` (infra/targets.py)
            for target in stage.targets:
                self.build_target(self, target)

    def build_target(self, scope: Construct, target: Target) -> None:
        """`target`'s schedule of every job, in `scope` (its group stack's TargetResources)."""
        for job, fn in self.functions.items():
            if runs_in_fleet(target, job, self.stage.fleet.job(job)):  # the job's fleet run (infra/fleet.py)
                continue
            role = self.roles[job]
            payload = json.dumps({"target": target.name, "trigger": "schedule",
                                  "scheduled_time": "<aws.scheduler.scheduled-time>"})
            schedule = scheduler.CfnSchedule(
                scope,
                f"{target.name}-{job}",
                group_name=self.group.name,
                description=f"Warden {self.stage.name}: {job} of {target.name}",
                schedule_expression=getattr(target.schedules, job),
                schedule_expression_timezone="Etc/UTC",
                flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                state="ENABLED",
                target=scheduler.CfnSchedule.TargetProperty(
                    arn=fn.function.function_arn,
                    role_arn=role.role_arn,
                    input=payload,
                    retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                        maximum_retry_attempts=2, maximum_event_age_in_seconds=3600),
                ),
            )
            schedule.node.add_dependency(self.group)
            self.schedules[(target.name, job)] = schedule
