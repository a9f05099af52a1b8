"""The local runtime's ECS (local/ecs.py): moto's tasks run as child processes that reach moto
through a server on the same backends, and moto's Step Functions interpreter runs
`ecs:runTask.waitForTaskToken` with them. moto only, no database."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local.aws import ACCOUNT, LocalAws
from local.deploy import deploy_template
from local.ecs import register_task_definition

pytestmark = pytest.mark.integration

CLUSTER = "warden-test"
NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-0123456789abcdef0"], "securityGroups": ["sg-0123456789abcdef0"],
                                   "assignPublicIp": "DISABLED"}}

# Sends a heartbeat, then SendTaskSuccess with the value of ECHO and what the task saw of its environment.
CALLS_BACK = """
import json, os, sys, boto3
sfn = boto3.client("stepfunctions")
token = os.environ["WARDEN_TASK_TOKEN"]
sfn.send_task_heartbeat(taskToken=token)
sfn.send_task_success(taskToken=token, output=json.dumps({
    "echo": os.environ["ECHO"], "from_definition": os.environ["FROM_DEFINITION"],
    "python": sys.executable, "endpoint": os.environ["AWS_ENDPOINT_URL"]}))
"""
EXITS_3 = "raise SystemExit(3)\n"
SLEEPS = "import time\nprint('started', flush=True)\ntime.sleep(120)\n"
IGNORES_SIGTERM = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                   "print('started', flush=True)\ntime.sleep(120)\n")
PRINTS_ENV = ("import json, os, sys\n"
              "print(json.dumps({'argv0': sys.executable, 'env': dict(os.environ)}), flush=True)\n")


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[LocalAws]:
    """moto in-process; the tasks' logs under tmp_path."""
    with LocalAws(task_dir=tmp_path / "tasks") as local_aws:
        local_aws.client("ecs").create_cluster(clusterName=CLUSTER)
        yield local_aws


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return str(path)


def _task_definition(aws: LocalAws, command: list[str], environment: dict[str, str] | None = None) -> str:
    """One container `job`, entry point python3 as infra's (its command: the script)."""
    container = {"name": "job", "image": "public.ecr.aws/lambda/python:3.12-arm64", "entryPoint": ["python3"],
                 "command": command, "essential": True,
                 "environment": [{"name": k, "value": v} for k, v in (environment or {}).items()]}
    return register_task_definition(aws.client("ecs"), "warden-test-jobs", [container], cpu="1024", memory="2048",
                                    requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                                    runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"})


def _task_machine(aws: LocalAws, task_definition: str, catch: list[str] | None = None) -> str:
    """The shape of `warden-<stage>-task`: RunTask with the token, sized and timed from the input."""
    run_task: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::ecs:runTask.waitForTaskToken",
        "HeartbeatSecondsPath": "$.heartbeat_s",
        "TimeoutSecondsPath": "$.timeout_s",
        "Parameters": {
            "Cluster": CLUSTER,
            "TaskDefinition": task_definition,
            "LaunchType": "FARGATE",
            "Group.$": "States.Format('warden-task:{}', $$.Execution.Name)",
            "NetworkConfiguration": {"AwsvpcConfiguration": {"Subnets": ["subnet-0123456789abcdef0"],
                                                             "SecurityGroups": ["sg-0123456789abcdef0"],
                                                             "AssignPublicIp": "DISABLED"}},
            "Overrides": {
                "Cpu.$": "$.cpu",
                "Memory.$": "$.memory",
                "EphemeralStorage": {"SizeInGiB.$": "$.ephemeral_gib"},
                "ContainerOverrides": [{
                    "Name": "job",
                    "Command.$": "$.command",
                    "Environment": [{"Name": "WARDEN_TASK_TOKEN", "Value.$": "$$.Task.Token"},
                                    {"Name": "ECHO", "Value.$": "$.echo"}],
                }],
            },
        },
        "End": True,
    }
    states: dict[str, Any] = {"RunTask": run_task}
    if catch:
        run_task["Catch"] = [{"ErrorEquals": catch, "ResultPath": "$.error", "Next": "Abandon"}]
        states["Abandon"] = {"Type": "Pass", "End": True}
    definition = {"StartAt": "RunTask", "States": states}
    return str(aws.client("stepfunctions").create_state_machine(
        name=f"warden-test-task-{len(catch or [])}", definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/warden-test-task")["stateMachineArn"])


def _run(aws: LocalAws, machine: str, command: list[str], *, heartbeat_s: int, timeout_s: int = 120,
         name: str = "run-1") -> dict[str, Any]:
    sfn = aws.client("stepfunctions")
    execution = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps({
        "job": "backup", "target": "pg-x", "command": command, "cpu": "2048", "memory": "4096", "ephemeral_gib": 30,
        "heartbeat_s": heartbeat_s, "timeout_s": timeout_s, "echo": "hello from the input"}))["executionArn"]
    deadline = time.monotonic() + timeout_s + 30
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return dict(described)
        time.sleep(0.2)
    raise AssertionError(f"execution {execution} still running")


def _only_task(aws: LocalAws) -> dict[str, Any]:
    ecs = aws.client("ecs")
    arns = ecs.list_tasks(cluster=CLUSTER)["taskArns"]
    assert len(arns) == 1, arns
    return dict(ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"][0])


def _wait_stopped(aws: LocalAws, task_arn: str, timeout_s: float = 30) -> dict[str, Any]:
    ecs = aws.client("ecs")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task = ecs.describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"][0]
        if task["lastStatus"] == "STOPPED":
            return dict(task)
        time.sleep(0.1)
    raise AssertionError(f"task {task_arn} did not stop")


def _wait_log(aws: LocalAws, task_arn: str, text: str, timeout_s: float = 30) -> None:
    path = aws.tasks.log_path(task_arn)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the log of {task_arn}: {path.read_text() if path.exists() else '(none)'}")


def _run_task(aws: LocalAws, task_definition: str, **overrides: Any) -> str:
    return str(aws.client("ecs").run_task(cluster=CLUSTER, taskDefinition=task_definition, launchType="FARGATE",
                                          networkConfiguration=NETWORK, overrides=overrides)["tasks"][0]["taskArn"])


def test_wait_for_task_token_succeeds_with_what_the_task_sends(aws: LocalAws, tmp_path: Path) -> None:
    script = _script(tmp_path, "calls_back", CALLS_BACK)
    # The definition's own command would fail: the execution's command override is what runs.
    definition = _task_definition(aws, ["-c", "raise SystemExit(9)"], {"FROM_DEFINITION": "td", "ECHO": "td"})
    result = _run(aws, _task_machine(aws, definition), [script], heartbeat_s=20, name="backup-pg-x-1")

    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["echo"] == "hello from the input"  # the override's environment wins over the definition's
    assert output["from_definition"] == "td"
    assert output["python"] == sys.executable
    assert output["endpoint"].startswith("http://127.0.0.1:")
    task = _wait_stopped(aws, _only_task(aws)["taskArn"])
    assert task["group"] == "warden-task:backup-pg-x-1"
    assert task["overrides"]["cpu"] == "2048"
    assert task["overrides"]["memory"] == "4096"
    assert task["overrides"]["ephemeralStorage"] == {"sizeInGiB": 30}
    override = task["overrides"]["containerOverrides"][0]
    assert override["command"] == [script]
    assert {e["name"] for e in override["environment"]} == {"WARDEN_TASK_TOKEN", "ECHO"}
    assert task["stopCode"] == "EssentialContainerExited"
    assert task["containers"][0]["exitCode"] == 0


def test_a_task_that_exits_without_calling_back_fails_on_its_heartbeat(aws: LocalAws, tmp_path: Path) -> None:
    """AWS does not fail a waitForTaskToken state when the task exits: the heartbeat does."""
    definition = _task_definition(aws, ["-c", "pass"])
    result = _run(aws, _task_machine(aws, definition), [_script(tmp_path, "exits", EXITS_3)], heartbeat_s=2)

    assert result["status"] == "FAILED", result
    assert result["error"] == "States.HeartbeatTimeout"
    task = _only_task(aws)
    assert task["lastStatus"] == "STOPPED"
    assert task["desiredStatus"] == "STOPPED"
    assert task["stopCode"] == "EssentialContainerExited"
    assert task["containers"][0]["exitCode"] == 3
    assert task["containers"][0]["lastStatus"] == "STOPPED"


def test_a_heartbeat_timeout_is_caught_as_states_timeout_too(aws: LocalAws, tmp_path: Path) -> None:
    definition = _task_definition(aws, ["-c", "pass"])
    machine = _task_machine(aws, definition, catch=["States.Timeout"])
    result = _run(aws, machine, [_script(tmp_path, "exits", EXITS_3)], heartbeat_s=2)

    assert result["status"] == "SUCCEEDED", result  # through Abandon
    assert json.loads(result["output"])["error"]["Error"] == "States.HeartbeatTimeout"


def test_a_callback_before_the_interpreter_waits_is_not_lost(aws: LocalAws, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The task heartbeats and succeeds before the interpreter has started waiting for its token."""
    from moto.ecs.models import EC2ContainerServiceBackend

    describe = EC2ContainerServiceBackend.describe_tasks

    def describe_after_exit(self: Any, cluster_str: str, tasks: list[str]) -> Any:
        # The interpreter describes the task it started, then waits: hold it until the task is done.
        for task in tasks:
            running = aws.tasks._running.get(task)
            if running is not None:
                running.process.wait(timeout=60)
        return describe(self, cluster_str, tasks)

    monkeypatch.setattr(EC2ContainerServiceBackend, "describe_tasks", describe_after_exit)
    definition = _task_definition(aws, ["-c", "pass"], {"FROM_DEFINITION": "td"})
    result = _run(aws, _task_machine(aws, definition), [_script(tmp_path, "calls_back", CALLS_BACK)], heartbeat_s=5)

    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"])["echo"] == "hello from the input"
    assert _only_task(aws)["containers"][0]["exitCode"] == 0


def test_stop_task_terminates_the_process(aws: LocalAws, tmp_path: Path) -> None:
    task_arn = _run_task(aws, _task_definition(aws, [_script(tmp_path, "sleeps", SLEEPS)]))
    _wait_log(aws, task_arn, "started")
    ecs = aws.client("ecs")
    assert ecs.describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"][0]["lastStatus"] == "RUNNING"

    stopped = ecs.stop_task(cluster=CLUSTER, task=task_arn, reason="abandoned: heartbeat timeout")["task"]
    assert stopped["desiredStatus"] == "STOPPED"
    task = _wait_stopped(aws, task_arn)
    assert task["stopCode"] == "UserInitiated"
    assert task["stoppedReason"] == "abandoned: heartbeat timeout"
    assert task["containers"][0]["exitCode"] == 143  # SIGTERM, as Docker reports it


def test_stop_task_kills_a_task_that_ignores_sigterm(aws: LocalAws, tmp_path: Path) -> None:
    aws.tasks.grace_s = 1.0
    task_arn = _run_task(aws, _task_definition(aws, [_script(tmp_path, "ignores", IGNORES_SIGTERM)]))
    _wait_log(aws, task_arn, "started")
    aws.client("ecs").stop_task(cluster=CLUSTER, task=task_arn, reason="stop")

    task = _wait_stopped(aws, task_arn, timeout_s=15)
    assert task["containers"][0]["exitCode"] == 137  # SIGKILL after the grace period


def test_a_task_runs_with_the_definition_and_override_environment(aws: LocalAws, tmp_path: Path) -> None:
    definition = _task_definition(aws, [_script(tmp_path, "env", PRINTS_ENV)],
                                  {"WARDEN_STAGE": "test", "WARDEN_SHARED": "definition"})
    task_arn = _run_task(aws, definition, containerOverrides=[{"name": "job", "environment": [
        {"name": "WARDEN_TASK_TOKEN", "value": "token-1"}, {"name": "WARDEN_SHARED", "value": "override"}]}])

    assert _wait_stopped(aws, task_arn)["containers"][0]["exitCode"] == 0
    seen = json.loads(aws.tasks.log_path(task_arn).read_text())
    env = seen["env"]
    assert seen["argv0"] == sys.executable
    assert env["WARDEN_STAGE"] == "test"
    assert env["WARDEN_TASK_TOKEN"] == "token-1"
    assert env["WARDEN_SHARED"] == "override"
    assert env["AWS_ENDPOINT_URL"] == aws.tasks.endpoint()
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "eu-west-1"


def test_a_fargate_task_needs_a_network_configuration(aws: LocalAws) -> None:
    with pytest.raises(ClientError, match="Network Configuration must be provided"):
        aws.client("ecs").run_task(cluster=CLUSTER, taskDefinition=_task_definition(aws, ["-c", "pass"]),
                                   launchType="FARGATE")


def test_a_task_that_cannot_start_stops_at_once(aws: LocalAws) -> None:
    container = {"name": "job", "image": "x", "entryPoint": ["/nonexistent/warden-entry"]}
    definition = register_task_definition(aws.client("ecs"), "warden-test-broken", [container], cpu="256",
                                          memory="512")
    task = _wait_stopped(aws, _run_task(aws, definition))
    assert task["stopCode"] == "TaskFailedToStart"
    assert "CannotStartContainerError" in task["stoppedReason"]


def test_tasks_reach_the_server_in_server_mode(tmp_path: Path) -> None:
    with LocalAws(server=True, task_dir=tmp_path / "tasks") as aws:
        aws.client("ecs").create_cluster(clusterName=CLUSTER)
        definition = _task_definition(aws, ["-c", "pass"], {"FROM_DEFINITION": "td"})
        result = _run(aws, _task_machine(aws, definition), [_script(tmp_path, "calls_back", CALLS_BACK)],
                      heartbeat_s=20)

        assert result["status"] == "SUCCEEDED", result
        assert json.loads(result["output"])["endpoint"] == aws.endpoint_url


def test_deploy_creates_the_cluster_and_task_definition_state_machines_point_at() -> None:
    template = {"Resources": {
        "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {}},
        "Jobs": {"Type": "AWS::ECS::TaskDefinition", "Properties": {
            "Family": "warden-test-jobs", "Cpu": "1024", "Memory": "4096", "NetworkMode": "awsvpc",
            "RequiresCompatibilities": ["FARGATE"],
            "RuntimePlatform": {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"},
            "TaskRoleArn": {"Fn::GetAtt": ["TaskRole", "Arn"]},
            "ContainerDefinitions": [{
                "Name": "job", "Image": "public.ecr.aws/lambda/python:3.12-arm64", "Essential": True,
                "EntryPoint": ["python3", "-c", "print('bootstrap')"], "Command": ["backup"],
                "Environment": [{"Name": "WARDEN_STAGE", "Value": "test"},
                                {"Name": "WARDEN_CLUSTER", "Value": {"Ref": "Cluster"}}],
            }],
        }},
        "TaskRole": {"Type": "AWS::IAM::Role", "Properties": {}},
        "Task": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "DefinitionString": {"Fn::Join": ["", [
                '{"StartAt":"R","States":{"R":{"Type":"Task","Resource":"arn:aws:states:::ecs:runTask.waitForTaskToken",'
                '"HeartbeatSeconds":5,"TimeoutSeconds":10,"Parameters":{"Cluster":"',
                {"Fn::GetAtt": ["Cluster", "Arn"]},
                '","TaskDefinition":"', {"Ref": "Jobs"}, '","LaunchType":"FARGATE"},"End":true}}}']]},
        }},
    }}
    with LocalAws() as aws:
        deployment = deploy_template(aws, template, "test", extra_environment={"WARDEN_PG_BIN_DIR": "/pg"})
        ecs = aws.client("ecs")

        cluster_name = deployment.refs["Cluster"]
        assert ecs.describe_clusters(clusters=[cluster_name])["clusters"][0]["clusterArn"] == \
            deployment.attrs[("Cluster", "Arn")]
        arn = deployment.refs["Jobs"]
        assert arn == deployment.attrs[("Jobs", "TaskDefinitionArn")]
        described = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        assert described["family"] == "warden-test-jobs"
        assert (described["cpu"], described["memory"]) == ("1024", "4096")
        assert described["runtimePlatform"] == {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}
        container = described["containerDefinitions"][0]
        assert container["entryPoint"] == ["python3", "-c", "print('bootstrap')"]
        assert container["command"] == ["backup"]
        assert {e["name"]: e["value"] for e in container["environment"]} == {
            "WARDEN_STAGE": "test", "WARDEN_CLUSTER": cluster_name, "WARDEN_PG_BIN_DIR": "/pg"}
        definition = aws.client("stepfunctions").describe_state_machine(
            stateMachineArn=deployment.state_machine_arn("Task"))["definition"]
        parameters = json.loads(definition)["States"]["R"]["Parameters"]
        assert parameters["TaskDefinition"] == arn
        assert parameters["Cluster"] == deployment.attrs[("Cluster", "Arn")]
