"""The local runtime's commands of the `warden` CLI: `warden local up|down|status` and `warden demo`.
Registered through the `warden.commands` entry point (pyproject.toml), so the CLI never imports the
local runtime and the local runtime stays out of the Lambda layer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from warden_cli.main import CliError, Result, state_file


def cmd_local_up(args: argparse.Namespace) -> Result:
    state = state_file()
    if state.exists():
        data = json.loads(state.read_text())
        if _alive(data["pid"]):
            return data, f"local runtime already running (pid {data['pid']}, {data['endpoint_url']})", 0
        state.unlink()
    state.parent.mkdir(parents=True, exist_ok=True)
    log = state.parent / "serve.log"
    command = [sys.executable, "-m", "local.serve", "--home", str(state.parent)]
    if args.config:
        command += ["--config", str(args.config)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + args.timeout
    while not state.exists():
        if proc.poll() is not None:
            raise CliError(f"the local runtime failed to start; see {log}:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.terminate()
            raise CliError(f"the local runtime was not ready after {args.timeout:.0f} s; see {log}")
        time.sleep(0.5)
    data = json.loads(state.read_text())
    return data, _format_local(data, "local runtime up"), 0


def cmd_local_down(args: argparse.Namespace) -> Result:
    state = state_file()
    if not state.exists():
        return {"status": "not running"}, "local runtime not running", 0
    pid = json.loads(state.read_text())["pid"]
    if _alive(pid):
        os.kill(pid, 15)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    state.unlink(missing_ok=True)
    return {"status": "stopped", "pid": pid}, f"local runtime stopped (pid {pid})", 0


def cmd_local_status(args: argparse.Namespace) -> Result:
    state = state_file()
    if not state.exists():
        return {"status": "not running"}, "local runtime not running", 1
    data = json.loads(state.read_text())
    if not _alive(data["pid"]):
        return {**data, "status": "dead"}, f"local runtime pid {data['pid']} is gone (stale {state})", 1
    return {**data, "status": "running"}, _format_local(data, "local runtime running"), 0


def _format_local(data: dict[str, Any], headline: str) -> str:
    lines = [f"{headline} (pid {data['pid']}), stage {data['stage']!r}", f"  AWS (moto)  {data['endpoint_url']}"]
    for name, service in data["services"].items():
        lines.append(f"  {name:<11} {service['version']:<10} {service['uri']}")
    for name, reason in data.get("skipped", {}).items():
        lines.append(f"  {name:<11} skipped: {reason}")
    lines.append(f"  targets     {', '.join(data['targets'])}")
    return "\n".join(lines)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def cmd_demo(args: argparse.Namespace) -> Result:
    from local import demo  # developer-side: the local runtime is not part of the Lambda layer

    code = demo.main(["--config", str(args.config)] if args.config else [])
    return {"exit_code": code}, "", code


def register(groups: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the local runtime's commands to the CLI's parser (the `warden.commands` entry point)."""
    local = groups.add_parser("local", help="the local runtime").add_subparsers(dest="cmd", required=True)
    up = add(local, "up", cmd_local_up, "start real Neo4j + PostgreSQL + moto in the background")
    up.add_argument("--config", type=Path, help="local target file (default: local/targets.sample.yaml)")
    up.add_argument("--timeout", type=float, default=300)
    add(local, "down", cmd_local_down, "stop the local runtime")
    add(local, "status", cmd_local_status, "is it running, and where")

    demo = groups.add_parser("demo", help="Warden end to end on a fresh local runtime (what `make demo` runs)")
    demo.set_defaults(func=cmd_demo)
    demo.add_argument("--config", type=Path)
