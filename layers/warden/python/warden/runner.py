"""Where a target's backup runs: in the backup function (Lambda) or in an ECS Fargate task started
through the stage's Task state machine (docs/fargate.md, "Choosing the runner").

`choose` decides from the target's configuration and its catalog; `task_input` is what the backup
function gives the Task state machine when it hands a backup over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from warden.config.backup import RDS_SNAPSHOT
from warden.config.target import Target
from warden.models import GOOD_BACKUP
from warden.settings import Settings
from warden.stores.base import CatalogStore

Runner = Literal["lambda", "fargate"]

# What a backup on Lambda is assumed to manage (bytes/s) when a target has no backup yet to go by.
# Conservative on purpose; set it from tests/perf's PostgreSQL and Neo4j backup benchmarks.
LAMBDA_THROUGHPUT_BPS = 20 * 2**20
# The share of the Lambda budget past which a backup goes to Fargate (room for the database to grow).
BUDGET_SHARE = 0.5
# The module a task runs: `python -m warden.task <command...>`.
TASK_MODULE = "warden.task"


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


def task_command(target: Target, job: str, trigger: str, actor: str) -> list[str]:
    """The arguments of `python -m warden.task` for one run of `job` on `target`."""
    return [job, "--target", target.name, "--trigger", trigger, "--actor", actor]


def task_input(target: Target, job: str, trigger: str, actor: str) -> dict[str, Any]:
    """The Task state machine's input for one run (docs/fargate.md, "The Task state machine"):
    `command` is what follows `python -m warden.task`; cpu and memory are strings as RunTask's
    overrides take them; heartbeat and timeout are the state machine's HeartbeatSeconds and
    TimeoutSeconds."""
    size = target.fargate
    return {
        "job": job,
        "target": target.name,
        "command": task_command(target, job, trigger, actor),
        "cpu": str(size.cpu),
        "memory": str(size.memory_mib),
        "ephemeral_gib": size.ephemeral_gib,
        "heartbeat_s": size.heartbeat_s,
        "timeout_s": size.timeout_s,
    }
