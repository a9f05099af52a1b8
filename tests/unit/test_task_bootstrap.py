"""The ECS task's entry point (infra/task_bootstrap.py), run as the container runs it: `python3 -c
<the file's text> <arguments>`. It unpacks the WARDEN_TASK_CODE zips from S3 (moto's server here)
under the code directory as Lambda unpacks layers, puts them first, and runs `warden.task` with the
arguments; without WARDEN_TASK_CODE it downloads nothing; a zip it cannot get stops it, naming it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from infra import task_bootstrap

SOURCE = Path(task_bootstrap.__file__).read_text()  # what infra/tasks.py puts in the entryPoint
REGION = "eu-west-1"
BUCKET = "cdk-assets"
# A stand-in for warden.task: says what it got (argv, where it was imported from, PATH) and exits 3.
FAKE_TASK = """
import json, os, shutil, sys
print(json.dumps({"argv": sys.argv[1:], "file": __file__, "tool": shutil.which("warden-fake-tool"),
                  "ld": os.environ.get("LD_LIBRARY_PATH", "")}))
sys.exit(3)
"""


def _zip(files: dict[str, tuple[str, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, (text, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            zf.writestr(info, text)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
           "AWS_REGION": REGION, "AWS_ENDPOINT_URL": moto_server}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The bootstrap as the container's entryPoint runs it, with only `env` (and PATH) set."""
    base = {"PATH": os.environ["PATH"], **env}
    return subprocess.run([sys.executable, "-c", SOURCE, *args], env=base, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_code_zips_are_unpacked_in_order_and_warden_task_runs_with_the_arguments(
        aws_env: dict[str, str], tmp_path: Path) -> None:
    # Given two layer zips in S3: the second overrides the first's warden/task.py (Lambda's layer order)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=BUCKET, Key="deps.zip", Body=_zip({
        "python/warden/__init__.py": ("", 0o644), "python/warden/task.py": ("raise SystemExit(9)", 0o644),
        "bin/warden-fake-tool": ("#!/bin/sh\n", 0o755)}))
    s3.put_object(Bucket=BUCKET, Key="warden.zip", Body=_zip({"python/warden/task.py": (FAKE_TASK, 0o644)}))
    opt = tmp_path / "opt"
    # When the task starts with the backup's arguments
    result = _run(["backup", "--target", "orders", "--trigger", "schedule"], {
        **aws_env, "WARDEN_TASK_CODE": f"s3://{BUCKET}/deps.zip, s3://{BUCKET}/warden.zip",
        "WARDEN_TASK_CODE_DIR": str(opt)}, tmp_path)
    # Then warden.task ran from the unpacked code with exactly those arguments, and its exit code is the task's
    assert result.returncode == 3, result.stderr
    seen = json.loads(result.stdout)
    assert seen["argv"] == ["backup", "--target", "orders", "--trigger", "schedule"]
    assert seen["file"] == str(opt / "python" / "warden" / "task.py")
    # the layers' bin/ is on PATH with its modes kept, lib/ on the library path (pg_dump's libraries)
    assert seen["tool"] == str(opt / "bin" / "warden-fake-tool")
    assert os.access(opt / "bin" / "warden-fake-tool", os.X_OK)
    assert seen["ld"].split(os.pathsep)[0] == str(opt / "lib")


def test_without_task_code_nothing_is_downloaded_and_the_arguments_reach_warden_task(tmp_path: Path) -> None:
    # Given the local runtime's case: no WARDEN_TASK_CODE, the library on the Python path already
    package = tmp_path / "lib" / "warden"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "task.py").write_text(FAKE_TASK)
    # When the task starts (no AWS at all: no credentials, no endpoint)
    result = _run(["backup", "--target", "pg-local"], {"PYTHONPATH": str(tmp_path / "lib")}, tmp_path)
    # Then warden.task ran with the arguments, from the Python path
    assert result.returncode == 3, result.stderr
    seen = json.loads(result.stdout)
    assert seen["argv"] == ["backup", "--target", "pg-local"]
    assert seen["file"] == str(package / "task.py")


def test_a_code_zip_that_cannot_be_downloaded_stops_the_task_naming_it(aws_env: dict[str, str],
                                                                        tmp_path: Path) -> None:
    result = _run(["backup", "--target", "orders"], {
        **aws_env, "WARDEN_TASK_CODE": "s3://no-such-bucket/layer.zip", "WARDEN_TASK_CODE_DIR": str(tmp_path)},
        tmp_path)
    assert result.returncode == task_bootstrap.EXIT_NO_CODE
    assert "warden task bootstrap: cannot download s3://no-such-bucket/layer.zip" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("value", ["https://bucket/key.zip", "s3://bucket", "s3:///key.zip"])
def test_a_task_code_entry_that_is_not_an_s3_uri_is_refused(value: str) -> None:
    with pytest.raises(task_bootstrap.CodeUnavailable, match="is not s3://bucket/key"):
        task_bootstrap.code_uris(value)


def test_empty_task_code_means_nothing_to_download() -> None:
    assert task_bootstrap.code_uris(None) == task_bootstrap.code_uris(" , ") == []
    assert task_bootstrap.code_uris("s3://b/k1.zip,s3://b/dir/k2.zip") == [("b", "k1.zip"), ("b", "dir/k2.zip")]


def test_a_failed_download_tells_the_state_machine_at_once_when_the_run_has_a_token(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    class Client:
        def __init__(self, service: str) -> None:
            self.service = service

        def download_file(self, bucket: str, key: str, path: str) -> None:
            raise OSError("connection refused")

        def send_task_failure(self, **kwargs: Any) -> None:
            calls.append((self.service, kwargs))

    monkeypatch.setattr(boto3, "client", Client)
    monkeypatch.setenv("WARDEN_TASK_CODE", "s3://b/layer.zip")
    monkeypatch.setenv("WARDEN_TASK_CODE_DIR", str(tmp_path))
    monkeypatch.setenv("WARDEN_TASK_TOKEN", "token-1")
    with pytest.raises(SystemExit) as exit_info:
        task_bootstrap.main(["backup", "--target", "orders"])
    assert exit_info.value.code == task_bootstrap.EXIT_NO_CODE
    ((service, failure),) = calls
    assert service == "stepfunctions" and failure["taskToken"] == "token-1"
    assert failure["error"] == "TaskCodeUnavailable"
    assert "cannot download s3://b/layer.zip: OSError: connection refused" in failure["cause"]
    assert "cannot download s3://b/layer.zip" in capsys.readouterr().err


def test_the_run_heartbeats_once_its_code_is_in_place_before_the_job_starts(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    steps: list[str] = []

    class Client:
        def send_task_heartbeat(self, taskToken: str) -> None:
            steps.append(f"heartbeat {taskToken}")

    monkeypatch.setattr(boto3, "client", lambda service: Client())
    monkeypatch.setattr(task_bootstrap, "install", lambda uris, dest: steps.append(f"install {uris}") or set())
    monkeypatch.setattr(task_bootstrap, "use_code", lambda dest, shadowing: steps.append("use code"))
    monkeypatch.setattr(task_bootstrap.runpy, "run_module", lambda *a, **k: steps.append(f"run {sys.argv}"))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setenv("WARDEN_TASK_CODE", "s3://b/layer.zip")
    monkeypatch.setenv("WARDEN_TASK_TOKEN", "token-2")
    task_bootstrap.main(["backup", "--target", "orders"])
    assert steps == ["install [('b', 'layer.zip')]", "heartbeat token-2", "use code",
                     "run ['warden.task', 'backup', '--target', 'orders']"]
