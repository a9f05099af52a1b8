"""A long job in an ECS Fargate task (docs/fargate.md, "The task"):

    python -m warden.task backup --target T [--trigger schedule] [--actor A]
    python -m warden.task maintenance --target T [--tasks vacuum,analyze,...] [--trigger schedule] [--actor A]
    python -m warden.task recovery --step restore|validate --plan '<json>'   (warden.task_recovery)

Runs `warden.backup.run_backup` with no Lambda deadline, the target's lease renewed every quarter
of its TTL (WARDEN_TASK_LEASE_TTL_S, default BACKUP_LEASE_S) and progress on the RUNNING record.
With WARDEN_TASK_TOKEN (the Task state machine's `.waitForTaskToken`) it heartbeats while the
export's bytes advance — a hung pg_dump stops the heartbeats, and the state machine's
HeartbeatSeconds catches it — and ends with SendTaskSuccess or SendTaskFailure. Metrics go through
PutMetricData: EMF lines on stdout are not extracted from a task's awslogs.

`maintenance` runs `warden.maintenance.run_maintenance` (docs/fargate.md, "Maintenance on Fargate")
in a thread with no Lambda deadline: its lease renewed every quarter of its TTL (WARDEN_TASK_LEASE_TTL_S,
default MAINTENANCE_LEASE_S; a lost lease cancels the statement in flight and fails the run), each
statement bounded by the task's timeout less a margin (warden.maintenance.fargate_statement_timeout_s).
It heartbeats while the run's thread is alive — a statement reports no progress; one that hangs is
stopped by its statement timeout — and ends with SendTaskSuccess (the report) or SendTaskFailure.
SIGTERM (StopTask) cancels the statement in flight; the run releases its lease and is audited failed.
Metrics: MaintenanceDuration and MaintenanceErrors, as the maintenance function sends them.

Exit codes: 0 the backup completed (or one was already running) / the maintenance ran (or was skipped:
the target was busy), 1 it failed, 2 bad arguments or environment (nothing touched).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any, get_args

from pydantic import ValidationError

from warden import names, task_recovery
from warden.errors import BadRequest, ConfigError, WardenError

JOBS = ("backup", "maintenance", "recovery")
MAINTENANCE = "maintenance"
# After SIGTERM, how long a maintenance run gets to cancel its statement, release its lease and audit
# (less than the task definition's stop timeout, 120 s, after which ECS kills the container).
STOP_WAIT_S = 60.0
# A heartbeat at most this often (and at most every target.fargate.heartbeat_s), when progress advanced.
HEARTBEAT_MAX_S = 30.0
CAUSE_LIMIT = 30000  # SendTaskFailure's `cause` holds at most 32 768 characters


class TaskStopped(WardenError):
    """The task was told to stop (SIGTERM: ECS StopTask, the Abandon step) before it finished."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # raise, never sys.exit: main() says what went wrong
        raise BadRequest(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    from warden.events import ScheduledRequest

    parser = _Parser(prog="python -m warden.task", description="Run a long Warden job (ECS Fargate task).")
    jobs = parser.add_subparsers(dest="job", required=True, parser_class=_Parser)
    backup = jobs.add_parser("backup", help="back up one target")
    backup.add_argument("--target", required=True)
    backup.add_argument("--trigger", default="manual",
                        choices=get_args(ScheduledRequest.model_fields["trigger"].annotation))
    backup.add_argument("--actor", default=None, help="on whose behalf (audited)")
    maintenance = jobs.add_parser(MAINTENANCE, help="maintenance of one target (VACUUM, ANALYZE, REINDEX; Neo4j)")
    maintenance.add_argument("--target", required=True)
    maintenance.add_argument("--tasks", default=None,
                             help="comma-separated tasks (vacuum,analyze,reindex; neo4j_indexes,resample); "
                                  "default: the due ones")
    maintenance.add_argument("--trigger", default="manual",
                             choices=get_args(ScheduledRequest.model_fields["trigger"].annotation))
    maintenance.add_argument("--actor", default=None, help="on whose behalf (audited)")
    task_recovery.add_parser(jobs)
    return parser


class Heartbeats:
    """Sends SendTaskHeartbeat every `interval_s`, but only when the bytes written advanced since the
    last one: a stalled export goes quiet, and the Task state machine's HeartbeatSeconds stops it."""

    def __init__(self, sfn: Any, token: str, interval_s: float) -> None:
        self.sfn, self._token, self.interval_s = sfn, token, interval_s
        self.written = 0
        self.sent = 0  # heartbeats sent
        self._last = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeats", daemon=True)

    def advance(self, written: int) -> None:
        self.written = written

    def start(self) -> Heartbeats:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def beat(self) -> bool:
        """One heartbeat if progress advanced; whether one was sent."""
        written = self.written
        if written == self._last:
            return False
        try:
            self.sfn.send_task_heartbeat(taskToken=self._token)
        except Exception as err:  # the execution gave up (TaskTimedOut): its Abandon step stops this task
            _log("warning", "task heartbeat failed", error=f"{type(err).__name__}: {err}")
            return False
        self._last = written
        self.sent += 1
        return True

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.beat()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one job; the exit code (0 done, 1 failed, 2 bad arguments or environment)."""
    env = os.environ if environ is None else environ
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.job == task_recovery.JOB:
            return task_recovery.main(args, env)
        request = _request(args)
        from warden.settings import Settings

        settings = Settings.from_env(env)
    except (BadRequest, ValidationError) as err:
        print(f"warden.task: {_first_lines(err)}", file=sys.stderr)
        # the run's state fails now rather than at its heartbeat timeout
        _report_failure(env.get(names.ENV_TASK_TOKEN) or None, BadRequest(_first_lines(err)))
        return 2
    token = settings.task_token
    try:
        from warden.stores.targets import get_target

        target = get_target(settings, request.target)
        if args.job == MAINTENANCE:
            from warden.maintenance import check_tasks

            check_tasks(target, request.tasks)
    except ConfigError as err:  # an unknown target, a task its engine has not: nothing touched
        print(f"warden.task: {err}", file=sys.stderr)
        _report_failure(token, err)
        return 2
    actor = f"task:{settings.stage}" + (f" for {args.actor}" if args.actor else "")
    if args.job == MAINTENANCE:
        return _maintain(settings, target, request.tasks, actor, env)
    return _back_up(settings, target, request.trigger, actor, env)


def _request(args: argparse.Namespace) -> Any:
    from warden.events import BackupRequest, MaintenanceRequest, parse

    if args.actor is not None and not (0 < len(args.actor) <= 400):
        raise BadRequest("--actor: at most 400 characters")
    if args.job == MAINTENANCE:
        tasks = None if args.tasks is None else [t.strip() for t in args.tasks.split(",")]
        if tasks is not None and not all(tasks):
            raise BadRequest(f"--tasks: a comma-separated list of task names, not {args.tasks!r}")
        return parse(MaintenanceRequest, {"target": args.target, "trigger": args.trigger, "tasks": tasks})
    return parse(BackupRequest, {"target": args.target, "trigger": args.trigger})


def _maintain(settings: Any, target: Any, tasks: list[str] | None, actor: str, env: Mapping[str, str]) -> int:
    """Run the maintenance in a thread and heartbeat while it is alive; report, count and exit."""
    from warden.maintenance import MAINTENANCE_LEASE_S, fargate_statement_timeout_s, run_maintenance
    from warden.stores import Stores
    from warden.stores.clients import aws_client

    token = settings.task_token
    stores = Stores.from_settings(settings)
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = run_maintenance(
                stores, target, actor=actor, tasks=tasks, runner="fargate",
                statement_timeout_s=fargate_statement_timeout_s(target),
                lease_ttl_s=settings.task_lease_ttl_s or MAINTENANCE_LEASE_S, renew_lease=True,
                execution=settings.task_execution, stop=stop)
        except BaseException as err:  # reported below, from the main thread
            outcome["error"] = err

    _log("info", "task maintenance started", job=MAINTENANCE, target=target.name, tasks=tasks)
    previous = _stop_on_sigterm(stop)
    worker = threading.Thread(target=run, name="maintenance", daemon=True)
    worker.start()
    sfn = aws_client("stepfunctions") if token else None
    # While the run's thread is alive: a VACUUM or REINDEX reports no progress. A hung statement ends at
    # its statement timeout; a dead task stops heartbeating, and HeartbeatSeconds catches it.
    interval = min(HEARTBEAT_MAX_S, target.fargate.heartbeat_s / 2)
    try:  # SIGTERM only sets `stop` until the outcome is reported (the Abandon step may stop a task that is ending)
        return _wait_and_report(settings, target, env, worker, stop, outcome, sfn, interval)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _wait_and_report(settings: Any, target: Any, env: Mapping[str, str], worker: threading.Thread,
                     stop: threading.Event, outcome: dict[str, Any], sfn: Any, interval: float) -> int:
    """Heartbeat every `interval` while the run's thread is alive, then count and report its outcome."""
    token = settings.task_token
    stopping_since: float | None = None
    while True:
        worker.join(interval)
        if not worker.is_alive():
            break
        if stop.is_set():  # SIGTERM: the run cancels its statement and releases its lease
            stopping_since = stopping_since or time.monotonic()
            if time.monotonic() - stopping_since > STOP_WAIT_S:
                outcome.setdefault("error", TaskStopped("the task was stopped (SIGTERM) and its maintenance "
                                                        f"run did not end within {STOP_WAIT_S:.0f} s"))
                break
        if sfn is not None:
            try:
                sfn.send_task_heartbeat(taskToken=token)
            except Exception as err:  # the execution gave up (timed out): its Abandon step stops this task
                _log("warning", "task heartbeat failed", job=MAINTENANCE, error=f"{type(err).__name__}: {err}")
    if "error" in outcome:
        failure: BaseException = outcome["error"]
        _log("error", "task maintenance failed", job=MAINTENANCE, target=target.name,
             error=f"{type(failure).__name__}: {failure}")
        _metrics(env, settings.stage, target.name, [("MaintenanceErrors", "Count", 1)])
        _report_failure(token, failure)
        return 1
    report = outcome["report"]
    _metrics(env, settings.stage, target.name, [
        ("MaintenanceDuration", "Seconds", report.duration_s),
        ("MaintenanceErrors", "Count", sum(len(t.errors) for t in report.tasks))])
    _log("info", "maintenance finished", job=MAINTENANCE, target=target.name, outcome=report.outcome,
         tasks=[t.task for t in report.tasks], duration_s=report.duration_s)
    _report_success(token, {**report.as_dict(), "runner": "fargate"})
    return 0


def _stop_on_sigterm(stop: threading.Event) -> Any:
    """SIGTERM (ECS StopTask) sets `stop`: the maintenance run cancels its statement and ends; the
    previous handler, to restore (None off the main thread, where signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return signal.signal(signal.SIGTERM, on_term)


def _back_up(settings: Any, target: Any, trigger: str, actor: str, env: Mapping[str, str]) -> int:
    from warden.backup import BACKUP_LEASE_S, run_backup
    from warden.stores import Stores
    from warden.stores.clients import aws_client

    token = settings.task_token
    heartbeats = (Heartbeats(aws_client("stepfunctions"), token,
                             min(float(target.fargate.heartbeat_s), HEARTBEAT_MAX_S)).start() if token else None)
    previous = _on_sigterm()
    stores = Stores.from_settings(settings)
    _log("info", "task backup started", target=target.name, trigger=trigger)
    try:
        outcome = run_backup(stores, target, actor=actor, trigger=trigger, runner="fargate", deadline=None,
                             on_progress=heartbeats.advance if heartbeats else None,
                             lease_ttl_s=settings.task_lease_ttl_s or BACKUP_LEASE_S, renew_lease=True,
                             execution=settings.task_execution)
    except Exception as err:
        _log("error", "task backup failed", target=target.name, error=f"{type(err).__name__}: {err}")
        _metrics(env, settings.stage, target.name, [("BackupFailure", "Count", 1)])
        _report_failure(token, err)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if heartbeats is not None:
            heartbeats.stop()
    if outcome.record is None:
        _log("info", "backup already running", target=target.name, detail=outcome.already_running)
        _report_success(token, {"target": target.name, "status": "already running",
                                "detail": outcome.already_running, "runner": "fargate"})
        return 0
    record = outcome.record
    _metrics(env, settings.stage, target.name, [
        ("BackupSuccess", "Count", 1), ("BackupSize", "Bytes", record.size_bytes or 0),
        ("StoredBytes", "Bytes", stores.catalog.stored_bytes(target.name)),
    ])
    # With Runner=fargate: a stream of its own, so the fleet's "near the Lambda time limit" alarm (over
    # the function's BackupDuration) does not read hours-long task runs.
    _metrics(env, settings.stage, target.name, [("BackupDuration", "Seconds", record.duration_s or 0)],
             extra={"Runner": "fargate"})
    _log("info", "backup finished", target=target.name, backup_id=record.backup_id, size_bytes=record.size_bytes,
         duration_s=record.duration_s)
    _report_success(token, {"target": target.name, "backup_id": record.backup_id, "status": record.status.value,
                            "size_bytes": record.size_bytes, "runner": record.runner})
    return 0


def _on_sigterm() -> Any:
    """SIGTERM (ECS StopTask) raises TaskStopped in the backup, which aborts its upload and records
    FAILED; the previous handler, to restore (None off the main thread, where signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: FrameType | None) -> None:
        raise TaskStopped("the task was stopped (SIGTERM) before the backup finished")

    return signal.signal(signal.SIGTERM, stop)


def _report_success(token: str | None, output: dict[str, Any]) -> None:
    if not token:
        return
    from warden.stores.clients import aws_client

    try:
        aws_client("stepfunctions").send_task_success(taskToken=token, output=json.dumps(output))
    except Exception as err:  # the execution is gone (timed out, stopped): the record says what happened
        _log("warning", "SendTaskSuccess failed", error=f"{type(err).__name__}: {err}")


def _report_failure(token: str | None, err: BaseException) -> None:
    if not token:
        return
    from warden.stores.clients import aws_client

    try:
        aws_client("stepfunctions").send_task_failure(taskToken=token, error=type(err).__name__,
                                                      cause=str(err)[:CAUSE_LIMIT])
    except Exception as failed:
        _log("warning", "SendTaskFailure failed", error=f"{type(failed).__name__}: {failed}")


def _metrics(env: Mapping[str, str], stage: str, target: str, points: list[tuple[str, str, float]],
             extra: Mapping[str, str] | None = None) -> None:
    """PutMetricData with the backup function's names and dimensions (docs/metrics.md: Stage, Target
    and the `service` Powertools adds), so the same alarms read them; a failure is logged, not raised."""
    from warden.stores.clients import aws_client

    dimensions = [{"Name": "Stage", "Value": stage}, {"Name": "Target", "Value": target},
                  {"Name": "service", "Value": env.get(names.ENV_POWERTOOLS_SERVICE_NAME, names.SERVICE_NAME)}]
    dimensions += [{"Name": name, "Value": value} for name, value in (extra or {}).items()]
    try:
        aws_client("cloudwatch").put_metric_data(
            Namespace=env.get(names.ENV_POWERTOOLS_METRICS_NAMESPACE, names.METRICS_NAMESPACE),
            MetricData=[{"MetricName": name, "Unit": unit, "Value": float(value), "Dimensions": dimensions}
                        for name, unit, value in points])
    except Exception as err:
        _log("warning", "PutMetricData failed", error=f"{type(err).__name__}: {err}")


def _log(level: str, message: str, **extra: Any) -> None:
    """One JSON line (Powertools' logger, as the functions log); never a secret in `extra`."""
    from warden.observability import logger

    getattr(logger, level)(message, extra={"job": "backup", **extra})


def _first_lines(err: BaseException) -> str:
    return " ".join(str(err).splitlines()[:3])


if __name__ == "__main__":
    sys.exit(main())
