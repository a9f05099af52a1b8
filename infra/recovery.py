"""The Recovery state machine: Preflight → Restore (staging) → Validate → Approval → Promote → Finish,
and Rollback → RecoveryFailed on any failure, rejection or timeout after Preflight.

Every Task invokes the one recovery function with a `step`. Transient errors (a database that did
not answer, Lambda throttling) are retried with backoff; nothing else is. Preflight failures (bad
input, unusable backup, target busy) end the execution at once: nothing was touched.

On a stage that can start tasks (docs/fargate.md), Preflight's plan names the runner, and a Choice
after it runs restore and validation either as above or as ECS tasks of the stage's task definition
(RestoreOnFargate → ValidateOnFargate: `python -m warden.task recovery --step ... --plan <the plan>`,
sized and timed by `plan.task`), with the same Catch to Rollback; both paths join at ApprovalMode:

    Preflight → Runner ─┬─ fargate: RestoreOnFargate → ValidateOnFargate ─┬─ ApprovalMode → ...
                        └─ otherwise: Restore → Validate ─────────────────┘
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra import nag
from infra.functions import TRANSIENT_ERRORS, WardenFunction, encrypted_log_group
from infra.storage import Storage
from infra.tasks import MAX_RUN, TaskRunner
from warden import names
from warden.config.fleet import runs_in_fleet
from warden.config.stage import StageConfig
from warden.config.target import Target

MAX_APPROVAL = Duration.days(7)
# What a restore or validation task retries: a database that did not answer (the task reports its error).
TASK_TRANSIENT_ERRORS = ["DatabaseUnavailable"]
FARGATE_COMMAND = "States.Array('recovery', '--step', '{step}', '--plan', States.JsonToString($.plan))"


class RecoveryStateMachine(Construct):
    """Attributes: `state_machine`, `drill_role`, `drills` {target: CfnSchedule}.

    With `task_runner` (the stage can start tasks), restore and validation run where the plan's runner says.
    """

    def __init__(self, scope: Construct, id: str, *, stage: StageConfig, storage: Storage,
                 function: WardenFunction, per_target: bool = True, task_runner: TaskRunner | None = None) -> None:
        super().__init__(scope, id)
        fn = function.function
        self.stage = stage

        def step(name: str, payload: dict[str, Any], result_path: str | None, *,
                 pattern: sfn.IntegrationPattern = sfn.IntegrationPattern.REQUEST_RESPONSE,
                 timeout: Duration | None = None) -> tasks.LambdaInvoke:
            options: dict[str, Any] = (
                {"payload_response_only": True} if pattern is sfn.IntegrationPattern.REQUEST_RESPONSE
                else {"integration_pattern": pattern})
            task = tasks.LambdaInvoke(
                self, name, lambda_function=fn, payload=sfn.TaskInput.from_object(payload),
                result_path=result_path, retry_on_service_exceptions=False,
                task_timeout=sfn.Timeout.duration(timeout or Duration.minutes(15)), **options,
            )
            if pattern is sfn.IntegrationPattern.REQUEST_RESPONSE:
                task.add_retry(errors=TRANSIENT_ERRORS, interval=Duration.seconds(5), max_attempts=3,
                               backoff_rate=2.0)
            return task

        plan = {"step": "", "plan.$": "$.plan"}
        preflight = step("Preflight", {"step": "preflight", "input.$": "$", "execution.$": "$$.Execution.Id"},
                         "$.plan")
        restore = step("Restore", {**plan, "step": "restore"}, "$.restore")
        validate = step("Validate", {**plan, "step": "validate"}, "$.validation")
        approval = step("RequestApproval", {**plan, "step": "request_approval",
                                            "task_token": sfn.JsonPath.task_token}, "$.approval",
                        pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN, timeout=MAX_APPROVAL)
        promote = step("Promote", {**plan, "step": "promote"}, "$.promotion_result")
        finish = step("Finish", {**plan, "step": "finish"}, "$.result")
        rollback = step("Rollback", {**plan, "step": "rollback", "error.$": "$.error"}, "$.rollback")

        refused = sfn.Fail(self, "PreflightFailed", comment="Refused before anything was touched",
                           error_path="$.error.Error", cause_path="$.error.Cause")
        failed = sfn.Fail(self, "RecoveryFailed", comment="Rolled back: production as it was before",
                          error_path="$.error.Error", cause_path="$.error.Cause")
        rollback_failed = sfn.Fail(self, "RollbackFailed", error="RollbackFailed",
                                   cause="Rollback did not complete: see the recovery record and the audit trail")
        done = sfn.Succeed(self, "Recovered")

        preflight.add_catch(refused, errors=["States.ALL"], result_path="$.error")
        for task in (restore, validate, approval, promote, finish):
            task.add_catch(rollback, errors=["States.ALL"], result_path="$.error")
        rollback.add_catch(rollback_failed, errors=["States.ALL"], result_path="$.rollback_error")
        rollback.next(failed)

        needs_approval = sfn.Choice(self, "ApprovalMode")
        approve_then_promote = (needs_approval
                                .when(sfn.Condition.string_equals("$.plan.approval", "manual"), approval.next(promote))
                                .otherwise(promote))
        steps: sfn.IChainable = restore.next(validate).next(approve_then_promote)
        if task_runner is not None:
            steps = self._runner(task_runner, on_lambda=steps, then=needs_approval, rollback=rollback)
        definition = preflight.next(steps)
        promote.next(finish)
        finish.next(done)

        name = f"warden-{stage.name}-recovery"
        timeout = MAX_APPROVAL.plus(Duration.hours(2))
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            state_machine_name=name,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            # A restore and a validation on Fargate may each take their task's timeout.
            timeout=timeout if task_runner is None else timeout.plus(MAX_RUN).plus(MAX_RUN),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=encrypted_log_group(self, "Logs", stage=stage, key=storage.key),
                                level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        nag.acknowledge(self.state_machine.role, f"AwsSolutions-IAM5[Resource::{nag.ref(fn, 'Arn')}:*]",
                        "The LambdaInvoke tasks' grant covers the recovery function and its versions and "
                        "aliases (<arn>:*); it is still one function, named.")
        nag.acknowledge(self.state_machine.role, "AwsSolutions-IAM5[Resource::*]",
                        "Step Functions log delivery (logs:CreateLogDelivery, ...) and X-Ray tracing "
                        "(xray:PutTraceSegments, ...) support no resource-level permissions; '*' is required.")
        if task_runner is not None:
            task_runner.grant_run(self.state_machine.role)
            task_runner.grant_task_response(Stack.of(self).format_arn(service="states", resource="stateMachine",
                                                                resource_name=name,
                                                                arn_format=ArnFormat.COLON_RESOURCE_NAME))
        self._drills(stage, per_target)

    def _runner(self, task_runner: TaskRunner, *, on_lambda: sfn.IChainable, then: sfn.IChainable,
                rollback: sfn.IChainable) -> sfn.Choice:
        """Restore and validation as tasks when the plan's runner is fargate, else `on_lambda`."""
        on_fargate = []
        for step, name, result_path in (("restore", "RestoreOnFargate", "$.restore"),
                                        ("validate", "ValidateOnFargate", "$.validation")):
            state = task_runner.run_task_state(
                self, name, command=FARGATE_COMMAND.format(step=step), sizes="$.plan.task", result_path=result_path,
                comment=f"The recovery's {step} step as an ECS task; it heartbeats while the step runs")
            state.add_retry(errors=TASK_TRANSIENT_ERRORS, interval=Duration.seconds(30), max_attempts=2,
                            backoff_rate=2.0)
            state.add_catch(rollback, errors=["States.ALL"], result_path="$.error")
            on_fargate.append(state)
        restore, validate = on_fargate
        fargate = sfn.Condition.and_(sfn.Condition.is_present("$.plan.runner"),
                                     sfn.Condition.string_equals("$.plan.runner", "fargate"))
        return (sfn.Choice(self, "Runner", comment="Where Preflight chose to restore and validate")
                .when(fargate, restore.next(validate).next(then))
                .otherwise(on_lambda))

    def _drills(self, stage: StageConfig, per_target: bool) -> None:
        """A weekly restore drill per target: the machine with promotion `none` on the newest backup.
        `per_target` False: each target's drill is built by `build_drill` (infra/targets.py)."""
        self.drills: dict[str, scheduler.CfnSchedule] = {}
        if not any(self._own_drill(t) for t in stage.targets):  # every target is drilled by the drill fleet run
            return
        self.drill_role = iam.Role(self, "DrillRole", assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
                                   description=f"EventBridge Scheduler: start Warden {stage.name} restore drills")
        self.drill_role.add_to_policy(iam.PolicyStatement(actions=["states:StartExecution"],
                                                          resources=[self.state_machine.state_machine_arn]))
        if per_target:
            for target in stage.targets:
                self.build_drill(self, target)

    def build_drill(self, scope: Construct, target: Target) -> None:
        """`target`'s weekly restore drill schedule, in `scope` (its group stack's TargetResources)."""
        stage = self.stage
        if not self._own_drill(target):
            return
        payload = {"target": target.name, "backup_id": "latest", "promotion": "none", "approval": "auto",
                   "requested_by": "schedule:drill"}
        self.drills[target.name] = scheduler.CfnSchedule(
            scope, f"{target.name}-drill",
            description=f"Warden {stage.name}: weekly restore drill of {target.name}",
            schedule_expression=target.recovery.drill_schedule,
            schedule_expression_timezone="Etc/UTC",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.state_machine.state_machine_arn, role_arn=self.drill_role.role_arn,
                input=json.dumps(payload),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=2,
                                                                       maximum_event_age_in_seconds=3600)),
        )

    def _own_drill(self, target: Target) -> bool:
        """Whether `target` has its own drill schedule: not rds-snapshot (RDS restores its snapshots,
        nothing for Warden to drill) and a `drill_schedule` that overrides the drill fleet run's."""
        return target.backup.method != "rds-snapshot" and not runs_in_fleet(target, "drill", self.stage.fleet.drill)


def active_parameter_arns(stack: Stack, stage: StageConfig) -> list[str]:
    """The active-endpoint parameters a swap promotion moves, one per target."""
    return [stack.format_arn(service="ssm", resource="parameter",
                             resource_name=names.active_parameter(stage.name, t.name).lstrip("/"))
            for t in stage.targets]
