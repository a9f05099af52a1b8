"""The weekly report: the access its function needs beyond the common grants (`grant_report_access`,
applied from the job table, infra/jobs.py), and one EventBridge Scheduler schedule per stage,
Mondays 07:00 UTC (after the night's backups, verification and pruning), with a role that may invoke
that function and nothing else (`schedule_report`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from infra import nag
from infra.functions import ENV_BUCKET, ENV_TABLES, WardenFunction, grant_key_use, grant_notify
from infra.storage import Storage
from warden.config.stage import StageConfig

REPORT_SCHEDULE = "cron(0 7 ? * MON *)"
REPORT_PREFIX = "reports/"


@dataclass(frozen=True)
class Report:
    function: WardenFunction
    schedule: scheduler.CfnSchedule
    scheduler_role: iam.Role


def schedule_report(scope: Construct, *, stage: StageConfig, function: WardenFunction) -> Report:
    """The weekly schedule of the report `function`, and its role, in `scope` (the stage's stack)."""
    schedule, role = _build_schedule(scope, stage.name, function)
    return Report(function=function, schedule=schedule, scheduler_role=role)


def grant_report_access(fn: WardenFunction, storage: Storage) -> None:
    """What the report reads and writes beyond the stage's target configs and the catalog: the
    audit trail (Query), the state table (read only), its own prefix of the bucket (put), the
    topic (the summary), and alarm history and metrics (CloudWatch, read only)."""
    _grant_audit_query(fn, storage)
    # The state table is read only: leases and recovery records describe what is going on.
    fn.add_to_policy(iam.PolicyStatement(actions=["dynamodb:GetItem", "dynamodb:Query"],
                                         resources=[storage.state.table_arn]))
    fn.function.add_environment(ENV_TABLES["state"], storage.state.table_name)
    fn.add_to_policy(iam.PolicyStatement(actions=["s3:PutObject"],
                                         resources=[storage.bucket.arn_for_objects(f"{REPORT_PREFIX}*")]))
    fn.function.add_environment(ENV_BUCKET, storage.bucket.bucket_name)
    grant_key_use(fn, storage)
    grant_notify(fn, storage)
    fn.add_to_policy(iam.PolicyStatement(
        actions=["cloudwatch:DescribeAlarmHistory", "cloudwatch:GetMetricStatistics",
                 "cloudwatch:GetMetricWidgetImage"],
        resources=["*"]))
    nag.acknowledge(
        fn.role,
        "AwsSolutions-IAM5[Resource::*]",
        "cloudwatch:GetMetricWidgetImage and GetMetricStatistics support no resource-level permissions, and "
        "DescribeAlarmHistory filtered by name prefix is authorized on '*'; all three are read-only.",
    )
    nag.acknowledge(
        fn.role,
        f"AwsSolutions-IAM5[Resource::{nag.ref(storage.bucket, 'Arn')}/{REPORT_PREFIX}*]",
        "Report keys are reports/<stage>/<yyyy>-W<ww>.html, one per week: PutObject is limited to the "
        "reports/ prefix of the bucket.",
    )


def _grant_audit_query(fn: WardenFunction, storage: Storage) -> None:
    """Read the audit trail (Query only). `grant_audit_append` deliberately gives PutItem alone, so
    history cannot be rewritten; reading it is this function's need, not every function's."""
    audit = storage.audit
    fn.add_to_policy(iam.PolicyStatement(actions=["dynamodb:Query"], resources=[audit.table_arn]))
    fn.function.add_environment(ENV_TABLES["audit"], audit.table_name)
    grant_key_use(fn, storage)


def _build_schedule(scope: Construct, stage: str, fn: WardenFunction) -> tuple[scheduler.CfnSchedule, iam.Role]:
    role = iam.Role(scope, "ReportSchedulerRole", assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
                    description=f"EventBridge Scheduler: invoke the Warden {stage} report function")
    role.add_to_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[fn.function.function_arn]))
    schedule = scheduler.CfnSchedule(
        scope,
        "ReportSchedule",
        name=f"warden-{stage}-weekly-report",
        description=f"Warden {stage}: the weekly report",
        schedule_expression=REPORT_SCHEDULE,
        schedule_expression_timezone="Etc/UTC",
        flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
        state="ENABLED",
        target=scheduler.CfnSchedule.TargetProperty(
            arn=fn.function.function_arn,
            role_arn=role.role_arn,
            input=json.dumps({"trigger": "schedule", "scheduled_time": "<aws.scheduler.scheduled-time>"}),
            retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=2,
                                                                   maximum_event_age_in_seconds=3600),
        ),
    )
    return schedule, role
