"""Long jobs on ECS Fargate as synthesized (infra/tasks.py, docs/fargate.md): a stage that can start
tasks (`network:` or `fargate:`) has one arm64 task definition of the Lambda base image whose entry
point is infra/task_bootstrap.py, with the backup function's environment and grants; the Task state
machine runs it with a task token, heartbeat and timeout from its input, and abandons it on any
error; the backup function may start only that machine and stop only its cluster's tasks; nothing
of it grows with the targets; a stage without either has none of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from infra_helpers import Synthesized, as_list, logical_id, policy_statements, references, resources

from infra.assembly import stage_template
from infra.config import ConfigError, parse_stages
from infra.nag import unacknowledged_findings
from infra.stack import WardenStack, build_app
from infra.tasks import ABANDON_TIMEOUT, ENV_TASK_CODE, MACHINE_TIMEOUT, bootstrap_source
from local.aws import render_definition
from warden import names
from warden.config.fargate import FargateSize
from warden.config.network import INTERFACE_ENDPOINTS
from warden.runner import TASK_GROUP_PREFIX

pytestmark = pytest.mark.infra

ACCOUNT = "123456789012"
VPC = "vpc-0f3a9c2e7b1d45a86"
PRIVATE = ["subnet-0a11b22c33d44e55f", "subnet-0b66c77d88e99f001"]  # cdk.json's staging subnets
TASK_SUBNETS = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
TASK_GROUPS = ["sg-0123456789abcdef0"]
CACHED_IMAGE = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/ecr-public/lambda/python:3.12-arm64"


def _targets(count: int) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = [
        {"name": f"db-{i}", "engine": "postgres", "secret_name": f"warden/x/db-{i}"} for i in range(count)]
    targets[0].update(runner="fargate", fargate={"cpu": 2048, "memory_mib": 8192, "ephemeral_gib": 50})
    return targets


# Without a network, the tasks' own subnets, groups, an existing cluster and a pull-through cached
# image; and one network stage twice, with 2 and with 8 targets.
STAGES = {
    "fgonly": {"account": ACCOUNT, "targets": _targets(1), "fargate": {
        "cluster_name": "platform-jobs", "image": CACHED_IMAGE, "subnet_ids": TASK_SUBNETS,
        "security_group_ids": TASK_GROUPS, "assign_public_ip": True}},
    "few": {"account": ACCOUNT, "targets": _targets(2), "network": {"vpc_id": VPC, "subnet_ids": PRIVATE}},
    "many": {"account": ACCOUNT, "targets": _targets(8), "network": {"vpc_id": VPC, "subnet_ids": PRIVATE}},
}


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory, dependency_layer_dir: Path) -> dict[str, Any]:
    outdir = tmp_path_factory.mktemp("cdk.out.tasks")
    app, stacks = build_app({"stages": STAGES}, outdir=str(outdir), dependency_layer_dir=dependency_layer_dir)
    app.synth()  # raises on any unacknowledged cdk-nag finding
    assert unacknowledged_findings(outdir) == []
    return {name: (stack, stage_template(outdir, stack.artifact_id)) for name, stack in stacks.items()}


@pytest.fixture(scope="module")
def staging(synthesized: Synthesized) -> tuple[WardenStack, dict[str, Any]]:
    """cdk.json's staging stage: a network, so tasks in its subnets with the db-clients group."""
    stack = synthesized.stacks["staging"]
    return stack, synthesized.template(stack)


def _lid(stack: Stack, construct: Any) -> str:
    return logical_id(stack, construct) if construct.node.default_child is not None else \
        str(stack.resolve(stack.get_logical_id(construct)))


def _container(stack: WardenStack, template: dict[str, Any]) -> dict[str, Any]:
    assert stack.tasks is not None
    (container,) = template["Resources"][_lid(stack, stack.tasks.task_definition)]["Properties"]["ContainerDefinitions"]
    return dict(container)


def _definition(stack: WardenStack, template: dict[str, Any]) -> dict[str, Any]:
    assert stack.tasks is not None
    return dict(json.loads(render_definition(template, _lid(stack, stack.tasks.state_machine),
                                             lambda i, a: f"<{i}.{a}>" if a else f"<{i}>")))


def _role_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Every statement of the policies attached to the role `role` (a logical id)."""
    return [s for lid, r in resources(template, "AWS::IAM::Policy").items()
            if {"Ref": role} in r["Properties"]["Roles"]
            for s in as_list(r["Properties"]["PolicyDocument"]["Statement"])]


def _backup_env(stack: WardenStack, template: dict[str, Any]) -> dict[str, Any]:
    fn = template["Resources"][logical_id(stack, stack.functions["backup"].function)]
    return dict(fn["Properties"]["Environment"]["Variables"])


# -- the task definition --------------------------------------------------------------------------


def test_one_arm64_task_definition_of_the_lambda_image_runs_the_bootstrap(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    (task_definition,) = resources(template, "AWS::ECS::TaskDefinition").values()
    props = task_definition["Properties"]
    assert props["Family"] == "warden-staging-jobs"
    assert props["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert props["RequiresCompatibilities"] == ["FARGATE"] and props["NetworkMode"] == "awsvpc"
    assert (props["Cpu"], props["Memory"]) == ("1024", "4096")  # each run overrides them
    container = _container(stack, template)
    assert container["Name"] == "job" and container["Essential"] is True
    assert container["Image"] == "public.ecr.aws/lambda/python:3.12-arm64"
    assert container["EntryPoint"] == ["python3", "-c", bootstrap_source()]
    assert container["Command"] == ["--help"]  # each run's command names its job
    assert container["StopTimeout"] == 120  # time to abort the upload and record FAILED on StopTask


def test_the_task_logs_to_an_encrypted_log_group_with_the_stage_retention(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    logging = _container(stack, template)["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    group = template["Resources"][logging["Options"]["awslogs-group"]["Ref"]]["Properties"]
    assert group["RetentionInDays"] == stack.stage.log_retention_days
    assert group["KmsKeyId"] == {"Fn::GetAtt": [logical_id(stack, stack.storage.key), "Arn"]}


def test_the_task_environment_is_the_backup_functions_plus_the_layer_zips(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    container = _container(stack, template)
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    backup = _backup_env(stack, template)
    code = environment.pop(ENV_TASK_CODE)
    assert environment == backup
    assert environment[names.ENV_TASK_CLUSTER] == "warden-staging"
    assert environment[names.ENV_TASK_STATE_MACHINE_ARN] == \
        f"arn:aws:states:eu-west-1:{ACCOUNT}:stateMachine:warden-staging-task"
    assert environment[names.ENV_PG_BIN_DIR] == "/opt/pgtools"  # where the bootstrap unpacks the pgtools layer
    # The zips are the backup function's layers (the same assets: each uploaded once); no two hold the same file
    fn = template["Resources"][logical_id(stack, stack.functions["backup"].function)]["Properties"]
    layer_keys = {template["Resources"][ref["Ref"]]["Properties"]["Content"]["S3Key"] for ref in fn["Layers"]}
    uris = code.split(",")
    assert {uri.rsplit("/", 1)[1] for uri in uris} == layer_keys and len(uris) == 3
    assert all(uri.startswith(f"s3://cdk-hnb659fds-assets-{ACCOUNT}-eu-west-1/") for uri in uris)
    # No secret reaches the task through its definition: credentials come from Secrets Manager at run time
    assert "Secrets" not in container
    assert not [n for n in environment if any(word in n for word in ("SECRET", "PASSWORD", "TOKEN"))]


def test_the_vpc_has_the_endpoints_the_tasks_and_the_abandon_step_need(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    _, template = staging
    names_ = [r["Properties"]["ServiceName"] for r in resources(template, "AWS::EC2::VPCEndpoint").values()]
    # com.amazonaws.<region>.<service> (the gateways' region is a reference)
    services = {("".join(p for p in n["Fn::Join"][1] if isinstance(p, str)) if isinstance(n, dict) else n
                 ).split(".", 3)[3] for n in names_}
    # image pull (ECR API, registry; its layers through the S3 gateway), logs, task tokens, StopTask
    assert {"ecr.api", "ecr.dkr", "s3", "logs", "states", "ecs"} <= services
    assert {"ecr.api", "ecr.dkr", "ecs"} <= set(INTERFACE_ENDPOINTS)


# -- the Task state machine -----------------------------------------------------------------------


def test_the_task_state_machine_runs_the_task_with_a_token_heartbeat_and_timeout_from_its_input(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    assert stack.tasks is not None
    machine = template["Resources"][_lid(stack, stack.tasks.state_machine)]["Properties"]
    assert machine["StateMachineName"] == "warden-staging-task" and machine["StateMachineType"] == "STANDARD"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    definition = _definition(stack, template)
    assert definition["StartAt"] == "RunTask"
    run = definition["States"]["RunTask"]
    assert run["Type"] == "Task" and run["Resource"] == "arn:aws:states:::ecs:runTask.waitForTaskToken"
    assert run["HeartbeatSecondsPath"] == "$.heartbeat_s" and run["TimeoutSecondsPath"] == "$.timeout_s"
    assert "HeartbeatSeconds" not in run and "TimeoutSeconds" not in run
    params = run["Parameters"]
    assert params["Cluster"] == f"<{_lid(stack, stack.tasks.cluster)}.Arn>"
    assert params["TaskDefinition"] == f"<{_lid(stack, stack.tasks.task_definition)}>"
    assert (params["LaunchType"], params["PlatformVersion"]) == ("FARGATE", "LATEST")
    # The Abandon step finds the execution's task by its group
    assert params["Group.$"] == f"States.Format('{TASK_GROUP_PREFIX}{{}}', $$.Execution.Name)"
    overrides = params["Overrides"]
    assert (overrides["Cpu.$"], overrides["Memory.$"]) == ("$.cpu", "$.memory")
    assert overrides["EphemeralStorage"] == {"SizeInGiB.$": "$.ephemeral_gib"}
    (container,) = overrides["ContainerOverrides"]
    assert container["Name"] == "job" and container["Command.$"] == "$.command"
    assert {e["Name"]: e["Value.$"] for e in container["Environment"]} == {
        names.ENV_TASK_TOKEN: "$$.Task.Token", names.ENV_TASK_EXECUTION: "$$.Execution.Name"}
    assert run["Next"] == "Done" and definition["States"]["Done"]["Type"] == "Succeed"


def test_any_error_of_the_run_is_abandoned_through_the_backup_function_then_fails(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    states = _definition(stack, template)["States"]
    (catch,) = states["RunTask"]["Catch"]
    assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Abandon"}
    abandon = states["Abandon"]
    assert abandon["Resource"] == f"<{logical_id(stack, stack.functions['backup'].function)}.Arn>"
    assert abandon["Parameters"] == {"action": "abandon", "target.$": "$.target", "job.$": "$.job",
                                     "execution.$": "$$.Execution.Name", "error.$": "$.error"}
    assert abandon["TimeoutSeconds"] == ABANDON_TIMEOUT.to_seconds()
    (retry,) = abandon["Retry"]
    assert "Lambda.TooManyRequestsException" in retry["ErrorEquals"] and "States.ALL" not in retry["ErrorEquals"]
    assert abandon["Next"] == "Failed"
    (abandon_catch,) = abandon["Catch"]  # a failed Abandon keeps the run's error for Failed
    assert abandon_catch["Next"] == "AbandonFailed" and abandon_catch["ResultPath"] != "$.error"
    failed = states["Failed"]
    # the run's error as Abandon names it: a Fail state may not end with a States.* error
    assert (failed["Type"], failed["ErrorPath"], failed["CausePath"]) == ("Fail", "$.abandon.error_name",
                                                                          "$.error.Cause")
    assert (states["AbandonFailed"]["Type"], states["AbandonFailed"]["Error"]) == ("Fail", "AbandonFailed")
    assert set(states) == {"RunTask", "Done", "Abandon", "Failed", "AbandonFailed"}


def test_the_task_machine_outlives_the_longest_run_a_target_may_ask_for(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    longest = FargateSize(timeout_hours=48).timeout_s
    with pytest.raises(ValueError, match="timeout_hours"):
        FargateSize(timeout_hours=48.5)  # nothing longer is accepted
    timeout = _definition(stack, template)["TimeoutSeconds"]
    assert timeout == MACHINE_TIMEOUT.to_seconds() >= longest + 4 * ABANDON_TIMEOUT.to_seconds()


def test_a_network_stage_runs_its_tasks_in_the_database_subnets_with_the_db_clients_group(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    assert stack.network is not None
    network = _definition(stack, template)["States"]["RunTask"]["Parameters"]["NetworkConfiguration"]
    group = _lid(stack, stack.network.security_group)
    assert network == {"AwsvpcConfiguration": {"Subnets": PRIVATE, "SecurityGroups": [f"<{group}.GroupId>"],
                                               "AssignPublicIp": "DISABLED"}}
    # The cluster Warden made for the stage has Container Insights on
    (cluster,) = resources(template, "AWS::ECS::Cluster").values()
    assert cluster["Properties"]["ClusterName"] == "warden-staging"
    assert cluster["Properties"]["ClusterSettings"] == [{"Name": "containerInsights", "Value": "enabled"}]


def test_the_task_machine_may_run_only_the_task_definition_and_pass_only_its_roles(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    tasks = stack.tasks
    assert tasks is not None
    statements = _role_statements(template, _lid(stack, tasks.state_machine.role))
    by_action = {a: s for s in statements for a in as_list(s["Action"])}
    run = by_action["ecs:RunTask"]
    assert run["Resource"] == {"Ref": _lid(stack, tasks.task_definition)}
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [_lid(stack, tasks.cluster), "Arn"]}}}
    passed = by_action["iam:PassRole"]
    assert sorted(r["Fn::GetAtt"][0] for r in as_list(passed["Resource"])) == sorted(
        [_lid(stack, tasks.task_role), _lid(stack, tasks.execution_role)])
    assert passed["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    backup = logical_id(stack, stack.functions["backup"].function)
    assert all(references(r, backup) for r in as_list(by_action["lambda:InvokeFunction"]["Resource"]))
    assert not [a for a in by_action if a.startswith("ecs:") and a != "ecs:RunTask"]


# -- roles ----------------------------------------------------------------------------------------


def test_the_task_role_holds_the_backup_functions_grants_and_only_named_actions(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    tasks = stack.tasks
    assert tasks is not None
    task_role, backup_role = _lid(stack, tasks.task_role), logical_id(stack, stack.functions["backup"].role)
    assumed = template["Resources"][task_role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in assumed] == [{"Service": "ecs-tasks.amazonaws.com"}]
    assert assumed[0]["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    # The backup function's own grant policy is attached to both roles
    shared = [lid for lid, r in resources(template, "AWS::IAM::Policy").items()
              if {"Ref": task_role} in r["Properties"]["Roles"] and {"Ref": backup_role} in r["Properties"]["Roles"]]
    assert len(shared) == 1 and shared[0].startswith("BackupRoleDefaultPolicy")
    statements = _role_statements(template, task_role)
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert not [a for a in actions if "*" in a]
    assert {"dynamodb:PutItem", "s3:PutObject", "secretsmanager:GetSecretValue", "kms:GenerateDataKey"} <= actions
    # A task starts no task runs and stops no tasks; it reports its own run
    assert not [a for a in actions if a.startswith(("ecs:", "iam:", "lambda:")) or a == "states:StartExecution"]
    by_action = {a: s for s in statements for a in as_list(s["Action"])}
    for action in ("states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"):
        # the Task state machine's runs, and the Recovery one's restore and validation (its Fargate states)
        assert sorted(as_list(by_action[action]["Resource"])) == [
            f"arn:aws:states:eu-west-1:{ACCOUNT}:stateMachine:warden-staging-{machine}"
            for machine in ("recovery", "task")]
    metrics = by_action["cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Warden"}}
    # the layer zips (the recovery steps also read backups: tests/infra/test_recovery_fargate_template.py)
    code = [r for s in statements if "s3:GetObject" in as_list(s["Action"]) for r in as_list(s["Resource"])
            if "cdk-hnb659fds-assets-" in json.dumps(r)]
    assert len(code) == 3 and all(r.startswith("arn:aws:s3:::cdk-hnb659fds-assets-") and r.endswith(".zip")
                                  for r in code)


def test_the_task_role_may_write_backups_past_the_bucket_policy(staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    assert stack.tasks is not None
    (deny,) = [s for _, s in policy_statements(template) if s.get("Sid") == "DenyObjectWritesExceptBackupWriters"]
    exempt = {ref["Fn::GetAtt"][0] for ref in deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]}
    assert _lid(stack, stack.tasks.task_role) in exempt
    assert logical_id(stack, stack.functions["backup"].role) in exempt


def test_the_backup_function_starts_only_the_task_machine_and_stops_only_its_clusters_tasks(
        staging: tuple[WardenStack, dict[str, Any]]) -> None:
    stack, template = staging
    tasks = stack.tasks
    assert tasks is not None
    statements = _role_statements(template, logical_id(stack, stack.functions["backup"].role))
    start = [s for s in statements if "states:StartExecution" in as_list(s["Action"])]
    assert [s["Resource"] for s in start] == [{"Ref": _lid(stack, tasks.state_machine)}]
    on_cluster = {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [_lid(stack, tasks.cluster), "Arn"]}}}
    ecs = [s for s in statements if any(a.startswith("ecs:") for a in as_list(s["Action"]))]
    assert {a for s in ecs for a in as_list(s["Action"])} == {"ecs:ListTasks", "ecs:DescribeTasks", "ecs:StopTask"}
    for statement in ecs:
        assert statement["Condition"] == on_cluster
        if "ecs:StopTask" in as_list(statement["Action"]):
            assert statement["Resource"] == f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task/warden-staging/*"
    assert not [s for s in statements if "iam:PassRole" in as_list(s["Action"])]


# -- stages without a network, and size -----------------------------------------------------------


def test_a_stage_without_network_or_fargate_has_no_tasks(synthesized: Synthesized, dev: dict[str, Any]) -> None:
    stack = synthesized.stacks["dev"]
    assert stack.tasks is None and "task" not in stack.state_machines
    assert not [r for r in dev["Resources"].values() if r["Type"].startswith("AWS::ECS::")]
    assert not [r for r in resources(dev, "AWS::StepFunctions::StateMachine").values()
                if r["Properties"].get("StateMachineName") == "warden-dev-task"]
    assert not {names.ENV_TASK_STATE_MACHINE_ARN, names.ENV_TASK_CLUSTER} & set(_backup_env(stack, dev))
    for _, statement in policy_statements(dev):
        assert not [a for a in as_list(statement.get("Action", [])) if a.startswith("ecs:")]


def test_a_fargate_block_without_network_places_the_tasks_in_its_subnets_cluster_and_image(
        variants: dict[str, Any]) -> None:
    stack, template = variants["fgonly"]
    assert stack.tasks is not None and stack.tasks.cluster is None
    assert not resources(template, "AWS::ECS::Cluster")  # the existing one
    assert not resources(template, "AWS::EC2::SecurityGroup") and not resources(template, "AWS::EC2::VPCEndpoint")
    params = _definition(stack, template)["States"]["RunTask"]["Parameters"]
    assert params["Cluster"] == f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/platform-jobs"
    assert params["NetworkConfiguration"] == {"AwsvpcConfiguration": {
        "Subnets": TASK_SUBNETS, "SecurityGroups": TASK_GROUPS, "AssignPublicIp": "ENABLED"}}
    assert _backup_env(stack, template)[names.ENV_TASK_CLUSTER] == "platform-jobs"
    # The pull-through cached image: the execution role may pull that repository (and import it upstream)
    container = _container(stack, template)
    assert json.dumps(container["Image"]).count("ecr-public/lambda/python") == 1
    repository = f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/ecr-public/lambda/python"
    statements = _role_statements(template, _lid(stack, stack.tasks.execution_role))
    pulls = {a: s["Resource"] for s in statements for a in as_list(s["Action"])}
    assert pulls["ecr:BatchGetImage"] == repository and pulls["ecr:BatchImportUpstreamImage"] == repository
    assert pulls["ecr:GetAuthorizationToken"] == "*"


def test_nothing_of_the_tasks_grows_with_the_targets(variants: dict[str, Any]) -> None:
    def task_resources(name: str) -> list[str]:
        _, template = variants[name]
        return sorted(r["Type"] for lid, r in template["Resources"].items() if lid.startswith("Tasks"))

    assert task_resources("few") == task_resources("many")
    assert task_resources("few").count("AWS::ECS::TaskDefinition") == 1
    assert task_resources("few").count("AWS::StepFunctions::StateMachine") == 1


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize("fargate, message", [
    ({}, r"fargate\.subnet_ids: a stage without `network:` must name the subnets"),
    ({"subnet_ids": TASK_SUBNETS}, r"fargate\.security_group_ids: a stage without `network:` must name"),
    ({"subnet_ids": ["subnet-1"], "security_group_ids": TASK_GROUPS}, r"fargate\.subnet_ids\[0\]: String should match"),
    ({"subnet_ids": TASK_SUBNETS * 2, "security_group_ids": TASK_GROUPS}, r"fargate\.subnet_ids: .*repeats"),
    ({"subnet_ids": TASK_SUBNETS, "security_group_ids": TASK_GROUPS, "cluster_name": "a/b"},
     r"fargate\.cluster_name: String should match"),
    ({"subnet_ids": TASK_SUBNETS, "security_group_ids": TASK_GROUPS, "image": "two words"},
     r"fargate\.image: String should match"),
], ids=["no subnets", "no groups", "subnet id shape", "repeated subnet", "cluster name", "image"])
def test_a_fargate_block_that_cannot_place_tasks_is_refused_naming_the_field(fargate: dict[str, Any],
                                                                            message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_stages({"x": {"account": ACCOUNT, "fargate": fargate}})


def test_runner_fargate_needs_a_stage_that_can_start_tasks() -> None:
    with pytest.raises(ConfigError, match=r"targets \['db-0'\] have runner fargate, but the stage cannot start tasks"):
        parse_stages({"x": {"targets": _targets(1)}})
    (stage,) = parse_stages({"x": {"targets": [{**_targets(1)[0], "runner": "auto"}]}}).values()
    assert not stage.can_start_tasks  # auto: Lambda only
