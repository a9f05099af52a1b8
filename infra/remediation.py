"""Remediation and maintenance of one stage: the `remediate` function behind an EventBridge rule on
the stage's CloudWatch alarms, and the `maintenance` function (scheduled per target by
TargetSchedules when it exists before the schedules are made).

Call `add_remediation_and_maintenance(stack)` from WardenStack after the backup function and before
TargetSchedules and Alarms, so maintenance gets its schedules and both functions get their alarms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.functions import (
    WardenFunction,
    grant_audit_append,
    grant_backups_delete,
    grant_backups_read,
    grant_catalog_read_write,
    grant_key_use,
    grant_notify,
    grant_state_read_write,
    grant_target_config_read,
    grant_target_secrets_read,
)

if TYPE_CHECKING:
    from infra.stack import WardenStack

ENV_BACKUP_FUNCTION = "WARDEN_BACKUP_FUNCTION"  # read by functions/remediate/handler.py
ALARM_EVENT = "CloudWatch Alarm State Change"


def alarm_prefix(stage: str) -> str:
    """Every Warden alarm of a stage is named `warden-<stage>-...` (infra/alarms.py)."""
    return f"warden-{stage}-"


class RemediationAndMaintenance(Construct):
    """The alarm rule that feeds the remediate function. Attributes: `remediate`, `maintenance`
    (WardenFunction), `rule` (events.Rule)."""

    def __init__(self, scope: Construct, id: str, *, stack: WardenStack) -> None:
        super().__init__(scope, id)
        self.remediate = _build_remediate(stack)
        self.maintenance = _build_maintenance(stack)
        self.rule = self._build_rule(stack)

    def _build_rule(self, stack: WardenStack) -> events.Rule:
        # Only transitions into ALARM of this stage's alarms: OK / INSUFFICIENT_DATA need no action,
        # and other stages' alarms (same account and region) are theirs.
        rule = events.Rule(
            self, "AlarmRule",
            description=f"Warden {stack.stage.name}: alarms of the stage → remediate",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=[ALARM_EVENT],
                detail={"alarmName": [{"prefix": alarm_prefix(stack.stage.name)}], "state": {"value": ["ALARM"]}},
            ),
        )
        rule.add_target(targets.LambdaFunction(self.remediate.function, retry_attempts=2,
                                               max_event_age=Duration.hours(1)))
        return rule


def _build_remediate(stack: WardenStack) -> WardenFunction:
    # Long enough for a prune of a large catalog or a health re-check; a backup runs in its own function.
    fn = stack._function("remediate", timeout=Duration.minutes(15), memory_size=512,
                         description=f"Warden {stack.stage.name} remediation of alarms")
    storage = stack.storage
    grant_target_config_read(fn, storage)
    grant_target_secrets_read(fn, stack.stage.targets)  # cancel / terminate sessions, health re-check
    grant_catalog_read_write(fn, storage)  # prune marks EXPIRED; health reads backup freshness
    grant_state_read_write(fn, storage)  # leases and the per-hour rate-limit counters
    grant_audit_append(fn, storage)
    grant_backups_read(fn, storage)  # prune lists object versions
    grant_backups_delete(fn, storage)
    grant_notify(fn, storage)  # every action is announced
    grant_key_use(fn, storage)
    backup = stack.functions.get("backup")
    if backup is not None:
        fn.add_to_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"],
                                             resources=[backup.function.function_arn]))
        fn.function.add_environment(ENV_BACKUP_FUNCTION, backup.function.function_name)
    return fn


def _build_maintenance(stack: WardenStack) -> WardenFunction:
    # VACUUM and REINDEX CONCURRENTLY of a large table take minutes; each statement has its own timeout.
    fn = stack._function("maintenance", timeout=Duration.minutes(15), memory_size=256,
                         description=f"Warden {stack.stage.name} database maintenance")
    storage = stack.storage
    grant_target_config_read(fn, storage)
    grant_target_secrets_read(fn, stack.stage.targets)
    grant_state_read_write(fn, storage)  # the lease and the last run of each task
    grant_audit_append(fn, storage)
    grant_key_use(fn, storage)
    return fn


def add_remediation_and_maintenance(stack: WardenStack) -> RemediationAndMaintenance:
    """Add the remediate and maintenance functions, their grants and the alarm rule to `stack`."""
    return RemediationAndMaintenance(stack, "Remediation", stack=stack)
