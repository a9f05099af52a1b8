"""Everything Warden keeps: the key, the backup bucket, the catalog / audit / state tables, the
notification topic, and each target's configuration in Parameter Store.

All of it lives outside the databases it protects, is encrypted with one customer-managed key,
and is retained when the stack goes away: a restore or a teardown must never take backup history
or the audit trail with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from warden import names
from warden.config.stage import StageConfig
from warden.config.target import Target

TABLES = ("catalog", "audit", "state")
NONCURRENT_VERSION_EXPIRATION = Duration.days(30)
ACCESS_LOG_EXPIRATION = Duration.days(365)
# A Standard-tier parameter holds at most 4 KB.
_MAX_PARAMETER_BYTES = 4096


def targets_path(stage: str) -> str:
    """The Parameter Store path under which a stage's target configurations live."""
    return names.targets_path(stage)


def target_parameter_name(stage: str, target: str) -> str:
    """The Parameter Store name of one target's configuration."""
    return names.target_parameter(stage, target)


def target_parameter_value(target: Target) -> str:
    """The JSON a function reads back into `Target` (compact, keys sorted: stable across synths)."""
    return json.dumps(target.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def allow_cloudwatch_logs(key: kms.Key) -> None:
    """Let CloudWatch Logs in this region encrypt log groups of this account with `key`."""
    stack = Stack.of(key)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowCloudWatchLogsEncryption",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=[
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:ReEncryptFrom",
                "kms:ReEncryptTo",
                "kms:GenerateDataKey",
                "kms:GenerateDataKeyWithoutPlaintext",
                "kms:DescribeKey",
            ],
            resources=["*"],  # in a key policy, "*" is this key
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": (
                        f"arn:{Aws.PARTITION}:logs:{stack.region}:{stack.account}:log-group:*"
                    )
                }
            },
        )
    )


class Storage(Construct):
    """The stage's durable state. Attributes: `key`, `bucket`, `access_log_bucket`, `catalog`,
    `audit`, `state` (and `tables` by name), `topic`, `target_parameters` (by target name),
    `targets_path`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        stage: StageConfig,
        noncurrent_version_expiration: Duration = NONCURRENT_VERSION_EXPIRATION,
        access_log_expiration: Duration = ACCESS_LOG_EXPIRATION,
        target_parameters: bool = True,
    ) -> None:
        super().__init__(scope, id)
        self.stage = stage
        self.targets_path = targets_path(stage.name)
        self.key = self._build_key()
        self.access_log_bucket = self._build_access_log_bucket(access_log_expiration)
        self.bucket = self._build_backup_bucket(noncurrent_version_expiration)
        self.tables = {name: self._build_table(name) for name in TABLES}
        self.catalog = self.tables["catalog"]
        self.audit = self.tables["audit"]
        self.state = self.tables["state"]
        self.topic = self._build_topic()
        # False: each target's parameter is built with its other resources (infra/targets.py, a group stack).
        self.target_parameters: dict[str, ssm.StringParameter] = (
            {t.name: build_target_parameter(self, stage, t) for t in stage.targets} if target_parameters else {})

    def _build_key(self) -> kms.Key:
        key = kms.Key(
            self,
            "Key",
            alias=f"alias/warden/{self.stage.name}",
            description=f"Warden {self.stage.name}: backups, catalog, audit, state, notifications, logs",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        allow_cloudwatch_logs(key)
        # CloudWatch alarms publish to the encrypted topic (alarm actions are SNS).
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        return key

    def _build_access_log_bucket(self, expiration: Duration) -> s3.Bucket:
        # Needs no access logging of its own: cdk-nag (S1) accepts a bucket that receives them.
        return s3.Bucket(
            self,
            "AccessLogs",
            # S3 server access logging delivers only to SSE-S3 buckets, not SSE-KMS.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs", expiration=expiration),
                s3.LifecycleRule(
                    id="abort-incomplete-multipart-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_backup_bucket(self, noncurrent_version_expiration: Duration) -> s3.Bucket:
        lock = self.stage.backup_protection.object_lock
        return s3.Bucket(
            self,
            "Backups",
            # Every version written is retained `days` days (warden.protection_config); prune skips locked ones.
            object_lock_enabled=True if lock else None,
            object_lock_default_retention=(
                None if lock is None
                else s3.ObjectLockRetention.compliance(Duration.days(lock.days)) if lock.mode == "compliance"
                else s3.ObjectLockRetention.governance(Duration.days(lock.days))),
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="backups/",
            lifecycle_rules=[
                # A failed backup aborts its upload; this catches the ones that died mid-flight.
                s3.LifecycleRule(
                    id="abort-incomplete-multipart-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=noncurrent_version_expiration,
                    expired_object_delete_marker=True,
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_table(self, name: str) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            name.capitalize(),
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_topic(self) -> sns.Topic:
        topic = sns.Topic(
            self,
            "Notifications",
            display_name=f"Warden {self.stage.name}",
            master_key=self.key,
            enforce_ssl=True,
        )
        for email in self.stage.notification_emails:
            topic.add_subscription(subscriptions.EmailSubscription(email))
        return topic



def build_target_parameter(scope: Construct, stage: StageConfig, target: Target) -> ssm.StringParameter:
    """The Parameter Store parameter holding `target`'s configuration, `Target-<name>` in `scope`."""
    value = target_parameter_value(target)
    if len(value.encode()) > _MAX_PARAMETER_BYTES:
        raise ValueError(
            f"stage {stage.name!r}, target {target.name!r}: configuration is "
            f"{len(value.encode())} bytes, over the {_MAX_PARAMETER_BYTES}-byte Parameter Store limit"
        )
    return ssm.StringParameter(
        scope,
        f"Target-{target.name}",
        parameter_name=target_parameter_name(stage.name, target.name),
        string_value=value,
        description=f"Warden {stage.name} target {target.name} ({target.engine.value})",
        tier=ssm.ParameterTier.STANDARD,
    )


# Object actions that change or remove backups, and the lock settings of object versions.
OBJECT_WRITE_ACTIONS = ["s3:AbortMultipartUpload", "s3:PutObject"]
OBJECT_DELETE_ACTIONS = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
LOCK_CHANGE_ACTIONS = ["s3:BypassGovernanceRetention", "s3:PutObjectLegalHold", "s3:PutObjectRetention"]


def protect_backup_bucket(storage: Storage, *, writers: Sequence[iam.IRole], deleters: Sequence[iam.IRole]) -> None:
    """The backup bucket's policy beyond TLS-only (`enforce_ssl`, TLS 1.2): only `writers` may put
    objects (or abort uploads), only `deleters` may delete object versions, nobody may change an
    object's lock (retention, legal hold) or bypass governance retention, and every put that names
    an encryption must name SSE-KMS with the stage key (a put that names none gets the bucket's
    default, SSE-KMS with that key; multipart UploadPart requests carry no encryption header).

    Denies name the exempt roles by `aws:PrincipalArn`, so an administrator's or any other role's
    s3:* is read-only here. CloudFormation performs no object operations on this bucket (no
    auto-delete: the bucket is retained) and S3 access logs go to the log bucket, so nothing the
    stack itself needs is denied. Lifecycle expiration and replication are S3 acting, not principals.
    """
    bucket, objects = storage.bucket, storage.bucket.arn_for_objects("*")

    def deny(sid: str, actions: list[str], except_roles: Sequence[iam.IRole] | None = None,
             conditions: dict[str, dict[str, object]] | None = None) -> None:
        conditions = dict(conditions or {})
        if except_roles:
            conditions["ArnNotEquals"] = {"aws:PrincipalArn": [role.role_arn for role in except_roles]}
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid=sid, effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()], actions=actions,
            resources=[objects], conditions=conditions or None))

    deny("DenyObjectWritesExceptBackupWriters", OBJECT_WRITE_ACTIONS, writers)
    deny("DenyObjectDeletesExceptPrune", OBJECT_DELETE_ACTIONS, deleters)
    deny("DenyObjectLockChanges", LOCK_CHANGE_ACTIONS)
    deny("DenyPutsNotSseKms", ["s3:PutObject"],
         conditions={"Null": {"s3:x-amz-server-side-encryption": "false"},
                     "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}})
    deny("DenyPutsWithAnotherKmsKey", ["s3:PutObject"],
         conditions={"Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"},
                     "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": storage.key.key_arn}})
