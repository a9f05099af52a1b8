"""Replication of the backup bucket to a second region: the replica stack (`Warden-<stage>-replica`,
deployed in the replica region: a KMS key of its own, the replica bucket, its access-log bucket) and,
in the stage's stack, the replication rule and its role, and what verify and recovery may do with
the replica (`grant_replica_*`, applied from the job table, infra/jobs.py).

The two stacks never refer to each other's resources: both derive the replica bucket's name, the
replica key's alias and the replication role's name from the stage configuration
(warden.config.protection), so the stage's stack synthesizes without cross-region references
(which would need custom resources) and deploys after the replica stack (a stack dependency).
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, Environment, RemovalPolicy, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import nag
from infra.functions import WardenFunction
from infra.storage import ACCESS_LOG_EXPIRATION, Storage
from warden import names
from warden.config.protection import ReplicationConfig, replica_bucket_name, replica_key_alias, replication_role_name
from warden.config.stage import StageConfig

REPLICATION_RULE_ID = "replicate-backups"
# Every action on the replica's objects a principal could use to change or remove a replica.
_REPLICA_TAMPERING = ["s3:BypassGovernanceRetention", "s3:DeleteObject", "s3:DeleteObjectVersion",
                      "s3:PutObject", "s3:PutObjectLegalHold", "s3:PutObjectRetention", "s3:ReplicateDelete"]


def replica_stack_id(stage: StageConfig) -> str:
    return f"Warden-{stage.name}-replica"


def replica_bucket_arn(stage: StageConfig, replication: ReplicationConfig) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{replica_bucket_name(stage.name, Aws.ACCOUNT_ID, replication.region)}"


def replica_key_alias_arn(stage: StageConfig, replication: ReplicationConfig) -> str:
    return f"arn:{Aws.PARTITION}:kms:{replication.region}:{Aws.ACCOUNT_ID}:{replica_key_alias(stage.name)}"


def replica_key_statement(stage: StageConfig, replication: ReplicationConfig,
                          actions: list[str]) -> iam.PolicyStatement:
    """`actions` on the replica key, named by its alias: a key's ARN is random and lives in the
    other region's stack, an alias is known to both (IAM authorizes KMS on key ARNs, hence
    `key/*` narrowed by `kms:ResourceAliases`)."""
    return iam.PolicyStatement(
        actions=actions,
        resources=[f"arn:{Aws.PARTITION}:kms:{replication.region}:{Aws.ACCOUNT_ID}:key/*"],
        conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": [replica_key_alias(stage.name)]}},
    )


def acknowledge_replica_key(scope: Construct, stage: StageConfig, replication: ReplicationConfig) -> None:
    nag.acknowledge(
        scope,
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kms:{replication.region}:<AWS::AccountId>:key/*]",
        "The replica key lives in the replica region's stack and its ARN is random; the statement is narrowed "
        f"to that one key by the condition kms:ResourceAliases = {replica_key_alias(stage.name)}.",
    )


def grant_replica_read(fn: WardenFunction, stage: StageConfig) -> None:
    """Where the replica is (`WARDEN_REPLICA_*`) and read access to its objects: verify checks the
    copy is there (HeadObject), recovery reads it back. Nothing when the stage does not replicate."""
    replication = stage.backup_protection.replication
    if replication is None:
        return
    fn.function.add_environment(names.ENV_REPLICA_BUCKET,
                                replica_bucket_name(stage.name, Stack.of(fn).account, replication.region))
    fn.function.add_environment(names.ENV_REPLICA_REGION, replication.region)
    fn.function.add_environment(names.ENV_REPLICA_KMS_KEY, replica_key_alias_arn(stage, replication))
    fn.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject", "s3:GetObjectVersion"],
                                         resources=[f"{replica_bucket_arn(stage, replication)}/*"]))
    nag.acknowledge(
        fn.role,
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::"
        f"{replica_bucket_name(stage.name, '<AWS::AccountId>', replication.region)}/*]",
        "Backup object keys are <target>/<date>/<backup id>/..., created at run time; the replica "
        "has the same keys. Read actions only.")


def grant_replica_decrypt(fn: WardenFunction, stage: StageConfig) -> None:
    """Decrypt with the replica key (recovery restores from the replica). Nothing without replication."""
    replication = stage.backup_protection.replication
    if replication is None:
        return
    fn.add_to_policy(replica_key_statement(stage, replication, ["kms:Decrypt"]))
    acknowledge_replica_key(fn.role, stage, replication)


class ReplicaStack(Stack):
    """The replica side, in `replication.region`. Attributes: `key`, `bucket`, `access_log_bucket`."""

    def __init__(self, scope: Construct, id: str, *, stage: StageConfig, replication: ReplicationConfig) -> None:
        super().__init__(
            scope, id,
            env=Environment(account=stage.account, region=replication.region),
            description=f"Warden {stage.name}: cross-region replica of the backup bucket",
            termination_protection=stage.name == "prod",
        )
        Tags.of(self).add("project", "warden")
        Tags.of(self).add("stage", stage.name)
        lock = stage.backup_protection.object_lock
        self.key = kms.Key(
            self, "Key", alias=replica_key_alias(stage.name), enable_key_rotation=True,
            description=f"Warden {stage.name}: replica of the backups", removal_policy=RemovalPolicy.RETAIN,
        )
        self.access_log_bucket = s3.Bucket(
            self, "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # access logs are delivered to SSE-S3 buckets only
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True, minimum_tls_version=1.2,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=ACCESS_LOG_EXPIRATION)],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self, "Backups",
            bucket_name=replica_bucket_name(stage.name, Aws.ACCOUNT_ID, replication.region),
            encryption=s3.BucketEncryption.KMS, encryption_key=self.key, bucket_key_enabled=True,
            versioned=True,  # a replication destination must be versioned
            # S3 replicates a locked object only into a bucket with Object Lock; replicas keep the source's date.
            object_lock_enabled=True if lock else None,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True, minimum_tls_version=1.2,
            server_access_logs_bucket=self.access_log_bucket, server_access_logs_prefix="replica/",
            lifecycle_rules=[
                # Prune's deletions are not replicated: replicas expire on their own.
                s3.LifecycleRule(id="expire-replicas", expiration=Duration.days(replication.expire_after_days),
                                 noncurrent_version_expiration=Duration.days(1)),
                s3.LifecycleRule(id="abort-incomplete-multipart-uploads",
                                 abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        role_arn = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/{replication_role_name(stage.name, stage.region)}"
        objects = self.bucket.arn_for_objects("*")
        # Replicas are written by S3 replication alone and removed by the lifecycle alone.
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="DenyReplicaTampering", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=_REPLICA_TAMPERING, resources=[objects]))
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="DenyReplicationExceptWardenRole", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:ReplicateObject", "s3:ReplicateTags"], resources=[objects],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": role_arn}}))


def replicate_backups(storage: Storage, stage: StageConfig, replication: ReplicationConfig) -> iam.Role:
    """The replication rule on the stage's backup bucket (SSE-KMS objects re-encrypted with the replica
    key, delete markers not replicated) and the least-privilege role S3 assumes for it."""
    bucket = storage.bucket
    lock = stage.backup_protection.object_lock
    role = iam.Role(
        storage, "ReplicationRole",
        role_name=replication_role_name(stage.name, stage.region),
        assumed_by=iam.ServicePrincipal("s3.amazonaws.com"),
        description=f"S3 replication of Warden {stage.name} backups to {replication.region}",
    )
    role.add_to_policy(iam.PolicyStatement(actions=["s3:GetReplicationConfiguration", "s3:ListBucket"],
                                           resources=[bucket.bucket_arn]))
    source_reads = ["s3:GetObjectVersionAcl", "s3:GetObjectVersionForReplication", "s3:GetObjectVersionTagging"]
    if lock is not None:  # the source's retention travels with the replica
        source_reads += ["s3:GetObjectLegalHold", "s3:GetObjectRetention"]
    role.add_to_policy(iam.PolicyStatement(actions=source_reads, resources=[bucket.arn_for_objects("*")]))
    destination = replica_bucket_arn(stage, replication)
    role.add_to_policy(iam.PolicyStatement(actions=["s3:ReplicateObject", "s3:ReplicateTags"],
                                           resources=[f"{destination}/*"]))
    # With S3 Bucket Keys the encryption context is the bucket's ARN, without them the object's.
    role.add_to_policy(iam.PolicyStatement(
        actions=["kms:Decrypt"], resources=[storage.key.key_arn],
        conditions={"StringEquals": {"kms:ViaService": f"s3.{stage.region}.amazonaws.com"},
                    "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket.bucket_arn,
                                                                        bucket.arn_for_objects("*")]}}))
    encrypt = replica_key_statement(stage, replication, ["kms:Encrypt", "kms:GenerateDataKey"])
    encrypt.add_condition("StringEquals", {"kms:ViaService": f"s3.{replication.region}.amazonaws.com"})
    role.add_to_policy(encrypt)

    cfn_bucket = bucket.node.default_child
    assert isinstance(cfn_bucket, s3.CfnBucket)
    cfn_bucket.replication_configuration = s3.CfnBucket.ReplicationConfigurationProperty(
        role=role.role_arn,
        rules=[s3.CfnBucket.ReplicationRuleProperty(
            id=REPLICATION_RULE_ID, status="Enabled", priority=1,
            filter=s3.CfnBucket.ReplicationRuleFilterProperty(prefix=""),
            delete_marker_replication=s3.CfnBucket.DeleteMarkerReplicationProperty(status="Disabled"),
            source_selection_criteria=s3.CfnBucket.SourceSelectionCriteriaProperty(
                sse_kms_encrypted_objects=s3.CfnBucket.SseKmsEncryptedObjectsProperty(status="Enabled")),
            destination=s3.CfnBucket.ReplicationDestinationProperty(
                bucket=destination,
                encryption_configuration=s3.CfnBucket.EncryptionConfigurationProperty(
                    replica_kms_key_id=replica_key_alias_arn(stage, replication)),
            ),
        )],
    )
    nag.acknowledge(
        role,
        f"AwsSolutions-IAM5[Resource::{nag.ref(bucket, 'Arn')}/*]",
        "Replication reads every backup object version (keys are created at run time); the read actions "
        "are the replication ones, listed one by one.",
    )
    replica_name = replica_bucket_name(stage.name, "<AWS::AccountId>", replication.region)
    replica_objects = f"arn:<AWS::Partition>:s3:::{replica_name}/*"
    nag.acknowledge(
        role,
        f"AwsSolutions-IAM5[Resource::{replica_objects}]",
        "Replication writes every backup object into the replica bucket; ReplicateObject and ReplicateTags only.",
    )
    acknowledge_replica_key(role, stage, replication)
    return role
