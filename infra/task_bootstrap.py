"""The entry point of a Warden ECS task (docs/fargate.md, "The task"). infra/tasks.py puts this
file's text in the container's entryPoint, `python3 -c <text>`, so the command's arguments follow.

WARDEN_TASK_CODE: comma-separated `s3://bucket/key` zips (the Lambda layers the backup function
uses), downloaded and unpacked in order under /opt as Lambda unpacks layers (WARDEN_TASK_CODE_DIR:
somewhere else); unset or empty, nothing is downloaded (the local runtime: its Python has the
library). Then `python -m warden.task <arguments>`. Standard library and the image's boto3 only.
With a task token (WARDEN_TASK_TOKEN), it heartbeats once the code is in place, and a download
that fails tells the Task state machine at once; either way that failure stops the task with a
message saying which zip and why (exit 2).
"""

from __future__ import annotations

import os
import runpy
import sys
import tempfile
import zipfile
from typing import Any

ENV_CODE = "WARDEN_TASK_CODE"
ENV_CODE_DIR = "WARDEN_TASK_CODE_DIR"
ENV_TOKEN = "WARDEN_TASK_TOKEN"  # noqa: S105 - the variable's name
TASK_MODULE = "warden.task"
DEFAULT_CODE_DIR = "/opt"
EXIT_NO_CODE = 2  # as warden.task's "bad arguments or environment (nothing touched)"


class CodeUnavailable(Exception):
    """A zip of WARDEN_TASK_CODE could not be downloaded or unpacked."""


def code_uris(value: str | None) -> list[tuple[str, str]]:
    """The s3:// URIs of WARDEN_TASK_CODE, as (bucket, key), in order."""
    uris = []
    for uri in (part.strip() for part in (value or "").split(",")):
        if not uri:
            continue
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket or not key:
            raise CodeUnavailable(f"{ENV_CODE}: {uri!r} is not s3://bucket/key")
        uris.append((bucket, key))
    return uris


def unpack(archive: str, dest: str) -> None:
    """Unpack one layer zip into `dest`, keeping the files' modes (pg_dump must stay executable)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = zf.extract(info, dest)  # extract() keeps every member inside dest
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)


def install(uris: list[tuple[str, str]], dest: str, s3: Any = None) -> set[str]:
    """Download and unpack every zip into `dest`; the top-level names its python/ holds."""
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    os.makedirs(dest, exist_ok=True)
    for bucket, key in uris:
        with tempfile.TemporaryDirectory() as tmp:
            archive = os.path.join(tmp, "code.zip")
            try:
                s3.download_file(bucket, key, archive)
            except Exception as err:
                raise CodeUnavailable(f"cannot download s3://{bucket}/{key}: {type(err).__name__}: {err}") from err
            try:
                unpack(archive, dest)
            except (OSError, zipfile.BadZipFile) as err:
                raise CodeUnavailable(f"cannot unpack s3://{bucket}/{key} into {dest}: {err}") from err
    python = os.path.join(dest, "python")
    return {name.partition(".")[0] for name in os.listdir(python)} if os.path.isdir(python) else set()


def use_code(dest: str, shadowing: set[str]) -> None:
    """Put the unpacked layers first, as Lambda does: python/ on sys.path (this process and child
    Pythons), bin/ on PATH, lib/ on LD_LIBRARY_PATH (the pgtools layer's libzstd / liblz4, for
    pg_dump). Modules already imported from the image (boto3, to download) that the layers also
    hold are dropped, so warden.task imports the layers' versions."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    paths = [os.path.join(dest, "python"), os.path.join(dest, "python", "lib", version, "site-packages")]
    sys.path[:0] = paths
    for name, value in (("PYTHONPATH", os.pathsep.join(paths)), ("PATH", os.path.join(dest, "bin")),
                        ("LD_LIBRARY_PATH", os.path.join(dest, "lib"))):
        os.environ[name] = os.pathsep.join(p for p in (value, os.environ.get(name, "")) if p)
    for module in [m for m in sys.modules if m.partition(".")[0] in shadowing]:
        del sys.modules[module]
    import importlib

    importlib.invalidate_caches()


def report_started() -> None:
    """SendTaskHeartbeat once the code is in place, when the run has a task token: the image pull
    and the downloads count against the run's HeartbeatSeconds before the job's own heartbeats."""
    token = os.environ.get(ENV_TOKEN)
    if not token:
        return
    try:
        import boto3

        boto3.client("stepfunctions").send_task_heartbeat(taskToken=token)
    except Exception as err:  # the job's own heartbeats follow; the state machine's timeout decides
        print(f"warden task bootstrap: SendTaskHeartbeat failed: {type(err).__name__}: {err}", file=sys.stderr)


def report_failure(message: str) -> None:
    """SendTaskFailure when the run has a task token: the Task state machine need not wait for its
    heartbeat timeout to learn that the task never started its job."""
    token = os.environ.get(ENV_TOKEN)
    if not token:
        return
    try:
        import boto3

        boto3.client("stepfunctions").send_task_failure(taskToken=token, error="TaskCodeUnavailable",
                                                        cause=message[:30000])
    except Exception as err:
        print(f"warden task bootstrap: SendTaskFailure failed: {type(err).__name__}: {err}", file=sys.stderr)


def main(argv: list[str]) -> None:
    try:
        uris = code_uris(os.environ.get(ENV_CODE))
        if uris:
            dest = os.environ.get(ENV_CODE_DIR) or DEFAULT_CODE_DIR
            shadowing = install(uris, dest)
            report_started()
            use_code(dest, shadowing)
    except CodeUnavailable as err:
        message = f"warden task bootstrap: {err}"
        print(message, file=sys.stderr)
        report_failure(message)
        sys.exit(EXIT_NO_CODE)
    sys.argv = [TASK_MODULE, *argv]
    runpy.run_module(TASK_MODULE, run_name="__main__", alter_sys=True)


if __name__ == "__main__":  # `python3 -c <this text> <arguments>` runs it as __main__
    main(sys.argv[1:])
