"""A recovery step in an ECS Fargate task (docs/fargate.md), as the Recovery state machine's
RestoreOnFargate / ValidateOnFargate states run it:

    python -m warden.task recovery --step restore|validate --plan '<the plan Preflight made, JSON>'

Runs `warden.recovery.restore` / `validate` with the recovery function's stores and replica settings
(the task definition's environment holds the recovery function's variables these steps read).
With WARDEN_TASK_TOKEN (the state's `.waitForTaskToken`) it heartbeats while the step makes progress
(a restore: as warden.restore_progress reads it on the staging database; a validation: while it runs)
and ends with SendTaskSuccess — the step's result, as the function returns it, so `$.restore` and
`$.validation` look the same on either runner — or SendTaskFailure with the Warden error's type name
(DatabaseUnavailable, ValidationFailed, ...), which the states' Retry and Catch match as they match
the function's errors.

Exit codes: 0 the step succeeded, 1 it failed, 2 bad arguments or environment (nothing touched).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from warden import names
from warden.errors import BadRequest

if TYPE_CHECKING:
    from warden.config.credentials import DatabaseSecret
    from warden.config.protection import ReplicaSettings
    from warden.config.target import Engine
    from warden.recovery import Plan
    from warden.restore_progress import ProgressWatch
    from warden.settings import Settings
    from warden.stores import Stores

JOB = "recovery"
STEPS = ("restore", "validate")
# A heartbeat at least this often while the step runs (and twice per the target's fargate.heartbeat_s).
HEARTBEAT_MAX_S = 30.0
CAUSE_LIMIT = 30000  # SendTaskFailure's `cause` holds at most 32 768 characters


def add_parser(jobs: Any) -> None:
    """The `recovery` job's arguments, on `python -m warden.task`'s sub-parsers."""
    parser = jobs.add_parser(JOB, help="one step of a recovery (the Recovery state machine's Fargate states)")
    parser.add_argument("--step", required=True, choices=STEPS)
    parser.add_argument("--plan", required=True, help="the plan Preflight made, as JSON")


def main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the step `args` names; the exit code (0 done, 1 failed, 2 bad arguments or environment)."""
    from pydantic import ValidationError

    from warden.config.protection import ReplicaSettings
    from warden.settings import Settings

    token = env.get(names.ENV_TASK_TOKEN) or None  # to report a bad environment, too
    try:
        settings = Settings.from_env(env)
        token = settings.task_token
        replica = ReplicaSettings.from_env(env)
        plan = _plan(args.plan)
    except (BadRequest, ValidationError, ValueError) as err:
        message = " ".join(str(err).splitlines()[:3])
        print(f"warden.task: {message}", file=sys.stderr)
        _report_failure(token, BadRequest(message))
        return 2
    return run_step(settings, plan, args.step, replica)


def _plan(text: str) -> Plan:
    from warden.recovery import Plan

    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        return Plan.from_event(data)
    except (ValueError, TypeError, KeyError) as err:
        raise BadRequest(f"--plan: not a recovery plan ({type(err).__name__}: {err})") from None


def run_step(settings: Settings, plan: Plan, step: str, replica: ReplicaSettings | None) -> int:
    """Run one step in a thread and heartbeat while it makes progress; report its result or its error."""
    from warden import recovery
    from warden.stores import Stores
    from warden.stores.clients import aws_client

    steps: dict[str, Callable[..., dict[str, Any]]] = {"restore": recovery.restore, "validate": recovery.validate}
    token = settings.task_token
    heartbeat_s = float((plan.task or {}).get("heartbeat_s") or 2 * HEARTBEAT_MAX_S)
    outcome: dict[str, Any] = {}
    stores = Stores.from_settings(settings)

    def run() -> None:
        try:
            outcome["result"] = steps[step](stores, plan, replica)
        except BaseException as err:  # reported below, from the main thread
            outcome["error"] = err

    _log("info", "task recovery step started", step=step, target=plan.target, backup_id=plan.backup_id)
    # An earlier attempt's error goes now: a heartbeat timeout reaches Rollback without a cause, and
    # Rollback would describe it by what the record says.
    _record_failure(stores, plan, None)
    worker = threading.Thread(target=run, name=f"recovery-{step}", daemon=True)
    worker.start()
    sfn = aws_client("stepfunctions") if token else None
    interval = min(HEARTBEAT_MAX_S, heartbeat_s / 2)
    watch = _progress_watch(stores, plan, step, worker)
    try:
        _heartbeat(sfn, token, worker, watch, interval, step)
    finally:
        if watch is not None:
            watch.close()
    if "error" in outcome:
        failure: BaseException = outcome["error"]
        _log("error", "task recovery step failed", step=step, target=plan.target,
             error=f"{type(failure).__name__}: {failure}")
        _record_failure(stores, plan, failure)
        _report_failure(token, failure)
        return 1
    result = outcome["result"]
    _log("info", "task recovery step finished", step=step, target=plan.target)
    _record_failure(stores, plan, None)
    _report_success(token, result)
    return 0


def _progress_watch(stores: Stores, plan: Plan, step: str, worker: threading.Thread) -> ProgressWatch | None:
    """The restore's progress, read on the staging database (warden.restore_progress); None for the
    validation, which is bounded and short: it heartbeats while it runs."""
    if step != "restore":
        return None
    from warden.recovery import staging_secret
    from warden.restore_progress import ProgressWatch, StepProgress

    def target() -> tuple[Engine, DatabaseSecret]:
        config = stores.targets.get(plan.target)
        return config.engine, staging_secret(stores, config, stores.secrets.load(config))[0]

    return ProgressWatch(StepProgress(worker, target))


def _heartbeat(sfn: Any, token: str | None, worker: threading.Thread, watch: ProgressWatch | None,
               interval: float, step: str) -> None:
    """Until the step's thread ends: a heartbeat every `interval` when the step advanced since the
    last reading (always the first, while its connections open); none while it waits, so the state's
    HeartbeatSeconds stops a hung restore. Without a watch, one every interval while the thread lives."""
    first, quiet_since = True, 0.0
    while True:
        worker.join(interval)
        if not worker.is_alive():
            return
        advanced = watch is None or watch.advanced()
        if not advanced and not quiet_since and not first:
            quiet_since = time.monotonic()
            _log("warning", "task recovery step made no progress: heartbeats withheld", step=step)
        elif advanced and quiet_since:
            _log("info", "task recovery step progressing again", step=step,
                 quiet_s=round(time.monotonic() - quiet_since, 1))
            quiet_since = 0.0
        if sfn is not None and (advanced or first):
            try:
                sfn.send_task_heartbeat(taskToken=token)
            except Exception as err:  # the execution gave up on this step (timed out, rolled back)
                _log("warning", "task heartbeat failed", step=step, error=f"{type(err).__name__}: {err}")
        first = False


def _record_failure(stores: Stores, plan: Plan, err: BaseException | None) -> None:
    """The step's error on the recovery record, as Rollback writes a function's: Rollback keeps the
    record's error when the failure reaches it without a cause (as moto delivers SendTaskFailure's).
    None: the step starts or succeeded, and an earlier attempt's error (a retried DatabaseUnavailable) goes."""
    from warden.models import RecoveryStatus

    try:
        state = stores.recovery_state.get(plan.target)
        if state.finished_at or state.status is RecoveryStatus.RECOVERY_FAILED:
            # Rolled back meanwhile (the step's heartbeat timed out): the record says why, and this
            # step's end (its staging dropped under it) must not overwrite that.
            return
        if err is not None:
            stores.recovery_state.update(plan.target, plan.execution, error=f"{type(err).__name__}: {err}"[:2000])
        elif state.error:
            stores.recovery_state.update(plan.target, plan.execution, error=None)
    except Exception as failed:  # the outcome is still reported; Rollback describes a failure by its name
        _log("warning", "recovery record not updated", error=f"{type(failed).__name__}: {failed}")


def _report_success(token: str | None, output: dict[str, Any]) -> None:
    if not token:
        return
    from warden.stores.clients import aws_client

    try:
        aws_client("stepfunctions").send_task_success(taskToken=token, output=json.dumps(output, default=str))
    except Exception as err:  # the execution is gone (timed out, stopped): the recovery record says what happened
        _log("warning", "SendTaskSuccess failed", error=f"{type(err).__name__}: {err}")


def _report_failure(token: str | None, err: BaseException) -> None:
    """SendTaskFailure with the error's type name: the state's Retry / Catch match it as a function's."""
    if not token:
        return
    from warden.stores.clients import aws_client

    try:
        aws_client("stepfunctions").send_task_failure(taskToken=token, error=type(err).__name__,
                                                      cause=str(err)[:CAUSE_LIMIT])
    except Exception as failed:
        _log("warning", "SendTaskFailure failed", error=f"{type(failed).__name__}: {failed}")


def _log(level: str, message: str, **extra: Any) -> None:
    """One JSON line (Powertools' logger, as the functions log); never a secret in `extra`."""
    from warden.observability import logger

    getattr(logger, level)(message, extra={"job": JOB, **extra})
