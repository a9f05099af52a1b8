"""Remediation of one stage's alarms: an EventBridge rule on "CloudWatch Alarm State Change" of the
stage's alarms going into ALARM, feeding the remediate function, and the one grant of that
function that is its own (it may start the backup function).

The remediate and maintenance functions themselves are rows of the job table (infra/jobs.py);
maintenance is scheduled per target like the other scheduled jobs (infra/schedules.py).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import nag
from infra.functions import WardenFunction
from warden import names
from warden.config.stage import StageConfig

ENV_BACKUP_FUNCTION = names.ENV_BACKUP_FUNCTION  # read by functions/remediate/handler.py
ALARM_EVENT = "CloudWatch Alarm State Change"


class AlarmRemediation(Construct):
    """The alarm rule that feeds the remediate function. Attributes: `remediate` (WardenFunction),
    `rule` (events.Rule)."""

    def __init__(self, scope: Construct, id: str, *, stage: StageConfig, remediate: WardenFunction) -> None:
        super().__init__(scope, id)
        self.remediate = remediate
        self.rule = self._build_rule(stage)

    def _build_rule(self, stage: StageConfig) -> events.Rule:
        # Only transitions into ALARM of this stage's alarms: OK / INSUFFICIENT_DATA need no action,
        # and other stages' alarms (same account and region) are theirs.
        rule = events.Rule(
            self, "AlarmRule",
            description=f"Warden {stage.name}: alarms of the stage → remediate",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=[ALARM_EVENT],
                detail={"alarmName": [{"prefix": names.alarm_prefix(stage.name)}], "state": {"value": ["ALARM"]}},
            ),
        )
        rule.add_target(targets.LambdaFunction(self.remediate.function, retry_attempts=2,
                                               max_event_age=Duration.hours(1)))
        return rule


def grant_fleet_alarm_read(fn: WardenFunction, stage: StageConfig) -> None:
    """Find which targets a fleet alarm fires for (warden.fleet_alarms.resolve): DescribeAlarms on the
    stage's fleet alarms, and GetMetricData, which has no resource-level permissions."""
    stack = Stack.of(fn.function)
    fleet = f"{names.alarm_prefix(stage.name)}fleet-*"
    alarms = stack.format_arn(service="cloudwatch", resource="alarm", resource_name=fleet,
                              arn_format=ArnFormat.COLON_RESOURCE_NAME)
    policy = iam.Policy(fn.function, "FleetAlarmRead", statements=[
        iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"], resources=[alarms]),
        iam.PolicyStatement(actions=["cloudwatch:GetMetricData"], resources=["*"])])
    policy.attach_to_role(fn.role)
    nag.acknowledge(policy, "AwsSolutions-IAM5[Resource::*]",
                    "CloudWatch GetMetricData supports no resource-level permissions; '*' is the only "
                    "resource it accepts, and it only reads metrics.")
    # As cdk-nag spells the ARN: a stage's region (and account, when set) are literal in it.
    nag.acknowledge(policy, f"AwsSolutions-IAM5[Resource::{nag.spelling(stack, alarms)}]",
                    "The stage's fleet alarms by their name prefix: the remediate function reads the query "
                    "and window of the one that fired.")


def grant_invoke_backup(fn: WardenFunction, backup: WardenFunction | None) -> None:
    """Start the backup function (remediation of a missing backup), and tell `fn` its name."""
    if backup is None:
        return
    fn.add_to_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"],
                                         resources=[backup.function.function_arn]))
    fn.function.add_environment(ENV_BACKUP_FUNCTION, backup.function.function_name)
