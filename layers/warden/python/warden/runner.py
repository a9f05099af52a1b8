"""Where a target's backup runs: in the backup function (Lambda) or in an ECS Fargate task started
through the stage's Task state machine (docs/fargate.md); and its maintenance, in the maintenance
function or a task (`maintenance_runner_for`, "Maintenance on Fargate").

`choose` decides from the target's configuration and its catalog (`runner_for` adds the request's
override, a first backup's size estimate and whether the stage can start tasks); `hand_over`
starts a task run with `task_input`; `abandon` is the Task state machine's Abandon step: it stops
the execution's task and cleans up after it. `choose_recovery` decides where a recovery's restore
and validation run (the Recovery state machine runs them as tasks itself, sized by `task_sizes`).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from warden.config.backup import RDS_SNAPSHOT
from warden.config.target import Target
from warden.errors import ConfigError, WardenError
from warden.models import GOOD_BACKUP, BackupRecord, BackupStatus
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.base import CatalogStore

if TYPE_CHECKING:
    from warden.events import Task
    from warden.maintenance import History

Runner = Literal["lambda", "fargate"]

# What a backup on Lambda is assumed to manage (bytes/s) when a target has no backup yet to go by.
# Conservative on purpose; set it from tests/perf's PostgreSQL and Neo4j backup benchmarks.
LAMBDA_THROUGHPUT_BPS = 20 * 2**20
# The share of the Lambda budget past which a backup goes to Fargate (room for the database to grow).
BUDGET_SHARE = 0.5
# The module a task runs: `python -m warden.task <command...>`.
TASK_MODULE = "warden.task"
# The ECS task group of a run: the Task state machine's RunTask sets it from the execution's name.
TASK_GROUP_PREFIX = "warden-task:"
# What a restore on Lambda is assumed to load (bytes of backup per second): slower than the dump that
# made the backup (pg_restore rebuilds the indexes and checks the constraints; a Neo4j restore commits
# in batches). Conservative on purpose, as LAMBDA_THROUGHPUT_BPS.
LAMBDA_RESTORE_BPS = 5 * 2**20
# The Lambda budget of one recovery step: the recovery function's timeout (infra/jobs.py).
RECOVERY_STEP_BUDGET_S = 15 * 60
# A run that spools a backup to its disk (a PostgreSQL restore: pg_restore -j needs a seekable archive)
# gets room for it plus the image and the unpacked layers, up to Fargate's largest ephemeral storage.
SPOOL_HEADROOM_PCT, DISK_RESERVE_GIB, MAX_EPHEMERAL_GIB = 10, 2, 200

log = logging.getLogger(__name__)


class HandOverFailed(WardenError):
    """The Task state machine could not be started (the backup was not handed over)."""


@dataclass(frozen=True)
class RunnerChoice:
    runner: Runner
    reason: str


def choose(target: Target, catalog: CatalogStore, *, lambda_budget_s: float,
           estimate_bytes: int | None = None) -> RunnerChoice:
    """The runner of the target's next backup and why.

    `runner: lambda` / `fargate` as configured. `auto`: Fargate when the newest good backup ran on
    Fargate (a target stays where it runs now), or took more than half of `lambda_budget_s`, or — a
    first backup — when `estimate_bytes` at LAMBDA_THROUGHPUT_BPS would; Lambda otherwise. An
    rds-snapshot backup is made by RDS and always runs on Lambda.
    """
    if target.backup.method == RDS_SNAPSHOT:
        return RunnerChoice("lambda", "an rds-snapshot backup is made by RDS, not streamed")
    if target.runner != "auto":
        return RunnerChoice(target.runner, f"the target's runner is {target.runner}")
    half = BUDGET_SHARE * lambda_budget_s
    newest = catalog.latest(target.name, GOOD_BACKUP)
    if newest is not None:
        if newest.runner == "fargate":
            return RunnerChoice("fargate", f"its newest backup {newest.backup_id} ran on Fargate")
        if newest.duration_s is not None and newest.duration_s > half:
            return RunnerChoice("fargate", f"its newest backup {newest.backup_id} took {newest.duration_s:.0f} s, "
                                           f"more than half the Lambda budget of {lambda_budget_s:.0f} s")
        return RunnerChoice("lambda", f"its newest backup {newest.backup_id} took {newest.duration_s or 0:.0f} s "
                                      f"of a Lambda budget of {lambda_budget_s:.0f} s")
    if estimate_bytes is not None:
        expected_s = estimate_bytes / LAMBDA_THROUGHPUT_BPS
        if expected_s > half:
            return RunnerChoice("fargate", f"a first backup of about {estimate_bytes / 2**20:.0f} MiB would take "
                                           f"about {expected_s:.0f} s, more than half the Lambda budget of "
                                           f"{lambda_budget_s:.0f} s")
        return RunnerChoice("lambda", f"a first backup of about {estimate_bytes / 2**20:.0f} MiB fits the Lambda "
                                      f"budget of {lambda_budget_s:.0f} s")
    return RunnerChoice("lambda", "a first backup with no size estimate starts on Lambda")


def fargate_available(settings: Settings) -> bool:
    """The stage has a Task state machine to start tasks with."""
    return bool(settings.task_state_machine_arn)


def task_command(target: Target, job: str, trigger: str, actor: str,
                 tasks: Sequence[str] | None = None) -> list[str]:
    """The arguments of `python -m warden.task` for one run of `job` on `target` (a maintenance run
    of named `tasks`: `--tasks vacuum,analyze`)."""
    command = [job, "--target", target.name, "--trigger", trigger, "--actor", actor]
    return command + (["--tasks", ",".join(tasks)] if tasks else [])


def task_input(target: Target, job: str, trigger: str, actor: str,
               tasks: Sequence[str] | None = None) -> dict[str, Any]:
    """The Task state machine's input for one run (docs/fargate.md, "The Task state machine"):
    `command` is what follows `python -m warden.task`; cpu and memory are strings as RunTask's
    overrides take them; heartbeat and timeout are the state machine's HeartbeatSeconds and
    TimeoutSeconds."""
    return {"job": job, "target": target.name, "command": task_command(target, job, trigger, actor, tasks),
            **task_sizes(target)}


def task_sizes(target: Target, *, spool_bytes: int | None = None) -> dict[str, Any]:
    """One run's size and limits from the target's `fargate:` block, as a RunTask state reads them:
    cpu and memory as strings (RunTask's overrides), ephemeral storage in GiB, heartbeat and timeout
    in whole seconds (HeartbeatSecondsPath / TimeoutSecondsPath need JSON integers). With
    `spool_bytes` (what the run writes to its disk) the disk grows past `fargate.ephemeral_gib` to hold it."""
    size = target.fargate
    ephemeral = size.ephemeral_gib
    if spool_bytes:
        needed = -(-spool_bytes * (100 + SPOOL_HEADROOM_PCT) // (100 * 2**30)) + DISK_RESERVE_GIB  # GiB, rounded up
        ephemeral = max(ephemeral, min(MAX_EPHEMERAL_GIB, needed))
    return {"cpu": str(size.cpu), "memory": str(size.memory_mib), "ephemeral_gib": int(ephemeral),
            "heartbeat_s": int(size.heartbeat_s), "timeout_s": int(size.timeout_s)}


def choose_recovery(target: Target, catalog: CatalogStore, record: BackupRecord, *, available: bool,
                    budget_s: float = RECOVERY_STEP_BUDGET_S) -> RunnerChoice:
    """Where a recovery of `record` runs its restore and validation (Preflight decides it once).

    `runner: lambda` / `fargate` as configured (Fargate where the stage cannot start tasks, not
    `available`, is a ConfigError). `auto`: Lambda where the stage cannot start tasks; else Fargate
    when the backup, or the target's newest good backup, ran on Fargate, or when the backup's size
    at LAMBDA_RESTORE_BPS would take more than half of `budget_s`; Lambda otherwise.
    """
    if target.runner == "fargate" and not available:
        raise ConfigError(f"target {target.name!r}: runner fargate, but the stage has no Task state machine "
                          "(a stage with `network:` or fargate.subnet_ids has one; docs/fargate.md)")
    if target.runner != "auto":
        return RunnerChoice(target.runner, f"the target's runner is {target.runner}")
    if not available:
        return RunnerChoice("lambda", "the stage cannot start tasks")
    if record.runner == "fargate":
        return RunnerChoice("fargate", f"backup {record.backup_id} ran on Fargate")
    newest = catalog.latest(target.name, GOOD_BACKUP)
    if newest is not None and newest.runner == "fargate":
        return RunnerChoice("fargate", f"the newest backup {newest.backup_id} ran on Fargate")
    expected_s = (record.size_bytes or 0) / LAMBDA_RESTORE_BPS
    size = f"{(record.size_bytes or 0) / 2**20:.0f} MiB"
    if expected_s > BUDGET_SHARE * budget_s:
        return RunnerChoice("fargate", f"a restore of {size} would take about {expected_s:.0f} s, more than "
                                       f"half the Lambda budget of {budget_s:.0f} s")
    return RunnerChoice("lambda", f"a restore of {size} fits the Lambda budget of {budget_s:.0f} s")


def runner_for(stores: Stores, target: Target, *, requested: Runner | None,
               lambda_budget_s: float) -> RunnerChoice:
    """The runner of a backup request: the request's `runner` when it names one, else `choose`
    (asking the database for a size estimate only for a first backup that could go to Fargate).
    Fargate where the stage cannot start tasks is Lambda for `auto`, a ConfigError otherwise."""
    available = fargate_available(stores.settings)
    if requested is not None:
        choice = RunnerChoice(requested, f"the request asked for {requested}")
    elif target.runner == "auto" and not available:  # nothing to choose from: the catalog is not asked
        return RunnerChoice("lambda", f"stage {stores.settings.stage!r} has no Task state machine")
    else:
        estimate = None
        if (available and target.runner == "auto" and target.backup.method != RDS_SNAPSHOT
                and stores.catalog.latest(target.name, GOOD_BACKUP) is None):
            estimate = estimate_size_bytes(stores, target)
        choice = choose(target, stores.catalog, lambda_budget_s=lambda_budget_s, estimate_bytes=estimate)
    if choice.runner == "fargate" and not available:
        raise ConfigError(f"target {target.name!r}: runner fargate, but stage {stores.settings.stage!r} has no Task "
                          "state machine (a stage with `network:` or fargate.subnet_ids has one; docs/fargate.md)")
    return choice


def choose_maintenance(target: Target, known: History, tasks: Sequence[Task], *, budget_s: float,
                       now: datetime | None = None) -> RunnerChoice:
    """Where the target's next maintenance run (of `tasks`) runs, and why.

    `runner: lambda` / `fargate` as configured. `auto`: Fargate when the latest run, on Lambda,
    started more than `budget_s` ago and never finished (the invocation was stopped at its time
    limit, which runs no cleanup), or when the last runs of `tasks` took together more than half of
    `budget_s`; Lambda otherwise. A run is never moved mid-way (its statements are not resumable):
    a run on Lambda that ran long makes the next one go to Fargate.
    """
    if target.runner != "auto":
        return RunnerChoice(target.runner, f"the target's runner is {target.runner}")
    now = now or datetime.now(UTC)
    if (known.runner == "lambda" and known.started_at is not None and known.finished_at is None
            and now - known.started_at > timedelta(seconds=budget_s)):
        return RunnerChoice("fargate", f"its last maintenance run on Lambda, started at "
                                       f"{known.started_at.isoformat(timespec='seconds')}, never finished (stopped "
                                       f"at the Lambda time limit of {budget_s:.0f} s)")
    expected = known.expected_s(list(tasks))
    if expected is None:
        return RunnerChoice("lambda", "no maintenance run of these tasks recorded yet")
    names = ", ".join(t for t in tasks if t in known.duration_s)
    if expected > BUDGET_SHARE * budget_s:
        return RunnerChoice("fargate", f"its last maintenance runs ({names}) took {expected:.0f} s, more than half "
                                       f"the Lambda budget of {budget_s:.0f} s")
    return RunnerChoice("lambda", f"its last maintenance runs ({names}) took {expected:.0f} s of a Lambda budget "
                                  f"of {budget_s:.0f} s")


def maintenance_runner_for(stores: Stores, target: Target, *, tasks: list[Task] | None, requested: Runner | None,
                           budget_s: float | None = None) -> RunnerChoice:
    """The runner of a maintenance request: the request's `runner` when it names one, else
    `choose_maintenance` over the target's maintenance history and the tasks it will run (`tasks`, or
    the due ones). Fargate where the stage cannot start tasks is Lambda for `auto` (the state table is
    not asked), a ConfigError otherwise."""
    from warden.config.operations import maintenance_of
    from warden.maintenance import MAINTENANCE_BUDGET_S, due_tasks, history

    available = fargate_available(stores.settings)
    if requested is not None:
        choice = RunnerChoice(requested, f"the request asked for {requested}")
    elif target.runner == "auto" and not available:
        return RunnerChoice("lambda", f"stage {stores.settings.stage!r} has no Task state machine")
    elif target.runner != "auto":
        choice = RunnerChoice(target.runner, f"the target's runner is {target.runner}")
    else:
        known = history(stores.settings, target)
        chosen = tasks if tasks is not None else due_tasks(stores.settings, target, maintenance_of(target),
                                                          known=known)
        choice = choose_maintenance(target, known, chosen, budget_s=budget_s or MAINTENANCE_BUDGET_S)
    if choice.runner == "fargate" and not available:
        raise ConfigError(f"target {target.name!r}: maintenance on Fargate, but stage {stores.settings.stage!r} has "
                          "no Task state machine (a stage with `network:` or fargate.subnet_ids has one; "
                          "docs/fargate.md)")
    return choice


def estimate_size_bytes(stores: Stores, target: Target) -> int | None:
    """The engine's cheap size estimate of the target's database; None when it cannot tell (or the
    database does not answer: the backup itself will say why)."""
    from warden.engines import engine_for

    try:
        return engine_for(target.engine).estimate_size_bytes(stores.secrets.load(target))
    except WardenError as err:
        log.warning("no size estimate", extra={"target": target.name, "error": str(err)})
        return None


def execution_name(target: Target, job: str) -> str:
    """A unique execution name (at most 80 characters): `<target>-<job>-<UTC time>-<6 hex>`."""
    return f"{target.name}-{job}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"


def hand_over(settings: Settings, target: Target, job: str, trigger: str, actor: str,
              tasks: Sequence[str] | None = None) -> str:
    """Start a task run of `job` on `target` (an execution of the stage's Task state machine); its ARN."""
    from botocore.exceptions import ClientError

    from warden.stores.clients import aws_client

    if not settings.task_state_machine_arn:
        raise ConfigError(f"stage {settings.stage!r} has no Task state machine")
    try:
        started = aws_client("stepfunctions").start_execution(
            stateMachineArn=settings.task_state_machine_arn, name=execution_name(target, job),
            input=json.dumps(task_input(target, job, trigger, actor, tasks)))
    except ClientError as err:
        raise HandOverFailed(f"cannot start the Task state machine for {target.name}: "
                             f"{err.response.get('Error', {}).get('Code', err)}") from err
    return str(started["executionArn"])


def continue_on_fargate(stores: Stores, target: Target, backup_id: str | None, execution_arn: str) -> str | None:
    """Say on the FAILED record of a Lambda attempt that the backup continues on Fargate; its error."""
    if backup_id is None:
        return None
    record = stores.catalog.get(target.name, backup_id)
    if record.status is not BackupStatus.FAILED:
        return record.error
    record = record.model_copy(update={"error": f"{record.error}; continued on Fargate: {execution_arn}"})
    stores.catalog.save(record, expect_status=BackupStatus.FAILED)
    return record.error


def stop_task_runs(settings: Settings, execution: str, reason: str) -> list[str]:
    """Stop the stage cluster's tasks of one execution (ECS group `warden-task:<execution>`); their ARNs."""
    from warden.stores.clients import aws_client

    if not settings.task_cluster:
        return []
    ecs, group, found = aws_client("ecs"), TASK_GROUP_PREFIX + execution, []
    arns = [arn for page in ecs.get_paginator("list_tasks").paginate(cluster=settings.task_cluster)
            for arn in page.get("taskArns", [])]
    for i in range(0, len(arns), 100):  # DescribeTasks takes at most 100
        for task in ecs.describe_tasks(cluster=settings.task_cluster, tasks=arns[i:i + 100]).get("tasks", []):
            if task.get("group") == group and task.get("lastStatus") != "STOPPED":
                ecs.stop_task(cluster=settings.task_cluster, task=task["taskArn"], reason=reason[:255])
                found.append(str(task["taskArn"]))
    return found


def abandon(stores: Stores, target: str, execution: str, error_name: str | None, error_text: str,
            actor: str, job: str = "backup") -> dict[str, Any]:
    """The Abandon step of the Task state machine: stop the execution's task, then, when the target's
    lease is still held by a task run of this execution, clean up after it and release the lease.

    A backup is cleaned up as after a crashed run (upload aborted, RUNNING record FAILED with the
    error); a maintenance run (the lease's operation "maintenance") leaves nothing but its lease —
    its statements end with its connection — and no backup record is touched. `job` is the run's
    job as the execution's input says it (the lease's operation, when the lease is the run's, wins).

    `counts_failure`: the run failed without the task having said so itself (a task that failed, or
    that settled its record when stopped, counts its own failure; a `States.*` error is the state
    machine's). The caller counts it as the job's failure (BackupFailure, MaintenanceErrors).
    """
    from botocore.exceptions import ClientError

    from warden.backup import clean_up_crashed_run
    from warden.stores.catalog import StaleRecord

    reason = f"abandoned by the Task state machine (execution {execution}): {error_text}"
    stop_error = None
    try:
        stopped = stop_task_runs(stores.settings, execution, reason)
    except ClientError as err:  # clean up all the same: a task still running then loses its lease and stops
        stopped, stop_error = [], f"cannot stop the execution's tasks: {err.response.get('Error', {}).get('Code', err)}"
        log.warning("abandon: tasks not stopped", extra={"target": target, "error": stop_error})
    lease = stores.leases.get(target)
    # A task of this execution holds the lease (every task the machine starts records its execution).
    ours = lease is not None and lease.runner == "fargate" and lease.execution == execution
    operation = lease.operation if lease is not None and ours else job
    settled_by_task = False
    if lease is not None and ours:
        if lease.operation == "backup":
            try:
                clean_up_crashed_run(stores, lease, actor, reason=reason)
            except StaleRecord:  # the stopped task recorded its own failure meanwhile (SIGTERM) and counted it
                settled_by_task = True
                log.info("abandon: the task settled its record itself", extra={"target": target})
        stores.leases.release(lease)
    counts_failure = not settled_by_task and (ours or error_name is None or error_name.startswith("States."))
    backup_id = lease.backup_id if lease is not None and ours and operation == "backup" else None
    stores.audit.audit(target=target, operation=operation, step="abandon", outcome="failed", actor=actor,
                       backup_id=backup_id, execution=execution,
                       error=error_text, stopped_tasks=stopped, cleaned_up=ours,
                       **({"stop_error": stop_error} if stop_error else {}))
    return {"target": target, "status": "abandoned", "job": operation, "execution": execution,
            "stopped_tasks": stopped, "stop_error": stop_error, "cleaned_up": ours, "backup_id": backup_id,
            "error": error_text, "error_name": failure_name(error_name), "counts_failure": counts_failure}


def failure_name(error_name: str | None) -> str:
    """The error the Task state machine's Failed state ends with: the run's own (BackupFailed, ...), or
    for the machine's own errors (a Fail state may not raise `States.*`) Task<name>: TaskHeartbeatTimeout,
    TaskTimeout, TaskTaskFailed."""
    if not error_name:
        return "TaskFailed"
    return f"Task{error_name.removeprefix('States.')}" if error_name.startswith("States.") else error_name


def progress_text(progress: dict[str, Any] | None) -> str:
    """A running backup's progress: bytes written, rate, time left (`-` where unknown)."""
    if not progress:
        return "starting"
    rate = progress.get("rate_bytes_s") or 0
    eta = progress.get("eta_s")
    left = "-" if eta is None else (f"{eta / 60:.0f} min" if eta >= 90 else f"{eta:.0f} s")
    return f"{progress.get('bytes', 0) / 2**20:,.1f} MiB written, {rate / 2**20:.1f} MiB/s, {left} left"
