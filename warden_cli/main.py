"""`warden`: the operator's tool. The same commands work against the local runtime
(`--stage local`, started by `warden local up`) and a deployed stage (`--stage <name>`), where they
invoke the deployed functions and read the catalog and the audit trail.

Exit codes: 0 done; 1 the operation ran and failed (unhealthy, corrupt, refused); 2 bad input or
configuration (nothing was touched).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from warden.errors import ConfigError, WardenError

Result = tuple[Any, str, int]  # (machine output, text output, exit code)


class CliError(WardenError):
    """An operation failed; the message says why."""


class RequestRefused(ConfigError):
    """A function refused the request as bad input or configuration: nothing was touched (exit 2)."""


# The `errorType`s of a function that refused its input (ConfigError and its subclasses, BadRequest
# among them); ValidationError: handlers that still let pydantic's escape.
BAD_REQUEST_ERRORS = frozenset({"BadRequest", "ConfigError", "TargetNotFound", "ValidationError"})


# -- stage -------------------------------------------------------------------------------------

def state_file() -> Path:
    home = Path(os.environ.get("WARDEN_LOCAL_HOME", Path.home() / ".warden" / "local"))
    return home / "state.json"


def open_stage(name: str) -> Any:
    """A StageHandle; for `local`, points this process's AWS clients at the local moto server."""
    from warden.stores.clients import reset_clients
    from warden_cli.stage import deployed_stage, local_stage

    if name == "local":
        handle, _ = local_stage(state_file())
        if not handle.endpoint_url:
            raise ConfigError(f"{state_file()} names no endpoint: restart the runtime with `warden local up`")
        os.environ["AWS_ENDPOINT_URL"] = handle.endpoint_url
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
        reset_clients()
        lambda_client.cache_clear()
        return handle
    return deployed_stage(name)


def actor() -> str:
    return f"cli:{getpass.getuser()}"


# A function runs for up to 900 s (Lambda's maximum); the reply may come a little after that.
INVOKE_READ_TIMEOUT_S = 910


@cache
def lambda_client() -> Any:
    """The CLI's own Lambda client: one attempt per invoke, and a read timeout longer than any
    function runs. An invocation that may have started is never sent again (a retry would run the
    backup, prune or verify a second time); `WARDEN_CLI_READ_TIMEOUT` shortens the wait."""
    import boto3
    from botocore.config import Config

    read_timeout = int(os.environ.get("WARDEN_CLI_READ_TIMEOUT", INVOKE_READ_TIMEOUT_S))
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=10,
                    read_timeout=read_timeout, tcp_keepalive=True)
    return boto3.session.Session().client("lambda", config=config)


def invoke(handle: Any, job: str, event: dict[str, Any], *, wait: bool = True) -> Any:
    from botocore.exceptions import ReadTimeoutError

    client = lambda_client()
    try:
        response = client.invoke(
            FunctionName=handle.function(job), Payload=json.dumps(event).encode(),
            InvocationType="RequestResponse" if wait else "Event",
        )
    except ReadTimeoutError:
        raise CliError(f"no reply from the {job} function within {client.meta.config.read_timeout} s; it may "
                       f"still be running: see `warden audit tail`") from None
    if not wait:
        return {"status": "started", "function": handle.function(job)}
    payload = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        error = f"{payload.get('errorType')}: {payload.get('errorMessage')}"
        if payload.get("errorType") in BAD_REQUEST_ERRORS:
            raise RequestRefused(f"{job} refused the request: {error}")
        raise CliError(f"{job} failed: {error}")
    return payload


# -- commands ----------------------------------------------------------------------------------













# Without --target, `warden health` prints one line per target above this many targets.
SUMMARY_ABOVE = 20
_STATUS_RANK = {"unhealthy": 0, "degraded": 1, "healthy": 2}


def _tag(value: str) -> tuple[str, str]:
    key, sep, tag_value = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be key=value, got {value!r}")
    return key, tag_value


def _filtered(args: argparse.Namespace) -> bool:
    return bool(args.engine or args.group or args.tag)


def select_fleet(handle: Any, args: argparse.Namespace) -> list[Any]:
    """The stage's targets that match --engine, --group and every --tag (all when none is given)."""
    from warden.stores.targets import load_targets

    if args.target and _filtered(args):
        raise ConfigError("--engine / --group / --tag select among all targets: drop --target")
    selected = [t for t in load_targets(handle.settings).values()
                if (not args.engine or t.engine.value == args.engine) and (not args.group or t.group in args.group)
                and all(t.tags.get(key) == value for key, value in args.tag or [])]
    if not selected and _filtered(args):
        raise ConfigError("no target matches the --engine / --group / --tag filters")
    return selected


def health_summary(report: Any, groups: dict[str, str]) -> tuple[dict[str, Any], str]:
    """One line per target, worst first, naming the checks that do not pass; counts per status on top."""
    rows = sorted(report.targets, key=lambda t: (_STATUS_RANK[t.status.value], t.target))
    counts = {status: sum(t.status.value == status for t in rows) for status in _STATUS_RANK}
    data = {"stage": report.stage, "status": report.status.value, "counts": counts, "targets": [
        {"target": t.target, "engine": t.engine.value, "group": groups.get(t.target, "default"),
         "status": t.status.value, "failing": [c.name for c in t.checks if c.status.value == "fail"],
         "warning": [c.name for c in t.checks if c.status.value == "warn"]} for t in rows]}
    lines = [f"stage {report.stage}: {report.status.value.upper()} — "
             + ", ".join(f"{n} {status}" for status, n in counts.items())]
    for row in data["targets"]:
        checks = [*row["failing"], *(f"{name} (warn)" for name in row["warning"])]
        lines.append(f"  {row['status']:<9} {row['target']:<24} {row['engine']:<8} {row['group']:<16} "
                     f"{', '.join(checks)}".rstrip())
    return data, "\n".join(lines)


def cmd_health(args: argparse.Namespace) -> Result:
    from warden.health import format_text
    from warden.models import HealthReport

    if args.output and args.format != "prometheus":
        raise ConfigError("--output writes the Prometheus exposition: add --format prometheus")
    if args.output and not args.output.parent.is_dir():  # refused before the run, nothing written
        raise ConfigError(f"--output: directory {args.output.parent} does not exist")
    handle = open_stage(args.stage)
    fleet = select_fleet(handle, args) if not args.target or _filtered(args) else []
    groups = {t.name: t.group for t in fleet}
    # A filtered view names its targets: the function checks those only, not the whole stage.
    event: dict[str, Any] = {"trigger": "cli", "requested_by": actor()}
    if args.target:
        event["target"] = args.target
    elif _filtered(args):
        event["targets"] = sorted(groups)
    report = HealthReport.model_validate(invoke(handle, "health", event))
    code = 0 if report.status.value == "healthy" else 1
    if args.format == "prometheus":  # text exposition 0.0.4 (warden.prometheus), e.g. for node_exporter
        from warden.prometheus import render, write_atomically

        text = render(report)
        if args.output:
            try:
                write_atomically(args.output, text)
            except OSError as err:
                raise CliError(f"cannot write {args.output}: {err}") from None
            return report.model_dump(mode="json"), "", code
        return report.model_dump(mode="json"), text.rstrip("\n"), code
    if args.summary or (not args.target and len(report.targets) > SUMMARY_ABOVE):
        return (*health_summary(report, groups), code)
    return report.model_dump(mode="json"), format_text(report), code


def cmd_license(args: argparse.Namespace) -> Result:
    handle = open_stage(args.stage)
    report = invoke(handle, "license_check", {"target": args.target, "trigger": "cli"} if args.target
                    else {"trigger": "cli"})
    lines = []
    for t in report.get("targets", []):
        days = f", {t['days_left']} days left" if t.get("days_left") is not None else ""
        lines.append(f"{t['target']:<20} {t.get('status', '?'):<15} {t.get('edition') or '-'} "
                     f"{t.get('version') or ''}{days}  {t.get('message', '')}".rstrip())
    failing = any(t.get("status") in ("expired", "warning", "error") for t in report.get("targets", []))
    return report, "\n".join(lines) or "no targets", 1 if failing else 0


def cmd_report(args: argparse.Namespace) -> Result:
    from datetime import UTC, datetime

    from warden.report import render_report, run_report
    from warden.stores import Stores

    handle = open_stage(args.stage)
    now = datetime.now(UTC)
    if args.output:  # write locally only: no S3, no SNS
        html, summary = render_report(Stores.from_settings(handle.settings), now)
        Path(args.output).write_text(html)
        return {"file": str(args.output), "summary": summary}, f"{summary}\n\nwritten to {args.output}", 0
    result = run_report(Stores.from_settings(handle.settings), now, actor())
    return result, f"{result['summary']}\n\ns3://{handle.settings.bucket}/{result['key']}", 0


def progress_text(progress: dict[str, Any] | None) -> str:
    from warden.runner import progress_text as text

    return text(progress)


def cmd_backup_create(args: argparse.Namespace) -> Result:
    handle = open_stage(args.stage)
    result = invoke(handle, "backup", {"target": args.target, "trigger": "cli", "requested_by": actor()},
                    wait=args.wait)
    if not args.wait:
        return result, f"backup of {args.target} started ({result['function']}); see `warden backup list`", 0
    if result.get("status") == "already running":
        return result, f"{args.target}: already running — {result['detail']}", 1
    if result.get("status") == "handed over":  # it runs on Fargate: follow the Task state machine's execution
        return _follow_task(handle, result)
    return result, _format_record(result), 0


def _follow_task(handle: Any, handed: dict[str, Any]) -> Result:
    """A backup handed over to Fargate: a live progress line (from its RUNNING record) until the Task
    state machine's execution ends, then the record the task wrote."""
    from warden.stores.catalog import Catalog
    from warden.stores.clients import aws_client

    sfn, catalog = aws_client("stepfunctions"), Catalog(_need(handle.settings.catalog_table))
    execution, target = handed["execution_arn"], handed["target"]
    print(f"{target}: on Fargate ({handed.get('reason') or 'runner fargate'}); execution {execution}",
          file=sys.stderr, flush=True)
    last = None
    while True:
        described = sfn.describe_execution(executionArn=execution)
        running = next((r for r in catalog.list(target) if r.status.value == "RUNNING" and r.runner == "fargate"), None)
        if running is not None:
            line = f"{running.backup_id}: RUNNING on fargate, {progress_text(running.progress)}"
            if line != last:
                print(line, file=sys.stderr, flush=True)
                last = line
        if described["status"] != "RUNNING":
            break
        time.sleep(float(os.environ.get("WARDEN_CLI_POLL_S", "2")))
    if described["status"] != "SUCCEEDED":
        data = {**handed, "execution_status": described["status"], "error": described.get("error"),
                "cause": described.get("cause")}
        return data, (f"{target}: backup on Fargate {described['status']}: {described.get('error')}: "
                      f"{described.get('cause')}"), 1
    output = json.loads(described.get("output") or "{}").get("result") or {}
    if output.get("status") == "already running":
        return output, f"{target}: already running — {output.get('detail')}", 1
    record = catalog.get(target, output["backup_id"]).model_dump(mode="json")
    return record, _format_record(record), 0 if record["status"] in ("COMPLETED", "VERIFIED") else 1


# `backup list` across targets reads this many targets' catalog partitions at once (one DynamoDB
# query each, so the time is mostly round trips); below botocore's pool of 10 connections.
CATALOG_READERS = 8


def backup_row(catalog: Any, target: Any, now: Any) -> dict[str, Any]:
    """A target's newest backup and whether it has a good one from the last day."""
    from datetime import timedelta

    from warden.models import GOOD_BACKUP

    records = list(catalog.list(target.name))  # newest first
    newest = records[0] if records else None
    fresh = any(r.status in GOOD_BACKUP and now - r.started_at <= timedelta(days=1) for r in records)
    return {"target": target.name, "engine": target.engine.value, "group": target.group,
            "good_in_last_day": fresh, "backup_id": newest.backup_id if newest else None,
            "status": newest.status.value if newest else None,
            "age_s": round((now - newest.started_at).total_seconds()) if newest else None,
            "size_bytes": newest.size_bytes if newest else None,
            "running": (f"on {newest.runner or 'lambda'}: {progress_text(newest.progress)}"
                        if newest is not None and newest.status.value == "RUNNING" else None)}


def backup_summary(handle: Any, args: argparse.Namespace) -> Result:
    """One line per target: its newest backup (id, status, age, size); targets without a good
    backup in the last day first. The targets' catalogs are read `CATALOG_READERS` at a time."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    from warden.stores.catalog import Catalog
    from warden.stores.clients import aws_client

    catalog = Catalog(_need(handle.settings.catalog_table))
    now = datetime.now(UTC)
    targets = select_fleet(handle, args)
    aws_client("dynamodb")  # made before the threads: making a boto3 client is not thread-safe, using one is
    with ThreadPoolExecutor(max_workers=max(1, min(CATALOG_READERS, len(targets)))) as pool:
        rows = list(pool.map(lambda target: backup_row(catalog, target, now), targets))
    rows.sort(key=lambda r: (r["good_in_last_day"], r["target"]))
    lines = [f"{'target':<24} {'backup id':<26} {'status':<10} {'age':>8} {'size':>14}  last day"]
    for r in rows:
        age = "-" if r["age_s"] is None else f"{r['age_s'] / 3600:.1f}h"
        size = f"{r['size_bytes']:,}" if r["size_bytes"] is not None else "-"
        lines.append(f"{r['target']:<24} {r['backup_id'] or '-':<26} {r['status'] or 'none':<10} {age:>8} "
                     f"{size:>14}  {'ok' if r['good_in_last_day'] else 'NO GOOD BACKUP'}"
                     f"{'  (' + r['running'] + ')' if r['running'] else ''}")
    missing = sum(not r["good_in_last_day"] for r in rows)
    return rows, "\n".join([*lines, f"{missing} of {len(rows)} target(s) without a good backup in the last day"]), 0


def cmd_backup_list(args: argparse.Namespace) -> Result:
    from warden.stores.catalog import Catalog
    from warden.stores.targets import get_target

    handle = open_stage(args.stage)
    if not args.target or _filtered(args):
        return backup_summary(handle, args)
    get_target(handle.settings, args.target)  # an unknown name is bad input, not "no backups"
    records = [r.model_dump(mode="json") for r in Catalog(_need(handle.settings.catalog_table)).list(args.target)]
    lines = [f"{'backup id':<26} {'status':<10} {'size':>12} {'duration':>9}  method"]
    for r in records:
        size = f"{r['size_bytes']:,}" if r.get("size_bytes") is not None else "-"
        duration = f"{r['duration_s']:.1f}s" if r.get("duration_s") is not None else "-"
        hold = "  [hold]" if r.get("hold") else ""
        snapshot = f" {r['snapshot']['snapshot_id']}" if r.get("snapshot") else ""  # rds-snapshot: RDS keeps the data
        running = (f"  on {r.get('runner') or 'lambda'}: {progress_text(r.get('progress'))}"
                   if r["status"] == "RUNNING" else "")
        lines.append(f"{r['backup_id']:<26} {r['status']:<10} {size:>12} {duration:>9}  {r['method']}{snapshot}{hold}"
                     f"{running}")
    if not records:
        lines = [f"no backups of {args.target}"]
    return records, "\n".join(lines), 0


def cmd_backup_verify(args: argparse.Namespace) -> Result:
    handle = open_stage(args.stage)
    result = invoke(handle, "verify", {"target": args.target, "backup_id": args.backup_id, "trigger": "cli",
                                       "requested_by": actor()})
    return result, _format_record(result), 0 if result.get("status") == "VERIFIED" else 1


def cmd_backup_restore(args: argparse.Namespace) -> Result:
    from warden.backup import restore_backup
    from warden.stores import Stores
    from warden.stores.targets import get_target

    handle = open_stage(args.stage)
    target = get_target(handle.settings, args.target)
    into = secret_from_uri(args.into, password_env=args.password_env)
    result = restore_backup(Stores.from_settings(handle.settings), target, args.backup_id, into, actor=actor(),
                            replace=args.replace)
    data = {"target": args.target, "backup_id": args.backup_id, "counts": result.counts,
            "duration_s": result.duration_s, "details": result.details}
    total = sum(result.counts.values())
    return data, f"restored {args.backup_id} of {args.target}: {total:,} objects in {result.duration_s:.1f} s", 0


def _set_hold(args: argparse.Namespace, hold: bool) -> Result:
    from warden.stores import audit
    from warden.stores.catalog import Catalog

    handle = open_stage(args.stage)
    catalog = Catalog(_need(handle.settings.catalog_table))
    record = catalog.get(args.target, args.backup_id)
    record = catalog.save(record.model_copy(update={"hold": hold}), expect_status=record.status)
    audit.audit(handle.settings.audit_table, target=args.target, operation="backup",
                step="hold" if hold else "release", outcome="ok", actor=actor(), backup_id=args.backup_id)
    return record.model_dump(mode="json"), f"{args.backup_id}: {'on hold' if hold else 'released'}", 0


def cmd_prune(args: argparse.Namespace) -> Result:
    handle = open_stage(args.stage)
    report = invoke(handle, "prune", {"target": args.target, "trigger": "cli", "apply": args.apply,
                                      "requested_by": actor()})
    verb = "deleted" if report["applied"] else "would delete"
    lines = [f"{args.target}: keep {report['kept']}, {verb} "
             f"{len(report['deleted']) if report['applied'] else report['to_delete']}"
             + (f", {report['bytes_freed']:,} bytes freed" if report["applied"] else " (dry run: nothing changed)")]
    if report.get("already_running"):
        lines.append(f"  not applied: {report['already_running']}")
    for d in report["decisions"]:
        lines.append(f"  {'KEEP  ' if d['keep'] else 'DELETE'} {d['backup_id']} {d['status']:<9} "
                     f"{'; '.join(d['reasons'])}")
    lines += [f"  FAILED {b}: {e} (record unchanged; the next run retries)" for b, e in report["failed"].items()]
    return report, "\n".join(lines), 1 if report["failed"] else 0


def cmd_audit_tail(args: argparse.Namespace) -> Result:
    from warden.stores.audit import tail
    from warden.stores.targets import get_target

    handle = open_stage(args.stage)
    get_target(handle.settings, args.target)  # an unknown name is bad input, not "no entries"
    entries = tail(_need(handle.settings.audit_table), args.target, args.limit)
    lines = [f"{e.at:%Y-%m-%d %H:%M:%S} {e.operation:<8} {e.step:<8} {e.outcome:<8} {e.actor:<40} "
             f"{e.backup_id or ''}" for e in entries] or [f"no audit entries for {args.target}"]
    return [e.model_dump(mode="json") for e in entries], "\n".join(lines), 0


def cmd_recovery_start(args: argparse.Namespace) -> Result:
    from botocore.exceptions import ClientError

    from warden.config.base import TARGET_NAME
    from warden.stores.clients import aws_client

    if not re.fullmatch(TARGET_NAME, args.target):  # it names the execution: Step Functions' InvalidName
        raise ConfigError(f"{args.target!r} is not a valid target name ({TARGET_NAME})")
    handle = open_stage(args.stage)
    arn = handle.outputs.get("RecoveryStateMachine")
    if not arn:
        raise ConfigError(f"stage {handle.name!r} has no recovery state machine")
    payload = {"target": args.target, "backup_id": args.backup_id, "promotion": args.promotion,
               "approval": args.approval, "requested_by": actor()}
    sfn = aws_client("stepfunctions")
    try:
        execution = sfn.start_execution(stateMachineArn=arn, name=execution_name(args.target),
                                        input=json.dumps(payload))["executionArn"]
    except ClientError as err:
        error = err.response.get("Error", {})
        raise CliError(f"cannot start the recovery of {args.target}: {error.get('Code')}: "
                       f"{error.get('Message')}") from None
    if not args.wait:
        return {"execution": execution, **payload}, f"recovery of {args.target} started: {execution}", 0
    return _follow(handle, sfn, execution, args.target)


def execution_name(target: str) -> str:
    """A readable, unique execution name: `<target>-<UTC time>-<random>`."""
    import secrets
    from datetime import UTC, datetime

    return f"{target}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"[:80]


def _follow(handle: Any, sfn: Any, execution: str, target: str) -> Result:
    """Live status until the execution ends (or waits for an approval)."""
    from warden.stores.recovery_state import StateStore

    store = StateStore(_need(handle.settings.state_table))
    last = None
    while True:
        described = sfn.describe_execution(executionArn=execution)
        state = store.get(target)
        line = f"{state.status.value:<18} {' → '.join(state.progress)}"
        if line != last and state.execution == execution:
            print(line, file=sys.stderr, flush=True)
            last = line
        if described["status"] != "RUNNING":
            break
        if state.execution == execution and state.status.value == "AWAITING_APPROVAL":
            text = (f"waiting for approval: warden --stage {handle.name} recovery approve|reject --target {target}")
            return {"execution": execution, "status": "AWAITING_APPROVAL"}, text, 0
        time.sleep(1)
    state = store.get(target)
    data = {"execution": execution, "status": described["status"], "recovery": state.model_dump(
        mode="json", exclude={"task_token"}), "error": described.get("error"), "cause": described.get("cause")}
    text = f"{target}: {state.status.value} (execution {described['status']}, RTO {state.rto_s or '-'} s)"
    if described["status"] != "SUCCEEDED":
        text += f"\n  {described.get('error')}: {described.get('cause') or state.error}"
    return data, text, 0 if described["status"] == "SUCCEEDED" else 1


def cmd_recovery_status(args: argparse.Namespace) -> Result:
    from warden.stores.recovery_state import StateStore

    handle = open_stage(args.stage)
    state = StateStore(_need(handle.settings.state_table)).get(args.target)
    data = state.model_dump(mode="json", exclude={"task_token"})
    lines = [f"{args.target}: {state.status.value}"]
    for key in ("backup_id", "promotion", "approval", "started_at", "finished_at", "rto_s", "error",
                "safety_backup_id", "previous_database", "execution"):
        if data.get(key) is not None:
            lines.append(f"  {key:<18} {data[key]}")
    if state.progress:
        lines.append(f"  {'progress':<18} {' → '.join(state.progress)}")
    lines += [f"  validation error  {e}" for e in state.validation_errors]
    return data, "\n".join(lines), 0


def cmd_recovery_answer(args: argparse.Namespace, approve: bool) -> Result:
    from warden.recovery import answer_approval
    from warden.stores import Stores

    handle = open_stage(args.stage)
    execution = answer_approval(Stores.from_settings(handle.settings), args.target, approve=approve, actor=actor(),
                                reason=getattr(args, "reason", "") or "")
    verb = "approved" if approve else "rejected"
    return {"target": args.target, "execution": execution, "answer": verb}, f"{args.target}: {verb}", 0


def cmd_recovery_cancel(args: argparse.Namespace) -> Result:
    from warden.recovery import cancel
    from warden.stores import Stores
    from warden.stores.clients import aws_client
    from warden.stores.recovery_state import StateStore

    handle = open_stage(args.stage)
    state = StateStore(_need(handle.settings.state_table)).get(args.target)
    if state.execution:
        sfn = aws_client("stepfunctions")
        if sfn.describe_execution(executionArn=state.execution)["status"] == "RUNNING":
            sfn.stop_execution(executionArn=state.execution, error="Cancelled", cause=f"cancelled by {actor()}")
    final = cancel(Stores.from_settings(handle.settings), args.target, actor=actor())
    return final.model_dump(mode="json", exclude={"task_token"}), f"{args.target}: cancelled ({final.error})", 0


def _format_record(r: dict[str, Any]) -> str:
    lines = [f"{r['target']} {r['backup_id']}: {r['status']}"]
    for key in ("method", "size_bytes", "sha256", "duration_s", "server_version", "consistency", "error"):
        if r.get(key) is not None:
            lines.append(f"  {key:<15} {r[key]}")
    if r.get("snapshot"):  # rds-snapshot: the snapshot is the data
        snap = r["snapshot"]
        lines += [f"  {'snapshot':<15} {snap['snapshot_id']} ({snap['kind']}, {snap.get('status') or '?'})",
                  f"  {'snapshot arn':<15} {snap.get('snapshot_arn') or '-'}"]
    return "\n".join(lines)


def _need(value: str | None) -> str:
    if not value:
        raise ConfigError("the stage lacks the catalog/audit tables (is it deployed?)")
    return value


def secret_from_uri(uri: str, *, password_env: str | None = None) -> Any:
    """A database secret from `postgresql://user[:pw]@host:port/db[?sslmode=..&sslrootcert=..]` or
    `neo4j[+s]://user[:pw]@host:port/database`. The password comes from the URI, the variable
    named by `password_env`, or a prompt."""
    from pydantic import TypeAdapter, ValidationError

    from warden.config.credentials import DatabaseSecret

    parsed = urlparse(uri)
    password = unquote(parsed.password) if parsed.password else None
    if password is None and password_env:
        password = os.environ.get(password_env)
        if password is None:
            raise ConfigError(f"environment variable {password_env} is not set")
    if password is None:
        password = getpass.getpass(f"password for {parsed.username}@{parsed.hostname}: ")
    try:
        if parsed.scheme in ("postgres", "postgresql"):
            query = parse_qs(parsed.query)
            data: dict[str, Any] = {
                "engine": "postgres", "host": parsed.hostname, "port": parsed.port or 5432,
                "username": unquote(parsed.username or "postgres"), "password": password,
                "dbname": parsed.path.lstrip("/") or "postgres",
                # Verified TLS unless the URI says otherwise, as for every target (warden.tls).
                "sslmode": query.get("sslmode", ["verify-full"])[0],
                "sslrootcert": query.get("sslrootcert", [None])[0]}
        elif parsed.scheme.split("+")[0] in ("neo4j", "bolt"):
            data = {"engine": "neo4j", "uri": f"{parsed.scheme}://{parsed.hostname}:{parsed.port or 7687}",
                    "username": unquote(parsed.username or "neo4j"), "password": password,
                    "database": parsed.path.lstrip("/") or "neo4j"}
        else:
            raise ConfigError(f"--into must be a postgresql:// or neo4j:// / bolt:// URI, got {parsed.scheme}://")
        return TypeAdapter(DatabaseSecret).validate_python(data)
    except ValidationError as err:
        fields = [".".join(map(str, e["loc"])) for e in err.errors()]
        raise ConfigError(f"--into is not a usable database URI (problem fields: {fields})") from None


# -- parser ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stage", default=argparse.SUPPRESS, help="local, or a deployed stage name")
    common.add_argument("--format", choices=("text", "json", "prometheus"), default=argparse.SUPPRESS,
                        help="prometheus: `health` only")
    parser = argparse.ArgumentParser(prog="warden", description=__doc__.split("\n\n")[0], parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # No parser.set_defaults for these: the --stage/--format actions are shared with every
    # subcommand (parents=), and a default set here would override a value given before the subcommand.
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    def add(sub: Any, name: str, func: Callable[[argparse.Namespace], Result], help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, parents=[common])
        p.set_defaults(func=func)
        return p

    for plugin in entry_points(group="warden.commands"):  # e.g. the local runtime's `local` and `demo`
        plugin.load()(groups, add)

    def add_filters(p: argparse.ArgumentParser) -> None:
        from warden.config.target import Engine

        p.add_argument("--engine", choices=[e.value for e in Engine], help="only targets of this engine")
        p.add_argument("--group", action="append", help="only targets of this group (repeatable: any of them)")
        p.add_argument("--tag", action="append", type=_tag, metavar="KEY=VALUE",
                       help="only targets with this tag (repeatable: all of them)")

    health = add(groups, "health", cmd_health, "health report of one target or all")
    health.add_argument("--target")
    health.add_argument("--summary", action="store_true", help=f"one line per target, worst first (the default "
                        f"without --target above {SUMMARY_ABOVE} targets)")
    add_filters(health)
    health.add_argument("--output", type=Path, help="with --format prometheus: write this file atomically "
                        "(temporary file + rename), e.g. for node_exporter's textfile collector")

    add(groups, "license", cmd_license, "edition, version and licence expiry").add_argument("--target")

    add(groups, "report", cmd_report, "the weekly HTML report of the last complete week").add_argument(
        "--output", type=Path, help="write the HTML here instead of S3 (no SNS)")

    backup = groups.add_parser("backup", help="backups").add_subparsers(dest="cmd", required=True)
    create = add(backup, "create", cmd_backup_create, "back up a target now")
    create.add_argument("--target", required=True)
    create.add_argument("--wait", action="store_true", help="wait for the backup and print its record")
    blist = add(backup, "list", cmd_backup_list, "a target's backups, newest first; without --target one line per "
                "target, those without a good backup in the last day first")
    blist.add_argument("--target")
    add_filters(blist)
    for name, func, text in (("verify", cmd_backup_verify, "re-check a stored backup's checksum"),
                             ("hold", lambda a: _set_hold(a, True), "never prune this backup"),
                             ("release", lambda a: _set_hold(a, False), "let retention decide again")):
        p = add(backup, name, func, text)
        p.add_argument("--target", required=True)
        p.add_argument("--backup-id", required=True)
    restore = add(backup, "restore", cmd_backup_restore, "restore a backup into a database you name")
    restore.add_argument("--target", required=True)
    restore.add_argument("--backup-id", required=True)
    restore.add_argument("--into", required=True, help="postgresql://... or neo4j://... of an empty database")
    restore.add_argument("--password-env", help="variable holding the --into password")
    restore.add_argument("--replace", action="store_true", help="empty a non-empty database first")

    prune = add(groups, "prune", cmd_prune, "apply the retention policy (dry run unless --apply)")
    prune.add_argument("--target", required=True)
    mode = prune.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", dest="apply", action="store_false", help="show decisions only (default)")
    mode.add_argument("--apply", dest="apply", action="store_true", help="delete what the policy deletes")
    prune.set_defaults(apply=False)

    recovery = groups.add_parser("recovery", help="restore → validate → promote").add_subparsers(
        dest="cmd", required=True)
    rstart = add(recovery, "start", cmd_recovery_start, "start the Recovery state machine")
    rstart.add_argument("--target", required=True)
    rstart.add_argument("--backup-id", default="latest")
    rstart.add_argument("--promotion", choices=("none", "swap", "in-place"), default="none")
    rstart.add_argument("--approval", choices=("auto", "manual"), default="auto")
    rstart.add_argument("--wait", action="store_true", help="follow the execution live")
    add(recovery, "status", cmd_recovery_status, "the target's recovery record").add_argument("--target", required=True)
    add(recovery, "approve", lambda a: cmd_recovery_answer(a, True), "promote the validated copy").add_argument(
        "--target", required=True)
    reject = add(recovery, "reject", lambda a: cmd_recovery_answer(a, False), "roll back instead")
    reject.add_argument("--target", required=True)
    reject.add_argument("--reason", default="")
    add(recovery, "cancel", cmd_recovery_cancel, "stop a recovery and clean up").add_argument(
        "--target", required=True)

    audit = groups.add_parser("audit", help="the audit trail").add_subparsers(dest="cmd", required=True)
    tail = add(audit, "tail", cmd_audit_tail, "newest audit entries of a target")
    tail.add_argument("--target", required=True)
    tail.add_argument("--limit", type=_at_least_one, default=20)
    return parser


def _at_least_one(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.stage = getattr(args, "stage", os.environ.get("WARDEN_CLI_STAGE", "local"))
    args.format = getattr(args, "format", "text")
    if args.format == "prometheus" and args.func is not cmd_health:
        print("warden: --format prometheus is for `warden health` only", file=sys.stderr)
        return 2
    try:
        data, text, code = args.func(args)
    except (ConfigError, ValueError) as err:
        print(f"warden: {err}", file=sys.stderr)
        return 2
    except WardenError as err:
        print(f"warden: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    try:
        if args.format == "json":
            print(json.dumps(data, indent=2, default=str))
        elif text:
            print(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `warden ... | head`: the reader has what it wanted
        # Python flushes stdout again at exit: point it at /dev/null so that flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


if __name__ == "__main__":
    sys.exit(main())
