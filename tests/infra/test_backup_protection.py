"""Backup protection in the templates: Object Lock on the backup bucket, replication to a bucket
with its own key in a second region (its own stack, no cross-region references), and a bucket
policy that leaves writes and deletes to the functions that must; cdk-nag and cfn-lint clean.
Also: a protection that does not fit the stage is refused with the field named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from infra_helpers import as_list, logical_id, policy_statements, resources

from infra.assembly import stage_template
from infra.config import ConfigError, parse_stages
from infra.nag import unacknowledged_findings
from infra.stack import WardenStack, build_app

pytestmark = pytest.mark.infra
REPLICA_REGION = "eu-central-1"
STAGE = {
    "region": "eu-west-1",
    "targets": [{"name": "orders-pg", "engine": "postgres", "secret_name": "warden/vault/orders-pg",
                 "retention": {"keep_daily": 14}}],
    "backup_protection": {"object_lock": {"mode": "compliance", "days": 30},
                          "replication": {"region": REPLICA_REGION, "expire_after_days": 400}},
}


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory, dependency_layer_dir: Path) -> dict[str, Any]:
    """The stage `vault` with Object Lock and replication, synthesized with cdk-nag on (raises on a finding)."""
    outdir = tmp_path_factory.mktemp("protected")
    app, stacks = build_app({"stages": {"vault": STAGE}, "stage": "vault"}, outdir=str(outdir),
                            dependency_layer_dir=dependency_layer_dir)
    app.synth()
    stack = stacks["vault"]
    assert stack.replica_stack is not None
    return {"outdir": outdir, "stack": stack, "replica": stack.replica_stack,
            "template": stage_template(outdir, "Warden-vault"),
            "replica_template": json.loads((outdir / "Warden-vault-replica.template.json").read_text())}


def _bucket(protected: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    stack: WardenStack = protected["stack"]
    bucket_id = logical_id(stack, stack.storage.bucket)
    return bucket_id, protected["template"]["Resources"][bucket_id]["Properties"]


def _bucket_policy(template: dict[str, Any], bucket_id: str) -> list[dict[str, Any]]:
    (policy,) = [p for p in resources(template, "AWS::S3::BucketPolicy").values()
                 if p["Properties"]["Bucket"] == {"Ref": bucket_id}]
    return list(policy["Properties"]["PolicyDocument"]["Statement"])


def _role_id(stack: WardenStack, job: str) -> str:
    return logical_id(stack, stack.functions[job].role)


def test_both_stacks_are_cdk_nag_and_cfn_lint_clean(protected: dict[str, Any]) -> None:
    assert unacknowledged_findings(protected["outdir"]) == []
    for name, region in (("Warden-vault", "eu-west-1"), ("Warden-vault-replica", REPLICA_REGION)):
        text = (protected["outdir"] / f"{name}.template.json").read_text()
        errors = [f"{m.rule.id} {m.message}" for m in lint(text, config=ManualArgs(regions=[region]))
                  if m.rule.id.startswith("E")]
        assert errors == [], name


def test_the_replica_stack_lives_in_the_second_region_and_deploys_first(protected: dict[str, Any]) -> None:
    stack, replica = protected["stack"], protected["replica"]
    assert replica.region == REPLICA_REGION and stack.region == "eu-west-1"
    assert replica in stack.dependencies
    # no cross-stack references: nothing is imported or exported
    assert "Fn::ImportValue" not in json.dumps(protected["template"])
    assert not protected["replica_template"].get("Outputs")


def test_backup_bucket_has_object_lock_with_the_configured_default_retention(protected: dict[str, Any]) -> None:
    _, props = _bucket(protected)
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}}}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}


def test_replication_re_encrypts_kms_objects_with_the_replica_key_and_skips_delete_markers(
        protected: dict[str, Any]) -> None:
    _, props = _bucket(protected)
    (rule,) = props["ReplicationConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled" and rule["Filter"] == {"Prefix": ""}
    assert rule["SourceSelectionCriteria"] == {"SseKmsEncryptedObjects": {"Status": "Enabled"}}
    assert rule["DeleteMarkerReplication"] == {"Status": "Disabled"}
    destination = rule["Destination"]
    assert "".join(p if isinstance(p, str) else "<ref>" for p in destination["Bucket"]["Fn::Join"][1]) == \
        f"arn:<ref>:s3:::warden-vault-replica-<ref>-{REPLICA_REGION}"
    key = "".join(p if isinstance(p, str) else "<ref>"
                  for p in destination["EncryptionConfiguration"]["ReplicaKmsKeyID"]["Fn::Join"][1])
    assert key == f"arn:<ref>:kms:{REPLICA_REGION}:<ref>:alias/warden/vault/replica"


def test_the_replica_bucket_and_key_have_the_names_the_primary_stack_uses(protected: dict[str, Any]) -> None:
    template = protected["replica_template"]
    (bucket,) = [b for b in resources(template, "AWS::S3::Bucket").values()
                 if "BucketName" in b["Properties"]]
    props = bucket["Properties"]
    name = "".join(p if isinstance(p, str) else "<ref>" for p in props["BucketName"]["Fn::Join"][1])
    assert name == f"warden-vault-replica-<ref>-{REPLICA_REGION}"
    assert props["ObjectLockEnabled"] is True  # S3 replicates locked objects only into a locked bucket
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    (key_id,) = resources(template, "AWS::KMS::Key")
    assert encryption["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]}}
    (alias,) = resources(template, "AWS::KMS::Alias").values()
    assert alias["Properties"]["AliasName"] == "alias/warden/vault/replica"
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-replicas"]["ExpirationInDays"] == 400


def test_replication_role_is_assumed_by_s3_and_holds_only_replication_actions(protected: dict[str, Any]) -> None:
    stack, template = protected["stack"], protected["template"]
    role_id = logical_id(stack, stack.replication_role)
    role = template["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "s3.amazonaws.com"}
    assert role["RoleName"] == "warden-vault-replication-eu-west-1"
    policies = {lid for lid, r in resources(template, "AWS::IAM::Policy").items()
                if {"Ref": role_id} in r["Properties"]["Roles"]}
    statements = [s for lid, s in policy_statements(template) if lid in policies]
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert actions == {
        "s3:GetReplicationConfiguration", "s3:ListBucket", "s3:GetObjectVersionForReplication",
        "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging", "s3:GetObjectLegalHold", "s3:GetObjectRetention",
        "s3:ReplicateObject", "s3:ReplicateTags", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"}
    assert not any(a.endswith("*") for a in actions) and "s3:ReplicateDelete" not in actions
    (encrypt,) = [s for s in statements if "kms:Encrypt" in as_list(s["Action"])]
    assert encrypt["Condition"]["ForAnyValue:StringEquals"] == {"kms:ResourceAliases": ["alias/warden/vault/replica"]}
    assert encrypt["Condition"]["StringEquals"] == {"kms:ViaService": f"s3.{REPLICA_REGION}.amazonaws.com"}


def test_bucket_policy_leaves_writes_and_deletes_to_the_functions_that_must(protected: dict[str, Any]) -> None:
    stack, template = protected["stack"], protected["template"]
    statements = {s.get("Sid"): s for s in _bucket_policy(template, _bucket(protected)[0])}

    def exempt(sid: str) -> set[str]:
        statement = statements[sid]
        assert statement["Effect"] == "Deny" and statement["Principal"] == {"AWS": "*"}
        return {ref["Fn::GetAtt"][0] for ref in statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]}

    writers = {_role_id(stack, j) for j in ("backup", "recovery", "report")}
    assert exempt("DenyObjectWritesExceptBackupWriters") == writers
    assert set(as_list(statements["DenyObjectWritesExceptBackupWriters"]["Action"])) == {
        "s3:PutObject", "s3:AbortMultipartUpload"}
    assert exempt("DenyObjectDeletesExceptPrune") == {_role_id(stack, j) for j in ("prune", "remediate")}
    assert set(as_list(statements["DenyObjectDeletesExceptPrune"]["Action"])) == {
        "s3:DeleteObject", "s3:DeleteObjectVersion"}
    # verify only reads: it is not among the writers
    assert _role_id(stack, "verify") not in exempt("DenyObjectWritesExceptBackupWriters")
    lock = statements["DenyObjectLockChanges"]
    assert "Condition" not in lock and set(as_list(lock["Action"])) == {
        "s3:BypassGovernanceRetention", "s3:PutObjectRetention", "s3:PutObjectLegalHold"}


def test_bucket_policy_denies_non_tls_and_puts_not_encrypted_with_the_stage_key(protected: dict[str, Any]) -> None:
    stack, template = protected["stack"], protected["template"]
    statements = _bucket_policy(template, _bucket(protected)[0])
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)
    by_sid = {s.get("Sid"): s for s in statements}
    sse = by_sid["DenyPutsNotSseKms"]
    assert sse["Action"] == "s3:PutObject" and sse["Condition"] == {
        "Null": {"s3:x-amz-server-side-encryption": "false"},
        "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}
    other_key = by_sid["DenyPutsWithAnotherKmsKey"]["Condition"]["StringNotEquals"]
    assert other_key == {"s3:x-amz-server-side-encryption-aws-kms-key-id":
                         {"Fn::GetAtt": [logical_id(stack, stack.storage.key), "Arn"]}}


def test_the_replica_bucket_is_written_by_replication_alone(protected: dict[str, Any]) -> None:
    template = protected["replica_template"]
    (bucket_id,) = [lid for lid, b in resources(template, "AWS::S3::Bucket").items() if "BucketName" in b["Properties"]]
    statements = {s.get("Sid"): s for s in _bucket_policy(template, bucket_id)}
    tampering = set(as_list(statements["DenyReplicaTampering"]["Action"]))
    assert {"s3:PutObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"} <= tampering
    only_role = statements["DenyReplicationExceptWardenRole"]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    assert "".join(p if isinstance(p, str) else "<ref>" for p in only_role["Fn::Join"][1]) == \
        "arn:<ref>:iam::<ref>:role/warden-vault-replication-eu-west-1"


def test_verify_and_recovery_know_the_replica_and_recovery_may_decrypt_it(protected: dict[str, Any]) -> None:
    stack, template = protected["stack"], protected["template"]
    for job in ("verify", "recovery"):
        function_id = logical_id(stack, stack.functions[job].function)
        variables = template["Resources"][function_id]["Properties"]["Environment"]["Variables"]
        assert variables["WARDEN_REPLICA_REGION"] == REPLICA_REGION
        assert {"WARDEN_REPLICA_BUCKET", "WARDEN_REPLICA_KMS_KEY"} <= set(variables)
    recovery_role = _role_id(stack, "recovery")
    policies = {lid for lid, r in resources(template, "AWS::IAM::Policy").items()
                if {"Ref": recovery_role} in r["Properties"]["Roles"]}
    (decrypt,) = [s for lid, s in policy_statements(template)
                  if lid in policies and s.get("Condition", {}).get("ForAnyValue:StringEquals")]
    assert as_list(decrypt["Action"]) == ["kms:Decrypt"]
    assert decrypt["Condition"]["ForAnyValue:StringEquals"] == {"kms:ResourceAliases": ["alias/warden/vault/replica"]}


def test_prune_may_read_locks_so_it_can_skip_locked_versions(protected: dict[str, Any]) -> None:
    stack, template = protected["stack"], protected["template"]
    for job in ("prune", "remediate"):
        role = _role_id(stack, job)
        policies = {lid for lid, r in resources(template, "AWS::IAM::Policy").items()
                    if {"Ref": role} in r["Properties"]["Roles"]}
        actions = {a for lid, s in policy_statements(template) if lid in policies for a in as_list(s["Action"])}
        assert {"s3:GetObjectRetention", "s3:GetObjectLegalHold", "s3:GetBucketObjectLockConfiguration"} <= actions


@pytest.mark.parametrize(("protection", "message"), [
    ({"object_lock": {"mode": "governance", "days": 7}},
     "backup_protection.object_lock.days=7 is shorter than the 14 days target 'orders-pg'"),
    ({"object_lock": {"mode": "forever", "days": 30}}, "backup_protection.object_lock.mode"),
    ({"replication": {"region": "eu-west-1"}}, "backup_protection.replication.region='eu-west-1' is the stage's own"),
    ({"replication": {"region": "europe"}}, "backup_protection.replication.region"),
    ({"object_lock": {"mode": "compliance", "days": 30}, "replication": {"region": REPLICA_REGION,
                                                                         "expire_after_days": 20}},
     "replication.expire_after_days=20 is shorter than object_lock.days=30"),
])
def test_a_protection_that_does_not_fit_the_stage_is_refused_naming_the_field(
        protection: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_stages({"vault": {**STAGE, "backup_protection": protection}})
    assert message in str(error.value)
