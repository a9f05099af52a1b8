"""ECS for the local runtime: moto's tasks run for real, as child processes of this one.

moto holds clusters, task definitions and tasks, but a task it "runs" is only a record whose status
advances on each DescribeTasks. `patch_ecs` makes `RunTask` start, for each task, the container's
entry point and command as a child process:

- argv: the container's `entryPoint` + `command` (the `containerOverrides` command when given); a
  leading `python3` / `python` is this venv's interpreter, so the task runs the library of this
  checkout (as the local Lambda functions do), not downloaded layers.
- environment: this process's, the container definition's `environment`, the overrides'
  `environment`, then `AWS_ENDPOINT_URL` (a moto server with the same backends as this process),
  `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` "testing", `AWS_REGION` / `AWS_DEFAULT_REGION`.
- stdout and stderr: one log file per task, `<log dir>/<task id>.log` (`TaskRunner.log_path`); the
  working directory is `<log dir>/<task id>/`, the task's scratch space.

The task's status follows the process, not moto's managed state: RUNNING while it lives; when it
exits (the essential container exited) DescribeTasks reports lastStatus / desiredStatus STOPPED,
stopCode `EssentialContainerExited` and `containers[0].exitCode` (a process killed by signal N
reports 128 + N, as Docker does). StopTask answers as ECS does (desiredStatus STOPPED, stopCode
`UserInitiated`, the reason) and sends SIGTERM to the task's main process, SIGKILL to all its
processes after a grace period; DescribeTasks shows STOPPED once the process is gone. When the main
process exits, what it left behind in its process group is killed (the container is gone). A
task whose command cannot start (no such executable) stops at once with stopCode
`TaskFailedToStart`, as ECS reports CannotStartContainerError; RunTask itself succeeds.

Network: locally a task is a process on this machine, with this machine's network. The task
definitions are registered with networkMode `host` and EC2 compatibility (`register_task_definition`,
local/deploy.py uses it): moto makes any Fargate-compatible definition `awsvpc` and then creates an
ENI per task in the RunTask's first subnet, which must exist in moto's EC2, while the stage's
subnets exist only in the real account (and moto cannot create a subnet with a given id). RunTask
with launchType FARGATE still needs a NetworkConfiguration, as in AWS (checked here); its content
is not used.

Step Functions: moto's interpreter runs `arn:aws:states:::ecs:runTask.waitForTaskToken` but
sends the state's parameters to boto3 as written (`Cluster`, `TaskDefinition`, ...), which fails;
`patch_ecs` gives the ECS integration the request / response normalisation of the other
services (the state's PascalCase parameters → RunTask's members, the response → PascalCase, as
Step Functions returns it). A missed heartbeat fails the state with `States.HeartbeatTimeout`
(moto says States.Timeout), which a Catch / Retry on States.HeartbeatTimeout, States.Timeout or
States.ALL matches, as in AWS. And it closes two gaps of moto's waitForTaskToken with
HeartbeatSeconds: a SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat that arrives between
RunTask and the moment the interpreter starts waiting was lost (the state then timed out) or
rejected (InvalidToken); and AWS accepts SendTaskHeartbeat for a state without HeartbeatSeconds.
As in AWS, a task that exits does not end its waitForTaskToken state: its callback, the heartbeat
or the timeout does.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
STOP_GRACE_S = 10.0  # ECS's default stopTimeout for Fargate tasks is 30 s; locally shorter
LOCAL_NETWORK_MODE = "host"


@dataclass
class _Running:
    task: Any
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_requested: bool = False


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _environment_list(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {item["name"]: str(item.get("value", "")) for item in items or []}


class TaskRunner:
    """Runs moto's ECS tasks as child processes; `endpoint` gives the moto server they call."""

    def __init__(self, endpoint: Callable[[], str], region: str, log_dir: Path | None = None,
                 grace_s: float = STOP_GRACE_S) -> None:
        self.endpoint = endpoint
        self.region = region
        self.grace_s = grace_s
        self._log_dir = log_dir
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        # One long-lived thread forks the children: die_with_parent's PR_SET_PDEATHSIG fires when
        # the forking *thread* ends, and RunTask runs on short-lived interpreter / request threads.
        self._launcher: ThreadPoolExecutor | None = None

    @property
    def log_dir(self) -> Path:
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="warden-tasks-"))
        self._log_dir.mkdir(parents=True, exist_ok=True)
        return self._log_dir

    def log_path(self, task: str) -> Path:
        """The log file of a task (its ARN or id)."""
        return self.log_dir / f"{task.rsplit('/', 1)[-1]}.log"

    def command(self, task_definition: Any, overrides: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        """argv and environment of the task's (first, essential) container."""
        container = task_definition.container_definitions[0]
        override: dict[str, Any] = next((o for o in overrides.get("containerOverrides") or []
                                         if o.get("name") == container.get("name")), {})
        argv = list(container.get("entryPoint") or []) + list(override.get("command") or container.get("command") or [])
        if not argv:
            raise ValueError(f"container {container.get('name')} of {task_definition.arn} has no entryPoint or command")
        if argv[0] in ("python3", "python"):
            argv[0] = sys.executable
        env = {
            **os.environ,
            **_environment_list(container.get("environment")),
            **_environment_list(override.get("environment")),
            "AWS_ENDPOINT_URL": self.endpoint(),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }
        return argv, env

    def start(self, task: Any, task_definition: Any) -> None:
        task._transitions = []  # moto's managed state stays where we put it: the status follows the process
        task.started_at = datetime.now(UTC)
        log_path = self.log_path(task.id)
        try:
            argv, env = self.command(task_definition, task.overrides or {})
            workdir = self.log_dir / task.id
            workdir.mkdir(parents=True, exist_ok=True)
            with self._lock:
                if self._launcher is None:
                    self._launcher = ThreadPoolExecutor(1, thread_name_prefix="warden-task-launcher")
                launcher = self._launcher
            process = launcher.submit(self._spawn, argv, env, workdir, log_path).result()
        except (OSError, ValueError) as err:  # as ECS: RunTask succeeds, the task stops at once
            log.warning("ECS task %s (%s) failed to start: %s", task.id, task_definition.family, err)
            task.stop_code = "TaskFailedToStart"
            task.stopped_reason = f"CannotStartContainerError: {err}"
            task.stopped_at = task.stopping_at = datetime.now(UTC)
            task.containers[0].last_status = "STOPPED"
            task.containers[0].exitCode = None
            task.desired_status = task.last_status = "STOPPED"
            return
        task.last_status = "RUNNING"
        task.containers[0].last_status = "RUNNING"
        task.containers[0].exitCode = None
        running = _Running(task=task, process=process, log_path=log_path)
        with self._lock:
            self._running[task.task_arn] = running
        log.info("ECS task %s (%s): pid %d, log %s", task.id, task_definition.family, process.pid, log_path)
        threading.Thread(target=self._watch, args=(running,), name=f"warden-task-{task.id[:8]}",
                         daemon=True).start()

    @staticmethod
    def _spawn(argv: list[str], env: dict[str, str], workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
        from local._proc import die_with_parent

        with log_path.open("ab") as out:
            return subprocess.Popen(
                argv, env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent,  # forked by the one launcher thread
            )

    def _watch(self, running: _Running) -> None:
        returncode = running.process.wait()
        _kill_group(running.process.pid, signal.SIGKILL)  # the container is gone, and its processes with it
        task = running.task
        now = datetime.now(UTC)
        if not running.stop_requested:
            task.stop_code = "EssentialContainerExited"
            task.stopped_reason = "Essential container in task exited"
            task.stopping_at = now
        task.containers[0].exitCode = _exit_code(returncode)
        task.containers[0].last_status = "STOPPED"
        task.execution_stopped_at = now
        task.stopped_at = now
        task.desired_status = "STOPPED"
        task.last_status = "STOPPED"
        log.info("ECS task %s exited with %d (log %s)", task.id, _exit_code(returncode), running.log_path)

    def stop(self, task: Any, reason: str | None) -> bool:
        """StopTask: SIGTERM now, SIGKILL after the grace period. False when it is not ours or gone."""
        running = self._running.get(task.task_arn)
        if running is None or running.process.poll() is not None or running.stop_requested:
            return running is not None
        running.stop_requested = True
        task.desired_status = "STOPPED"
        task.stop_code = "UserInitiated"
        task.stopped_reason = reason or "Task stopped by user"
        task.stopping_at = datetime.now(UTC)
        _terminate(running.process, self.grace_s)
        return True

    def shutdown(self) -> None:
        """Stop every task still running (the local AWS stops) and wait for them."""
        with self._lock:
            running = [r for r in self._running.values() if r.process.poll() is None]
        for r in running:
            self.stop(r.task, "local AWS stopped")
        for r in running:
            try:
                r.process.wait(timeout=self.grace_s + 5)
            except subprocess.TimeoutExpired:
                log.warning("ECS task %s (pid %d) did not stop", r.task.id, r.process.pid)
        if self._launcher is not None:
            self._launcher.shutdown(wait=True)
            self._launcher = None


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _terminate(process: subprocess.Popen[bytes], grace_s: float) -> None:
    try:
        process.send_signal(signal.SIGTERM)  # as `docker stop`: the main process first
    except ProcessLookupError:
        return

    def kill_later() -> None:
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid, signal.SIGKILL)

    threading.Thread(target=kill_later, name=f"warden-task-kill-{process.pid}", daemon=True).start()


def register_task_definition(ecs: Any, family: str, containers: list[dict[str, Any]], **props: Any) -> str:
    """Register a task definition for the local runtime (an ECS client's RegisterTaskDefinition
    arguments): networkMode host and EC2 compatibility, whatever the template says (module doc);
    `requiresCompatibilities` and `networkMode` in `props` are ignored. Returns its ARN."""
    props = {k: v for k, v in props.items() if v is not None and k not in ("requiresCompatibilities", "networkMode")}
    response = ecs.register_task_definition(family=family, containerDefinitions=containers,
                                            networkMode=LOCAL_NETWORK_MODE, requiresCompatibilities=["EC2"],
                                            **props)
    return str(response["taskDefinition"]["taskDefinitionArn"])


def _operation(action: str) -> str:
    """`runTask` / `run_task` → `RunTask`."""
    return "".join(part[:1].upper() + part[1:] for part in action.split("_"))


Patch = tuple[type, str, Any]


def _apply(patches: list[Patch]) -> Callable[[], None]:
    """Set class attributes; returns the undo (an attribute the class only inherited is deleted)."""
    saved = [(cls, name, cls.__dict__.get(name)) for cls, name, _ in patches]
    for cls, name, value in patches:
        setattr(cls, name, value)

    def undo() -> None:
        for cls, name, value in reversed(saved):
            if value is None:
                delattr(cls, name)
            else:
                setattr(cls, name, value)

    return undo


def patch_ecs(runner: TaskRunner) -> Callable[[], None]:
    """Run moto's ECS tasks with `runner` and make moto's Step Functions ECS integration work;
    returns the undo (which also stops the tasks still running).

    moto's ECS and Step Functions modules take seconds to import: each patch is applied when moto
    first looks up that service's backend (every request in-process, the first one per server),
    so a LocalAws that never uses them does not pay for them."""
    import moto.backends as backends

    original_get_backend = backends.get_backend
    builders: dict[str, Callable[[], list[Patch]]] = {"ecs": lambda: _ecs_patches(runner),
                                                      "stepfunctions": _stepfunctions_patches}
    undos: dict[str, Callable[[], None]] = {}
    lock = threading.Lock()

    def get_backend(name: str) -> Any:
        if name in builders and name not in undos:
            with lock:
                if name not in undos:
                    undos[name] = _apply(builders[name]())
        return original_get_backend(name)  # type: ignore[call-overload]

    backends.get_backend = get_backend

    def undo() -> None:
        try:
            runner.shutdown()
        finally:
            backends.get_backend = original_get_backend
            with lock:
                for name in list(undos):
                    undos.pop(name)()

    return undo


def _ecs_patches(runner: TaskRunner) -> list[Patch]:
    """moto's ECS backend: RunTask starts the processes, StopTask stops them."""
    from moto.ecs.exceptions import InvalidParameterException
    from moto.ecs.models import EC2ContainerServiceBackend

    original_run = EC2ContainerServiceBackend.run_task
    original_requirements = EC2ContainerServiceBackend.__dict__["_calculate_task_resource_requirements"]
    original_stop = EC2ContainerServiceBackend.stop_task
    run_signature = inspect.signature(original_run)

    def run_task(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        call = run_signature.bind(self, *args, **kwargs)
        call.apply_defaults()
        if call.arguments["launch_type"] == "FARGATE" and not call.arguments["networking_configuration"]:
            raise InvalidParameterException(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.")
        tasks: list[Any] = original_run(self, *args, **kwargs)
        for task in tasks:
            runner.start(task, self.describe_task_definition(task.task_definition_arn))
        return tasks

    def stop_task(self: Any, cluster_str: str, task_str: str, reason: str) -> Any:
        cluster = self._get_cluster(cluster_str)
        task_id = task_str.split("/")[-1]
        task = next((t for arn, t in self.tasks.get(cluster.name, {}).items() if arn.endswith(task_id)), None)
        if task is not None and runner.stop(task, reason):
            return task
        return original_stop(self, cluster_str, task_str, reason)

    def requirements(task_definition: Any) -> dict[str, Any]:
        # moto adds up the containers' memory and fails on one without (Fargate sizes the task).
        containers = [{**c, "memory": c.get("memory") or c.get("memoryReservation") or 0}
                      for c in task_definition.container_definitions]
        return dict(original_requirements.__func__(SimpleNamespace(container_definitions=containers)))

    return [
        (EC2ContainerServiceBackend, "run_task", run_task),
        (EC2ContainerServiceBackend, "stop_task", stop_task),
        (EC2ContainerServiceBackend, "_calculate_task_resource_requirements", staticmethod(requirements)),
    ]


def _stepfunctions_patches() -> list[Patch]:
    """moto's Step Functions interpreter: the ECS integration's request / response normalisation,
    States.HeartbeatTimeout, and callbacks that come before the interpreter waits."""
    import botocore.session
    from moto.stepfunctions.parser.api import HistoryEventType, TaskTimedOutEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (
        StateTaskServiceEcs,
    )
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint, HeartbeatTimeoutError
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original_setup_heartbeat = CallbackEndpoint.setup_heartbeat_endpoint
    original_notify_heartbeat = CallbackEndpoint.notify_heartbeat
    original_from_error = StateTaskServiceEcs._from_error
    ecs_model = botocore.session.get_session().get_service_model("ecs")

    def normalise_parameters(self: Any, parameters: dict[str, Any], boto_service_name: str | None = None,
                             service_action_name: str | None = None) -> None:
        shape = ecs_model.operation_model(_operation(service_action_name or self.resource.api_action)).input_shape
        if shape is not None:
            self._to_boto_request(parameters, shape)

    def normalise_response(self: Any, response: Any, boto_service_name: str | None = None,
                           service_action_name: str | None = None) -> None:
        shape = ecs_model.operation_model(_operation(service_action_name or self.resource.api_action)).output_shape
        if shape is not None:
            self._from_boto_response(response, shape)

    class HeartbeatTimeoutName(StatesErrorName):
        """States.HeartbeatTimeout, which a Catch / Retry on States.Timeout also matches, as in AWS."""

        def __init__(self) -> None:
            super().__init__(typ=StatesErrorNameType.StatesHeartbeatTimeout)

        def matches(self, error_name: str | None) -> bool:
            return error_name in (self.error_name, StatesErrorNameType.StatesTimeout.to_name())

    def from_error(self: Any, env: Any, ex: Exception) -> Any:
        if isinstance(ex, HeartbeatTimeoutError):  # moto reports it as States.Timeout
            name = StatesErrorNameType.StatesHeartbeatTimeout.to_name()
            return FailureEvent(
                env=env, error_name=HeartbeatTimeoutName(), event_type=HistoryEventType.TaskTimedOut,
                event_details=EventDetails(taskTimedOutEventDetails=TaskTimedOutEventDetails(  # type: ignore[typeddict-item]
                    resourceType=self._get_sfn_resource_type(), resource=self._get_sfn_resource(), error=name)),
            )
        return original_from_error(self, env, ex)

    def setup_heartbeat_endpoint(self: Any, heartbeat_seconds: int) -> Any:
        endpoint = original_setup_heartbeat(self, heartbeat_seconds)
        if self._outcome is not None or getattr(self, "_warden_early_heartbeat", False):
            endpoint.notify()  # it came before the interpreter waited: not lost
        return endpoint

    def notify_heartbeat(self: Any) -> bool:
        if original_notify_heartbeat(self):
            return True
        self._warden_early_heartbeat = True  # AWS accepts it with or without HeartbeatSeconds
        return True

    return [
        (StateTaskServiceEcs, "_normalise_parameters", normalise_parameters),
        (StateTaskServiceEcs, "_normalise_response", normalise_response),
        (StateTaskServiceEcs, "_from_error", from_error),
        (CallbackEndpoint, "setup_heartbeat_endpoint", setup_heartbeat_endpoint),
        (CallbackEndpoint, "notify_heartbeat", notify_heartbeat),
    ]
