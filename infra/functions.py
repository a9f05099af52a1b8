"""THE function construct, the one place a Lambda function is made, and the grants functions use.

Every Warden function is the same shape: the handler in `functions/<job>/handler.py`, Python 3.12
on arm64 with the two shared layers, JSON logs into its own encrypted log group with the stage's
retention, X-Ray tracing, and a role of its own that starts empty. The caller adds what the job
needs with the `grant_*` helpers below; each grants named actions on named resources and sets the
environment variable that tells the function where that resource is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from aws_cdk import ArnFormat, Duration, IgnoreMode, RemovalPolicy, Size, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import nag
from infra.layers import PG_TOOLS_MOUNT, SharedLayers
from infra.storage import Storage
from warden import names
from warden.config.stage import StageConfig
from warden.config.target import Target

if TYPE_CHECKING:
    from infra.network import Placement

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO / "functions"
HANDLER = "handler.handler"
DEFAULT_TIMEOUT = Duration.minutes(1)
_JOB = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

# Environment variables the runtime (and the local runtime) reads: warden.names, warden.settings.
ENV_FUNCTION = names.ENV_FUNCTION
ENV_STAGE = names.ENV_STAGE
ENV_BUCKET = names.ENV_BUCKET
ENV_KMS_KEY_ID = names.ENV_KMS_KEY_ID
ENV_TOPIC_ARN = names.ENV_TOPIC_ARN
ENV_PG_BIN_DIR = names.ENV_PG_BIN_DIR
ENV_TABLES = {"catalog": names.ENV_CATALOG_TABLE, "audit": names.ENV_AUDIT_TABLE, "state": names.ENV_STATE_TABLE}
_RESERVED_ENV = {ENV_FUNCTION, ENV_STAGE, names.ENV_POWERTOOLS_SERVICE_NAME, names.ENV_POWERTOOLS_METRICS_NAMESPACE}
# What a state machine's function task retries: a database that did not answer, Lambda's own hiccups.
TRANSIENT_ERRORS = ["DatabaseUnavailable", "Lambda.ServiceException", "Lambda.AWSLambdaException",
                    "Lambda.SdkClientException", "Lambda.TooManyRequestsException"]

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def log_retention(days: int) -> logs.RetentionDays:
    """The CloudWatch Logs retention for a number of days (one of the values Logs accepts)."""
    try:
        return _RETENTION[days]
    except KeyError:
        raise ValueError(f"{days} days is not a CloudWatch Logs retention; use one of {sorted(_RETENTION)}") from None


def encrypted_log_group(scope: Construct, id: str, *, stage: StageConfig, key: kms.IKey) -> logs.LogGroup:
    """A log group with the stage's retention, encrypted with `key` (whose policy must allow Logs)."""
    return logs.LogGroup(
        scope,
        id,
        retention=log_retention(stage.log_retention_days),
        encryption_key=key,
        removal_policy=RemovalPolicy.RETAIN,
    )


class WardenFunction(Construct):
    """One Warden Lambda function running `functions/<job>/handler.py`.

    Attributes: `function` (the `lambda_.Function`), `role` (its own, empty until granted),
    `log_group`, `job`, `stage`, `layers` (the `SharedLayers` it was made with).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        job: str,
        layers: SharedLayers,
        stage: StageConfig,
        key: kms.IKey,
        environment: dict[str, str] | None = None,
        timeout: Duration = DEFAULT_TIMEOUT,
        memory_size: int = 512,
        description: str = "",
        reserved_concurrency: int | None = None,
        ephemeral_storage_size: Size | None = None,
        placement: Placement | None = None,
    ) -> None:
        super().__init__(scope, id)
        code_dir = _code_dir(job)
        clashes = sorted(_RESERVED_ENV & set(environment or {}))
        if clashes:
            raise ValueError(f"function {job!r}: environment must not set {clashes}; WardenFunction sets them")
        self.job = job
        self.stage = stage
        self.layers = layers
        self.key = key
        self._granted: set[str] = set()

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Warden {stage.name} {job} function",
        )
        self.log_group = encrypted_log_group(self, "Logs", stage=stage, key=key)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=layers.runtime,
            architecture=layers.architecture,
            handler=HANDLER,
            code=lambda_.Code.from_asset(
                str(code_dir), exclude=["**/__pycache__", "**/*.pyc"], ignore_mode=IgnoreMode.GLOB
            ),
            layers=layers.all,
            role=self.role,
            timeout=timeout,
            memory_size=memory_size,
            description=description or f"Warden {stage.name} {job}",
            environment={
                names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_NAME,
                names.ENV_POWERTOOLS_METRICS_NAMESPACE: names.METRICS_NAMESPACE,
                ENV_FUNCTION: job,
                ENV_STAGE: stage.name,
                **(environment or {}),
            },
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=self.log_group,
            reserved_concurrent_executions=reserved_concurrency,
            ephemeral_storage_size=ephemeral_storage_size,
            # In the stage's VPC when it talks to databases (infra/network.py), else outside any VPC.
            vpc=placement.vpc if placement else None,
            vpc_subnets=placement.subnets if placement else None,
            security_groups=placement.security_groups if placement else None,
        )
        if placement is not None:  # Lambda checks the role may make network interfaces at creation
            self.function.node.add_dependency(placement.network.grant_network_interfaces(self, self.role))
        self.log_group.grant_write(self.role)
        self._enable_tracing()
        nag.acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to python3.12 on purpose: the dependency layer is built from cp312 wheels "
            "(pip --python-version 3.12) and the local runtime and tests run 3.12; moving runtime "
            "is one deliberate change of layer, functions and tests together.",
        )

    def _enable_tracing(self) -> None:
        # Set on the L1 rather than `tracing=Tracing.ACTIVE`, so the X-Ray statement lives in its
        # own policy whose one wildcard is acknowledged there, not on the role's grants.
        cfn_function = self.function.node.default_child
        assert isinstance(cfn_function, lambda_.CfnFunction)
        cfn_function.tracing_config = lambda_.CfnFunction.TracingConfigProperty(mode="Active")
        policy = iam.Policy(
            self,
            "TracingPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                    resources=["*"],
                )
            ],
        )
        self.function.node.add_dependency(policy)
        nag.acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments and PutTelemetryRecords support no resource-level permissions; "
            "'*' is the only resource they accept.",
        )

    def add_to_policy(self, statement: iam.PolicyStatement) -> None:
        """Add one statement to this function's own role."""
        self.role.add_to_principal_policy(statement)

    def _once(self, grant: str) -> bool:
        first = grant not in self._granted
        self._granted.add(grant)
        return first


def _code_dir(job: str) -> Path:
    if not _JOB.match(job):
        raise ValueError(f"job name {job!r} must match {_JOB.pattern} (it names functions/<job>/)")
    code_dir = FUNCTIONS_DIR / job
    if not (code_dir / "handler.py").is_file():
        raise FileNotFoundError(f"function {job!r}: {code_dir / 'handler.py'} does not exist")
    return code_dir


# -- grants ------------------------------------------------------------------------------------

_KEY_USE = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]
_TABLE_READ = ["dynamodb:BatchGetItem", "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"]
_TABLE_WRITE = [
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
]
_OBJECT_READ = ["s3:GetObject", "s3:GetObjectAttributes", "s3:GetObjectVersion"]
_OBJECT_WRITE = ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:PutObject"]
_OBJECT_DELETE = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
_BUCKET_READ = ["s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:ListBucketVersions"]


def grant_key_use(fn: WardenFunction, storage: Storage) -> None:
    """Encrypt / decrypt with the stage key: needed for every encrypted table, object and message."""
    if fn._once("key"):
        fn.add_to_policy(iam.PolicyStatement(actions=_KEY_USE, resources=[storage.key.key_arn]))
        fn.function.add_environment(ENV_KMS_KEY_ID, storage.key.key_arn)


def grant_target_config_read(fn: WardenFunction, storage: Storage) -> None:
    """Read the stage's target configurations from Parameter Store.

    `GetParametersByPath` is authorized against the path in the request, not the parameters it
    returns: allowed on `/warden/<stage>/targets` with and without the trailing slash, nothing
    above or beside it. Single reads are allowed on the parameters under that path
    (`/warden/<stage>/targets/*`): the path read already returns every one of them, so naming each
    adds no restriction, and at 500 targets the names alone (about 75 characters each) would be
    380 KB of template and far past IAM's 10,240-character limit on a role's policies (docs/fleets.md).
    """
    if not fn._once("config"):
        return
    stack = Stack.of(fn)
    path = storage.targets_path.strip("/")
    path_arns = [
        stack.format_arn(service="ssm", resource="parameter", resource_name=name) for name in (path, f"{path}/")
    ]
    fn.add_to_policy(iam.PolicyStatement(actions=["ssm:GetParametersByPath"], resources=path_arns))
    if not storage.stage.targets:
        return
    under_path = stack.format_arn(service="ssm", resource="parameter", resource_name=f"{path}/*")
    fn.add_to_policy(iam.PolicyStatement(actions=["ssm:GetParameter", "ssm:GetParameters"], resources=[under_path]))
    nag.acknowledge(
        fn.role, f"AwsSolutions-IAM5[Resource::{nag.spelling(stack, under_path)}]",
        "Single reads of the stage's target configurations, the parameters under its targets path: "
        "GetParametersByPath on that path already returns every one of them.",
    )


def grant_target_secrets_read(fn: WardenFunction, targets: Iterable[Target]) -> None:
    """Read the targets' credentials: `GetSecretValue` on each secret, by name.

    Secrets Manager appends six random characters to a secret's ARN, hence `<name>-??????`
    (`?` matches exactly one character). A secret encrypted with its own customer key also needs
    `kms:Decrypt` on that key, granted where that key is known.
    """
    arns = target_secret_arns(Stack.of(fn), targets)
    if arns:
        fn.add_to_policy(iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=arns))


def target_secret_arns(stack: Stack, targets: Iterable[Target]) -> list[str]:
    """The ARNs (patterns) of the targets' secrets, sorted: `<name>-??????`, or the ARN configured."""
    return sorted(
        {
            t.secret_name
            if t.secret_name.startswith("arn:")
            else stack.format_arn(
                service="secretsmanager",
                resource="secret",
                resource_name=f"{t.secret_name}-??????",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            for t in targets
        }
    )


def staging_targets(targets: Iterable[Target]) -> list[Target]:
    """The targets whose recoveries restore into a database of their own (`recovery.staging_secret_name`),
    each as a target with that secret."""
    return [t.model_copy(update={"secret_name": t.recovery.staging_secret_name})
            for t in targets if t.recovery.staging_secret_name]


def backups_read_statements(storage: Storage) -> list[iam.PolicyStatement]:
    """What `grant_backups_read` allows, as statements (for a role that is not a function's)."""
    return [iam.PolicyStatement(actions=_BUCKET_READ, resources=[storage.bucket.bucket_arn]),
            iam.PolicyStatement(actions=_OBJECT_READ, resources=[storage.bucket.arn_for_objects("*")])]


def grant_catalog_read_write(fn: WardenFunction, storage: Storage) -> None:
    """Read and write backup records in the catalog table."""
    _grant_table(fn, storage, "catalog", _TABLE_READ + _TABLE_WRITE)


def grant_catalog_read(fn: WardenFunction, storage: Storage) -> None:
    """Read backup records (health's backup-freshness checks)."""
    _grant_table(fn, storage, "catalog", _TABLE_READ)


def grant_state_read_write(fn: WardenFunction, storage: Storage) -> None:
    """Read and write the state table (locks, recovery state)."""
    _grant_table(fn, storage, "state", _TABLE_READ + _TABLE_WRITE)


def grant_audit_append(fn: WardenFunction, storage: Storage) -> None:
    """Append to the audit table: `PutItem` and nothing else, so history cannot be rewritten."""
    _grant_table(fn, storage, "audit", ["dynamodb:PutItem"])


def grant_backups_read(fn: WardenFunction, storage: Storage) -> None:
    """List the backup bucket and read backup objects (any version)."""
    if fn._once("backups-read"):
        fn.add_to_policy(iam.PolicyStatement(actions=_BUCKET_READ, resources=[storage.bucket.bucket_arn]))
        _grant_objects(fn, storage, _OBJECT_READ)


def grant_backups_write(fn: WardenFunction, storage: Storage) -> None:
    """Write backup objects, multipart uploads included (and abort them on failure)."""
    if fn._once("backups-write"):
        _grant_objects(fn, storage, _OBJECT_WRITE)


def grant_backups_delete(fn: WardenFunction, storage: Storage) -> None:
    """Delete backup objects and their versions (prune)."""
    if fn._once("backups-delete"):
        _grant_objects(fn, storage, _OBJECT_DELETE)


def grant_backup_locks_read(fn: WardenFunction, storage: Storage) -> None:
    """Read the bucket's Object Lock default and each version's retention and legal hold (prune:
    HeadObject reports a version's lock only to a caller allowed GetObjectRetention / LegalHold)."""
    if fn._once("backups-locks"):
        fn.add_to_policy(iam.PolicyStatement(actions=["s3:GetBucketObjectLockConfiguration"],
                                             resources=[storage.bucket.bucket_arn]))
        _grant_objects(fn, storage, ["s3:GetObjectLegalHold", "s3:GetObjectRetention"])


def grant_notify(fn: WardenFunction, storage: Storage) -> None:
    """Publish to the stage's notification topic."""
    if fn._once("notify"):
        fn.add_to_policy(iam.PolicyStatement(actions=["sns:Publish"], resources=[storage.topic.topic_arn]))
        fn.function.add_environment(ENV_TOPIC_ARN, storage.topic.topic_arn)
        grant_key_use(fn, storage)


def use_pg_tools(fn: WardenFunction) -> None:
    """Run pg_dump / pg_restore: the `pgtools` layer, and `WARDEN_PG_BIN_DIR` pointing at its
    per-major trees (`/opt/pgtools/<major>/bin`, see docs/postgres-tools.md)."""
    if fn._once("pgtools"):
        fn.function.add_layers(fn.layers.pgtools)
        fn.function.add_environment(ENV_PG_BIN_DIR, PG_TOOLS_MOUNT)


def grant_health(fn: WardenFunction, storage: Storage) -> None:
    """What the health job needs: the stage's target configs and their secrets, the state table
    (locks), the audit trail (append), the catalog (read: backup freshness), and the key."""
    grant_target_config_read(fn, storage)
    grant_target_secrets_read(fn, storage.stage.targets)
    grant_state_read_write(fn, storage)
    grant_audit_append(fn, storage)
    grant_catalog_read(fn, storage)
    grant_key_use(fn, storage)


def grant_rds_snapshots(fn: WardenFunction, targets: Iterable[Target], job: str) -> None:
    """What `job` (backup / verify / prune) does with the RDS snapshots of the targets whose
    `backup.method` is rds-snapshot; nothing at all when no target uses it.

    Scoped to each such target's configured instance (`db:<id>`) or cluster (`cluster:<id>`) and to
    the snapshots Warden names `warden-<target>-<backup id>` (warden.engines.rds_snapshot):
    `snapshot:warden-<target>-*` and `cluster-snapshot:warden-<target>-*`. Every job may describe
    those snapshots (backup and verify read their status, prune checks they are gone); backup
    creates and tags them, prune deletes them.
    """
    from warden.config.backup import RDS_SNAPSHOT
    from warden.engines.rds_snapshot import snapshot_prefix

    if job not in ("backup", "verify", "prune"):
        raise ValueError(f"grant_rds_snapshots: no RDS snapshot grants for job {job!r}")
    chosen = [t for t in targets if t.backup.method == RDS_SNAPSHOT and t.rds is not None]
    if not chosen or not fn._once(f"rds-snapshots-{job}"):
        return
    stack = Stack.of(fn)

    def arns(resource: str, names: Iterable[str | None]) -> list[str]:
        return [stack.format_arn(service="rds", resource=resource, resource_name=n,
                                 arn_format=ArnFormat.COLON_RESOURCE_NAME) for n in names if n]

    instances = arns("db", [t.rds.instance_id for t in chosen if t.rds])
    clusters = arns("cluster", [t.rds.cluster_id for t in chosen if t.rds])
    prefixes = [f"{snapshot_prefix(t.name)}*" for t in chosen]
    snapshots, cluster_snapshots = arns("snapshot", prefixes), arns("cluster-snapshot", prefixes)
    statements = [(["rds:DescribeDBClusterSnapshots", "rds:DescribeDBSnapshots"],
                   [*instances, *clusters, *snapshots, *cluster_snapshots])]
    for sources, snaps, kind, source_kind in ((instances, snapshots, "DBSnapshot", "DBInstances"),
                                              (clusters, cluster_snapshots, "DBClusterSnapshot", "DBClusters")):
        if sources and job == "backup":
            statements += [([f"rds:Create{kind}", f"rds:Describe{source_kind}"], sources),
                           (["rds:AddTagsToResource", f"rds:Create{kind}"], snaps)]
        if sources and job == "prune":
            statements.append(([f"rds:Delete{kind}"], snaps))
    for actions, resources in statements:
        fn.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources))
    for arn in [*snapshots, *cluster_snapshots]:
        nag.acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::{nag.spelling(stack, arn)}]",
            "Warden names each RDS snapshot warden-<target>-<backup id> at run time; the grant covers only "
            "the snapshots of that one target, and the actions are listed one by one.",
        )


def _grant_table(fn: WardenFunction, storage: Storage, name: str, actions: list[str]) -> None:
    if not fn._once(f"table-{name}"):
        return
    table: dynamodb.Table = storage.tables[name]
    fn.add_to_policy(iam.PolicyStatement(actions=sorted(actions), resources=[table.table_arn]))
    fn.function.add_environment(ENV_TABLES[name], table.table_name)
    grant_key_use(fn, storage)


def _grant_objects(fn: WardenFunction, storage: Storage, actions: list[str]) -> None:
    fn.add_to_policy(iam.PolicyStatement(actions=actions, resources=[storage.bucket.arn_for_objects("*")]))
    fn.function.add_environment(ENV_BUCKET, storage.bucket.bucket_name)
    grant_key_use(fn, storage)
    if fn._once("backups-objects-ack"):
        nag.acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::{nag.ref(storage.bucket, 'Arn')}/*]",
            "Backup object keys are <target>/<date>/<backup id>/..., created at run time, so object "
            "actions need the bucket's objects; the actions themselves are listed one by one.",
        )
