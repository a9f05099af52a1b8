"""Every Lambda is made one way, and every function's role holds only named actions."""

from __future__ import annotations

from typing import Any

import pytest
from infra_helpers import Synthesized, as_list, logical_id, policy_statements, references, resources

pytestmark = pytest.mark.infra


def test_every_lambda_is_python312_arm64_traced_with_json_logs(synthesized: Synthesized) -> None:
    seen = 0
    for stack in synthesized.all_stacks:
        for lid, fn in resources(synthesized.template(stack), "AWS::Lambda::Function").items():
            props = fn["Properties"]
            assert props["Runtime"] == "python3.12", lid
            assert props["Architectures"] == ["arm64"], lid
            assert props["TracingConfig"] == {"Mode": "Active"}, lid
            assert props["LoggingConfig"]["LogFormat"] == "JSON", lid
            assert "LogGroup" in props["LoggingConfig"], lid
            assert props["Handler"] == "handler.handler", lid
            assert len(props["Layers"]) >= 2, lid  # the shared two; backup and recovery add pgtools
            seen += 1
    assert seen >= 5  # health in three stages, the smoke and the probe function


def test_every_layer_is_for_python312_on_arm64(synthesized: Synthesized) -> None:
    for stack in synthesized.all_stacks:
        for layer in resources(synthesized.template(stack), "AWS::Lambda::LayerVersion").values():
            assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
            assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_health_function_environment_routes_the_local_runtime_and_names_its_resources(
    synthesized: Synthesized, dev: dict[str, Any]
) -> None:
    stack = synthesized.stacks["dev"]
    fn_id = logical_id(stack, stack.functions["health"].function)
    env = dev["Resources"][fn_id]["Properties"]["Environment"]["Variables"]
    assert env["WARDEN_FUNCTION"] == "health"
    assert env["WARDEN_STAGE"] == "dev"
    assert env["POWERTOOLS_SERVICE_NAME"] == "warden"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Warden"
    assert env["WARDEN_STATE_TABLE"] == {"Ref": logical_id(stack, stack.storage.state)}
    assert env["WARDEN_AUDIT_TABLE"] == {"Ref": logical_id(stack, stack.storage.audit)}
    assert "WARDEN_BUCKET" not in env  # health never touches backups


def test_function_logs_keep_the_stage_retention_and_are_encrypted(synthesized: Synthesized) -> None:
    for stack in synthesized.stacks.values():
        template = synthesized.template(stack)
        fn_id = logical_id(stack, stack.functions["health"].function)
        log_group_ref = template["Resources"][fn_id]["Properties"]["LoggingConfig"]["LogGroup"]
        log_group = template["Resources"][log_group_ref["Ref"]]["Properties"]
        assert log_group["RetentionInDays"] == stack.stage.log_retention_days
        assert log_group["KmsKeyId"] == {"Fn::GetAtt": [logical_id(stack, stack.storage.key), "Arn"]}


def test_every_function_has_a_role_of_its_own(synthesized: Synthesized) -> None:
    for stack in synthesized.all_stacks:
        functions = resources(synthesized.template(stack), "AWS::Lambda::Function").values()
        roles = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions]
        assert len(roles) == len(set(roles))


def test_no_allow_statement_anywhere_has_a_wildcard_action(synthesized: Synthesized) -> None:
    for stack in synthesized.all_stacks:
        template = synthesized.template(stack)
        keys = set(resources(template, "AWS::KMS::Key"))
        for lid, statement in policy_statements(template):
            if statement["Effect"] != "Allow":
                continue  # Deny s3:* without TLS is the point of a TLS-only policy
            if lid in keys and _is_account_root(statement):
                continue  # the default key policy: lets IAM policies govern the key
            for action in as_list(statement.get("Action", [])):
                assert "*" not in action, f"{stack.stack_name}/{lid}: wildcard action {action}"


def test_audit_table_is_append_only_for_every_grant_helper(synthesized: Synthesized) -> None:
    # The probe's function holds every grant helper at once, the stages' health functions theirs.
    checked = 0
    for stack in [*synthesized.stacks.values(), synthesized.probe]:
        template = synthesized.template(stack)
        storage = stack.node.find_child("Storage")
        audit_id = logical_id(stack, storage.audit)
        for _, statement in policy_statements(template):
            if statement["Effect"] == "Allow" and references(statement.get("Resource"), audit_id):
                actions = as_list(statement["Action"])
                if actions == ["dynamodb:PutItem"]:
                    checked += 1
                else:  # the weekly report reads the trail; nothing may change or delete it
                    assert set(actions) <= {"dynamodb:Query", "dynamodb:GetItem"}, statement
    # every function that records operations appends to the audit trail (the licence check, the
    # report and the fleet runs' planner record nothing: each job records its own), and the probe
    # holds every helper
    auditing = [job for stack in synthesized.stacks.values() for job in stack.functions
                if job not in ("license_check", "report", "fleet")]
    assert checked == len(auditing) + 1


def function_statements(synthesized: Synthesized, stack: Any, job: str) -> list[dict[str, Any]]:
    """The statements of the IAM policies attached to one function's own role."""
    template = synthesized.template(stack)
    role_id = logical_id(stack, stack.functions[job].role)
    policies = {lid for lid, r in resources(template, "AWS::IAM::Policy").items()
                if {"Ref": role_id} in r["Properties"].get("Roles", [])}
    return [s for lid, s in policy_statements(template) if lid in policies]


def test_health_reads_only_its_stage_targets_secrets_by_name(synthesized: Synthesized) -> None:
    stack = synthesized.stacks["prod"]
    statements = function_statements(synthesized, stack, "health")
    (secrets,) = [s for s in statements if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    assert as_list(secrets["Action"]) == ["secretsmanager:GetSecretValue"]
    suffixes = sorted(r["Fn::Join"][1][-1] for r in secrets["Resource"])
    assert suffixes == sorted(f":secret:{t.secret_name}-??????" for t in stack.stage.targets)


def test_health_lists_target_configs_by_its_stage_path_only(synthesized: Synthesized) -> None:
    stack = synthesized.stacks["dev"]
    statements = function_statements(synthesized, stack, "health")
    (by_path,) = [s for s in statements if "ssm:GetParametersByPath" in as_list(s["Action"])]
    paths = sorted(r["Fn::Join"][1][-1] for r in by_path["Resource"])
    assert paths == [":parameter/warden/dev/targets", ":parameter/warden/dev/targets/"]


def test_health_reads_single_target_configs_under_its_stage_path_only(synthesized: Synthesized) -> None:
    stack = synthesized.stacks["dev"]
    statements = function_statements(synthesized, stack, "health")
    (single,) = [s for s in statements if "ssm:GetParameter" in as_list(s["Action"])]
    assert sorted(as_list(single["Action"])) == ["ssm:GetParameter", "ssm:GetParameters"]
    # one ARN however many targets (500 names would pass IAM's policy size limit), not above the path
    (resource,) = as_list(single["Resource"])
    assert resource["Fn::Join"][1][-1] == ":parameter/warden/dev/targets/*"


def test_backup_object_grants_name_each_action(synthesized: Synthesized) -> None:
    template = synthesized.template(synthesized.probe)
    iam_policies = resources(template, "AWS::IAM::Policy")
    statements = [s for lid, s in policy_statements(template) if lid in iam_policies]
    s3_actions = {a for s in statements for a in as_list(s["Action"]) if a.startswith("s3:")}
    assert s3_actions == {
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:GetObject",
        "s3:GetObjectAttributes",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "s3:ListBucketMultipartUploads",
        "s3:ListBucketVersions",
        "s3:ListMultipartUploadParts",
        "s3:PutObject",
    }


def _is_account_root(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal", {})
    aws = principal.get("AWS") if isinstance(principal, dict) else None
    return isinstance(aws, (dict, str)) and ":root" in str(aws)  # a token, or literal with a set account
