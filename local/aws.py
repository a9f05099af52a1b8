"""AWS for the local runtime: moto, with Lambda invocations dispatched to the real handlers.

Two ways to run it:
- `LocalAws()` in-process (`mock_aws`): for tests; boto3 calls in this process go to moto.
- `LocalAws(server=True)`: a `ThreadedMotoServer` on 127.0.0.1 and a free port, for the demo and
  the CLI; clients reach it through the standard `AWS_ENDPOINT_URL` variable.

Either way Step Functions definitions really execute (moto's interpreter), and every Lambda
invocation — from boto3 or from a state machine's Task — runs the real handler in
`functions/<job>/handler.py`, chosen by the function's `WARDEN_FUNCTION` variable, in this process.
A handler that raises answers like Lambda does: `FunctionError: Unhandled` and a payload with
`errorType` / `errorMessage`, so Step Functions Retry / Catch on error names work as in AWS.
ECS tasks (RunTask, from boto3 or a state machine's `ecs:runTask`) run as child processes
(local/ecs.py), which reach moto through `AWS_ENDPOINT_URL`: the server, or in-process a
ThreadedMotoServer started on the first RunTask, which serves the same backends as the mock.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO / "functions"
REGION = "eu-west-1"
ACCOUNT = "123456789012"

log = logging.getLogger(__name__)

MOTO_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}


@dataclass
class LambdaContext:
    """The fields of Lambda's context object that handlers and Powertools read."""

    function_name: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = ""
    aws_request_id: str = ""
    log_group_name: str = ""
    log_stream_name: str = "local"
    # When the invocation would be stopped (time.monotonic()): now + the function's Timeout, as in Lambda.
    deadline: float = field(default_factory=lambda: time.monotonic() + 900)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class HandlerDispatcher:
    """Routes moto's Lambda invocations to the real handler modules, loaded once per function
    (like one warm execution environment per function)."""

    def __init__(self, functions_dir: Path = FUNCTIONS_DIR) -> None:
        self.functions_dir = functions_dir
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.Lock()
        self.invocations: list[tuple[str, dict[str, Any]]] = []

    def handler_module(self, fn: Any) -> ModuleType:
        """The function's handler module, imported on its first invocation (its cold start) with
        the function's environment variables set, as Lambda does; handlers read settings then."""
        with self._lock:
            if fn.function_arn not in self._modules:
                job = fn.environment_vars.get("WARDEN_FUNCTION")
                if not job:
                    raise LookupError(f"function {fn.function_name} has no WARDEN_FUNCTION variable")
                path = self.functions_dir / job / "handler.py"
                if not path.exists():
                    raise LookupError(f"no handler for function job {job!r} at {path}")
                spec = importlib.util.spec_from_file_location(f"warden_fn_{fn.function_name}", path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                with _environment(fn.environment_vars):
                    spec.loader.exec_module(module)
                self._modules[fn.function_arn] = module
            return self._modules[fn.function_arn]

    def invoke(self, fn: Any, body: Any, response_headers: dict[str, str]) -> bytes:
        event = json.loads(body) if body else {}
        self.invocations.append((fn.function_name, event))
        context = LambdaContext(
            function_name=fn.function_name,
            invoked_function_arn=fn.function_arn,
            aws_request_id=str(uuid.uuid4()),
            memory_limit_in_mb=int(fn.memory_size or 512),
            deadline=time.monotonic() + int(fn.timeout or 3),
        )
        try:
            result = self.handler_module(fn).handler(event, context)
        except Exception as err:
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = {
                "errorType": type(err).__name__,
                "errorMessage": str(err),
                "stackTrace": traceback.format_exception(err)[-5:],
            }
            return json.dumps(payload).encode()
        return json.dumps(result).encode()


@contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _patched_lambda(dispatcher: HandlerDispatcher) -> Iterator[None]:
    from moto.awslambda_simple.models import LambdaSimpleBackend

    original = LambdaSimpleBackend.invoke

    def invoke(self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any,
               response_headers: Any) -> bytes:
        fn = self.get_function(function_name, qualifier)
        return dispatcher.invoke(fn, body, response_headers)

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    try:
        yield
    finally:
        LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]


class LocalAws:
    """moto with the Step Functions interpreter on and Lambda routed to the real handlers."""

    def __init__(self, *, server: bool = False, port: int | None = None, task_dir: Path | None = None) -> None:
        self.server = server
        self.port = port
        self.dispatcher = HandlerDispatcher()
        self.endpoint_url: str | None = None
        self.task_dir = task_dir  # ECS tasks' logs and scratch directories (local.ecs); a temp dir by default
        self.tasks: Any = None  # local.ecs.TaskRunner while started
        self._task_server: Any = None
        self._task_server_lock = threading.Lock()
        self._stack: list[Callable[[], None]] = []
        self._saved_env: dict[str, str | None] = {}

    def start(self) -> LocalAws:
        from moto.core.config import default_user_config

        self._set_env("AWS_DEFAULT_REGION", REGION)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            self._set_env(name, "testing")
        self._set_env("POWERTOOLS_TRACE_DISABLED", "true")
        self._set_env("POWERTOOLS_METRICS_NAMESPACE", "Warden")
        self._set_env("POWERTOOLS_SERVICE_NAME", "warden")
        patch = _patched_lambda(self.dispatcher)
        patch.__enter__()

        def unpatch() -> None:
            patch.__exit__(None, None, None)

        self._stack.append(unpatch)
        from local.secrets_rotation import patch_rotation

        self._stack.append(patch_rotation())  # rotation stops at a failing step, as in AWS
        if self.server:
            from moto.server import ThreadedMotoServer

            from local._proc import free_port

            saved = json.loads(json.dumps(default_user_config))
            for key, value in MOTO_CONFIG.items():
                default_user_config[key].update(value)  # type: ignore[literal-required]
            self._stack.append(lambda: default_user_config.update(saved))
            self.port = self.port or free_port()
            self._set_env("MOTO_PORT", str(self.port))  # where moto's Step Functions interpreter calls back
            moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            moto_server.start()
            self._stack.append(moto_server.stop)
            self.endpoint_url = f"http://127.0.0.1:{self.port}"
            # moto's backends live in this process and outlive a server: start from nothing, end clean.
            self._reset_server()
            self._stack.append(self._reset_server)
            self._set_env("AWS_ENDPOINT_URL", self.endpoint_url)
        else:
            from moto import mock_aws

            mock = mock_aws(config=MOTO_CONFIG)  # type: ignore[call-overload]
            mock.start()
            self._stack.append(mock.stop)
        from local.ecs import TaskRunner, patch_ecs

        # ECS tasks run as child processes (local.ecs); stopped before the server or the mock stops.
        self.tasks = TaskRunner(self._task_endpoint, REGION, self.task_dir)
        self._stack.append(self._stop_task_server)
        self._stack.append(patch_ecs(self.tasks))
        from warden.stores.clients import reset_clients

        reset_clients()
        return self

    def _task_endpoint(self) -> str:
        """Where ECS tasks (child processes) reach AWS. In server mode the server; in-process, a
        ThreadedMotoServer started on the first RunTask: it serves this process's moto backends, the
        ones the in-process mock uses (moto's backends are module state, shared by both)."""
        if self.endpoint_url:
            return self.endpoint_url
        with self._task_server_lock:
            if self._task_server is None:
                from moto.server import ThreadedMotoServer

                from local._proc import free_port

                port = free_port()
                server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
                server.start()
                self._task_server = (server, f"http://127.0.0.1:{port}")
            return str(self._task_server[1])

    def _stop_task_server(self) -> None:
        with self._task_server_lock:
            if self._task_server is not None:
                self._task_server[0].stop()
                self._task_server = None

    def _reset_server(self) -> None:
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - our own loopback server

    def stop(self) -> None:
        while self._stack:
            try:
                self._stack.pop()()
            except Exception:
                log.exception("stopping local AWS")
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def _set_env(self, name: str, value: str) -> None:
        self._saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint_url)


def create_function(aws: LocalAws, name: str, job: str, environment: dict[str, str], *,
                    memory_size: int = 512, timeout: int = 900) -> str:
    """Register a Lambda function in moto whose invocations run `functions/<job>/handler.py`.

    moto needs a code package and a role; neither is used, since the dispatcher runs the handler
    module of this checkout.
    """
    import io
    import zipfile

    iam = aws.client("iam")
    role_name = f"warden-local-{name}"[:64]
    try:
        role_arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                          "Principal": {"Service": "lambda.amazonaws.com"}}]}
        role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
        role_arn = role["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(FUNCTIONS_DIR / job / "handler.py", "handler.py")
    fn = aws.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Architectures=["arm64"],
        Role=role_arn,
        Handler="handler.handler",
        Code={"ZipFile": buf.getvalue()},
        Environment={"Variables": {**environment, "WARDEN_FUNCTION": job}},
        Timeout=timeout,
        MemorySize=memory_size,
    )
    return str(fn["FunctionArn"])


def render_definition(template: dict[str, Any], state_machine_id: str,
                      resolve: Callable[[str, str | None], str]) -> str:
    """The Amazon States Language JSON of a synthesized `AWS::StepFunctions::StateMachine`.

    CDK writes the definition as a string, or an `Fn::Join` of strings and references; `resolve`
    maps each reference (logical id, attribute or None for Ref) to the local resource's value.
    """
    props = template["Resources"][state_machine_id]["Properties"]
    definition = props["DefinitionString"]

    def value(part: Any) -> str:
        if isinstance(part, str):
            return part
        if "Ref" in part:
            return resolve(part["Ref"], None)
        if "Fn::GetAtt" in part:
            logical_id, attribute = part["Fn::GetAtt"]
            return resolve(logical_id, attribute)
        if "Fn::Join" in part:
            sep, parts = part["Fn::Join"]
            return sep.join(value(p) for p in parts)
        raise ValueError(f"unsupported intrinsic in state machine definition: {part}")

    text = value(definition)
    for name, sub in (props.get("DefinitionSubstitutions") or {}).items():
        text = text.replace("${" + name + "}", value(sub))
    json.loads(text)  # a definition that does not parse is a bug here, not in moto
    return text


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}
