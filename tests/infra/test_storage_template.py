"""The stage's durable state: encrypted with the customer key, private, TLS-only, recoverable."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from infra_helpers import Synthesized, as_list, logical_id, resources

from warden.config.target import Target

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def key_id(synthesized: Synthesized) -> str:
    stack = synthesized.stacks["dev"]
    return logical_id(stack, stack.storage.key)


@pytest.fixture(scope="module")
def bucket(synthesized: Synthesized, dev: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    stack = synthesized.stacks["dev"]
    lid = logical_id(stack, stack.storage.bucket)
    return lid, dev["Resources"][lid]["Properties"]


def test_key_is_customer_managed_with_rotation(dev: dict[str, Any], key_id: str) -> None:
    key = dev["Resources"][key_id]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"


def test_backup_bucket_encrypts_with_the_customer_key_and_a_bucket_key(
    bucket: tuple[str, dict[str, Any]], key_id: str
) -> None:
    (rule,) = bucket[1]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    assert rule["BucketKeyEnabled"] is True


def test_backup_bucket_is_versioned_and_blocks_all_public_access(bucket: tuple[str, dict[str, Any]]) -> None:
    props = bucket[1]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_backup_bucket_denies_every_request_without_tls(
    dev: dict[str, Any], bucket: tuple[str, dict[str, Any]]
) -> None:
    bucket_id = bucket[0]
    (policy,) = [
        p for p in resources(dev, "AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    denies = [
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(denies) == 1
    assert denies[0]["Action"] == "s3:*"
    assert denies[0]["Principal"] == {"AWS": "*"}
    # both the bucket and every object in it
    assert {json.dumps(r, sort_keys=True) for r in denies[0]["Resource"]} == {
        json.dumps({"Fn::GetAtt": [bucket_id, "Arn"]}, sort_keys=True),
        json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/*"]]}, sort_keys=True),
    }


def test_backup_bucket_aborts_incomplete_uploads_after_a_day_and_expires_old_versions(
    bucket: tuple[str, dict[str, Any]],
) -> None:
    rules = {r["Id"]: r for r in bucket[1]["LifecycleConfiguration"]["Rules"]}
    assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert all(r["Status"] == "Enabled" for r in rules.values())
    # no rule ever expires a current backup: only the retention engine deletes backups
    assert not any("ExpirationInDays" in r or "ExpirationDate" in r for r in rules.values())


def test_backup_bucket_logs_access_to_a_separate_private_bucket(
    synthesized: Synthesized, dev: dict[str, Any], bucket: tuple[str, dict[str, Any]]
) -> None:
    stack = synthesized.stacks["dev"]
    log_bucket_id = logical_id(stack, stack.storage.access_log_bucket)
    assert log_bucket_id != bucket[0]
    assert bucket[1]["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": log_bucket_id}
    log_props = dev["Resources"][log_bucket_id]["Properties"]
    assert log_props["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True


def test_every_table_has_string_keys_on_demand_pitr_and_the_customer_key(dev: dict[str, Any], key_id: str) -> None:
    tables = resources(dev, "AWS::DynamoDB::Table")
    assert len(tables) == 3
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"] == {
            "SSEEnabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
        }
        assert props["KeySchema"] == [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ]
        assert {a["AttributeType"] for a in props["AttributeDefinitions"]} == {"S"}
        assert props["DeletionProtectionEnabled"] is True
        assert table["DeletionPolicy"] == "Retain"


def test_topic_is_encrypted_with_the_customer_key_and_refuses_publishing_without_tls(
    dev: dict[str, Any], key_id: str
) -> None:
    template = Template.from_json(dev)
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}})
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "sns:Publish",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_topic_subscribes_the_stage_notification_emails(synthesized: Synthesized) -> None:
    staging = synthesized.stacks["staging"]
    subscriptions = resources(synthesized.template(staging), "AWS::SNS::Subscription")
    assert sorted(s["Properties"]["Endpoint"] for s in subscriptions.values()) == sorted(
        staging.stage.notification_emails
    )
    assert {s["Properties"]["Protocol"] for s in subscriptions.values()} == {"email"}


def test_each_target_is_a_string_parameter_under_the_stage_path_that_reads_back_as_the_target(
    synthesized: Synthesized,
) -> None:
    for stack in synthesized.stacks.values():
        parameters = resources(synthesized.template(stack), "AWS::SSM::Parameter")
        by_name = {p["Properties"]["Name"]: p["Properties"] for p in parameters.values()}
        assert set(by_name) == {f"/warden/{stack.stage.name}/targets/{t.name}" for t in stack.stage.targets}
        for target in stack.stage.targets:
            props = by_name[f"/warden/{stack.stage.name}/targets/{target.name}"]
            assert props["Type"] == "String"
            assert Target.model_validate_json(props["Value"]) == target
            assert '"password"' not in props["Value"].lower()  # no credential (rotation.password_length is none)


def test_the_sample_stages_protect_both_engines(synthesized: Synthesized) -> None:
    for stack in synthesized.stacks.values():
        assert {t.engine.value for t in stack.stage.targets} == {"neo4j", "postgres"}


def test_key_policy_lets_cloudwatch_logs_use_the_key_only_for_this_accounts_log_groups(
    dev: dict[str, Any], key_id: str
) -> None:
    statements = as_list(dev["Resources"][key_id]["Properties"]["KeyPolicy"]["Statement"])
    (logs,) = [s for s in statements if s.get("Sid") == "AllowCloudWatchLogsEncryption"]
    assert logs["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    assert "kms:EncryptionContext:aws:logs:arn" in logs["Condition"]["ArnLike"]
