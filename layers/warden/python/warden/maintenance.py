"""Maintenance of a target, scheduled (Schedules.maintenance, every 6 h by default) or on demand.

PostgreSQL: VACUUM (ANALYZE) of tables with dead tuples every `vacuum_interval_h`, ANALYZE of
changed tables every `analyze_interval_h`, REINDEX CONCURRENTLY of b-tree indexes above a size with
an estimated bloat above a threshold every `reindex_interval_h`. Every statement runs with a
statement timeout and a lock timeout, and VACUUM / ANALYZE skip a table they cannot lock at once
(SKIP_LOCKED): maintenance waits for nobody, so it never queues the application behind it.
Neo4j: indexes and constraints not ONLINE are reported, outdated index statistics resampled.

A scheduled run does the tasks that are due (the last run of each is in the state table); a run
with `tasks` does those. Runs take the target's lease (never beside a backup or recovery), and
each run is audited with what it did and how long each task took.

A run goes to ECS Fargate when it would not fit the maintenance function (docs/fargate.md,
"Maintenance on Fargate"; warden.runner.maintenance_runner_for): the state table keeps each task's
last duration and the latest run's runner, start and end beside the last runs (`history`). On
Fargate (`python -m warden.task maintenance`) the run has no Lambda deadline: its lease is renewed,
a statement may take the task's timeout less FARGATE_STATEMENT_MARGIN_S, and a lost lease or a
stopped task cancels the statement in flight and stops the run.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from botocore.exceptions import ClientError
from pydantic import Field

from warden.config.operations import MaintenanceConfig, maintenance_of
from warden.config.target import Engine, Target
from warden.errors import ConfigError, WardenError
from warden.events import Task
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.clients import aws_client
from warden.stores.leases import LeaseHeld

if TYPE_CHECKING:
    from warden.backup import LeaseKeeper

MAINTENANCE_LEASE_S = 16 * 60
# The maintenance function's Lambda budget: its timeout (infra/jobs.py).
MAINTENANCE_BUDGET_S = 15 * 60
# On Fargate one statement may take the task's timeout (target.fargate.timeout_s) less this: time for
# the run to record, audit, release its lease and report before the Task state machine gives up on it.
FARGATE_STATEMENT_MARGIN_S = 5 * 60
# A connection is made (or refused) within this, however long a statement may then take.
CONNECT_TIMEOUT_S = 30.0
# PostgreSQL 14+ checks this often whether a statement's client is still there (a killed task, a Lambda
# stopped at its time limit), and ends the statement if not.
CLIENT_CHECK_S = 10
# The state table's item, beside the tasks' last-run items, of the target's latest run.
RUN_ITEM = "run"
# How often a run with a renewed lease (or that may be told to stop) looks whether it must stop.
GUARD_POLL_S = 0.5
DUE_SLACK = 0.9  # a 6-hourly schedule finds the last run "5 h 59 min" ago: still due
Seconds = Annotated[float, Field(gt=0)]
Hours = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
TASKS: dict[Engine, tuple[Task, ...]] = {
    Engine.POSTGRES: ("vacuum", "analyze", "reindex"),
    Engine.NEO4J: ("neo4j_indexes", "resample"),
}



log = logging.getLogger(__name__)


class MaintenanceStopped(WardenError):
    """The run was told to stop (its task got SIGTERM: ECS StopTask, the Abandon step) before it finished."""


@dataclass
class TaskResult:
    task: Task
    duration_s: float
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass
class MaintenanceReport:
    target: str
    tasks: list[TaskResult] = field(default_factory=list)
    skipped: str | None = None
    duration_s: float = 0.0

    @property
    def outcome(self) -> str:
        if self.skipped:
            return "skipped"
        return "partial" if any(t.errors for t in self.tasks) else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "outcome": self.outcome, "skipped": self.skipped,
                "duration_s": self.duration_s,
                "tasks": [{"task": t.task, "duration_s": t.duration_s, "summary": t.summary, "details": t.details,
                           "errors": t.errors} for t in self.tasks]}


@dataclass(frozen=True)
class History:
    """What the state table keeps of a target's maintenance: each task's last clean run
    (`last_run`) and how long it took the last time it ran (`duration_s`), and the latest run's
    runner, start and end (`finished_at` None: it is running, or it died — a Lambda invocation
    stopped at its time limit runs no `finally`)."""

    last_run: dict[str, datetime] = field(default_factory=dict)
    duration_s: dict[str, float] = field(default_factory=dict)
    runner: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def expected_s(self, tasks: list[Task]) -> float | None:
        """How long `tasks` took the last time each ran, together (None when none of them has run)."""
        known = [self.duration_s[t] for t in tasks if t in self.duration_s]
        return sum(known) if known else None


def history(settings: Settings, target: Target) -> History:
    """The target's maintenance history, from the state table."""
    if not settings.state_table:
        raise ConfigError(f"stage {settings.stage!r} lacks the state table (leases, last runs)")
    response = aws_client("dynamodb").query(
        TableName=settings.state_table, KeyConditionExpression="pk = :pk", ConsistentRead=True,
        ExpressionAttributeValues={":pk": {"S": f"maintenance#{target.name}"}})
    last: dict[str, datetime] = {}
    durations: dict[str, float] = {}
    run: dict[str, Any] = {}
    for item in response.get("Items", []):
        if item["sk"]["S"] == RUN_ITEM:
            run = item
            continue
        if "last_run" in item:
            last[item["sk"]["S"]] = datetime.fromisoformat(item["last_run"]["S"])
        if "duration_s" in item:
            durations[item["sk"]["S"]] = float(item["duration_s"]["N"])

    def at(name: str) -> datetime | None:
        return datetime.fromisoformat(run[name]["S"]) if name in run else None

    return History(last_run=last, duration_s=durations, runner=run.get("runner", {}).get("S"),
                   started_at=at("started_at"), finished_at=at("finished_at"))


def due_tasks(settings: Settings, target: Target, config: MaintenanceConfig, now: datetime | None = None,
              known: History | None = None) -> list[Task]:
    """The target's tasks whose last run is older than their interval (or that never ran)."""
    if not settings.state_table:
        raise ConfigError(f"stage {settings.stage!r} lacks the state table (leases, last runs)")
    now = now or datetime.now(UTC)
    intervals = {"vacuum": config.vacuum_interval_h, "analyze": config.analyze_interval_h,
                 "reindex": config.reindex_interval_h, "neo4j_indexes": config.neo4j_interval_h,
                 "resample": config.neo4j_interval_h}
    last = (known or history(settings, target)).last_run
    return [task for task in TASKS[target.engine]
            if task not in last or now - last[task] >= timedelta(hours=intervals[task] * DUE_SLACK)]


def check_tasks(target: Target, tasks: list[Task] | None) -> None:
    """ConfigError when `tasks` names a task the target's engine has not (before anything is touched)."""
    wrong = [t for t in tasks or [] if t not in TASKS[target.engine]]
    if wrong:
        raise ConfigError(f"{target.engine} target {target.name} has no maintenance task {wrong}")


def fargate_statement_timeout_s(target: Target) -> float:
    """A statement's timeout on Fargate: the task's timeout less FARGATE_STATEMENT_MARGIN_S (a VACUUM
    or REINDEX of a table of hundreds of GB takes hours; MaintenanceConfig.statement_timeout_s is
    what fits the Lambda function)."""
    return float(target.fargate.timeout_s - FARGATE_STATEMENT_MARGIN_S)


def run_maintenance(stores: Stores, target: Target, *, actor: str, tasks: list[Task] | None = None,
                    config: MaintenanceConfig | None = None,
                    secret_loader: Callable[[Target], Any] | None = None, runner: str = "lambda",
                    statement_timeout_s: float | None = None, lease_ttl_s: float = MAINTENANCE_LEASE_S,
                    renew_lease: bool = False, execution: str | None = None,
                    stop: threading.Event | None = None) -> MaintenanceReport:
    """Run `tasks` (default: the due ones) on one target under its lease, and audit the run.

    `runner` ("lambda", "fargate") is recorded on the lease (with the task's `execution`, so only its
    own Abandon step releases it), the run's history and its audit entry. `statement_timeout_s`
    overrides the config's (a run on Fargate). With `renew_lease` the lease (`lease_ttl_s`) is renewed
    every quarter of its TTL; a lease that cannot be renewed, or `stop` set, cancels the statement in
    flight and ends the run with LeaseLost / MaintenanceStopped (audited "failed").
    """
    settings = stores.settings
    if not settings.state_table:
        raise ConfigError(f"stage {settings.stage!r} lacks the state table (leases, last runs)")
    config = config or maintenance_of(target)
    check_tasks(target, tasks)
    timeout = statement_timeout_s or config.statement_timeout_s
    started = time.monotonic()
    report = MaintenanceReport(target=target.name)
    chosen = tasks if tasks is not None else due_tasks(settings, target, config)
    leases = stores.leases
    where = {"runner": runner, **({"execution": execution} if execution else {})}  # on the lease and the audit
    try:
        lease, _ = leases.acquire(target.name, f"{actor}#{uuid.uuid4().hex[:8]}", "maintenance", lease_ttl_s,
                                  **where)
    except LeaseHeld as held:
        report.skipped = str(held)
    else:
        keeper = _lease_keeper(stores, lease, lease_ttl_s) if renew_lease else None
        guard = _Guard(keeper, stop)
        try:
            if keeper is not None:
                keeper.start()
            if chosen:
                _record_start(settings.state_table, target.name, runner)
                run = _postgres if target.engine is Engine.POSTGRES else _neo4j
                report.tasks = run((secret_loader or stores.secrets.load)(target), chosen, config, guard, timeout)
                _record_runs(settings.state_table, target.name, report.tasks, runner)
        except Exception as err:
            report.duration_s = round(time.monotonic() - started, 3)
            if chosen:
                _record_end(settings.state_table, target.name, report.duration_s, "failed")
            stores.audit.audit(target=target.name, operation="maintenance", step="finish", outcome="failed",
                               actor=actor, tasks=list(chosen), duration_s=report.duration_s,
                               error=f"{type(err).__name__}: {err}"[:2000], **where)
            raise
        finally:
            if keeper is not None:
                keeper.stop()
            leases.release(lease)
    report.duration_s = round(time.monotonic() - started, 3)
    if report.tasks:
        _record_end(settings.state_table, target.name, report.duration_s, report.outcome)
    stores.audit.audit(target=target.name, operation="maintenance", step="finish",
                       outcome=report.outcome, actor=actor, **where,
                       **{k: v for k, v in report.as_dict().items() if k not in ("target", "outcome")})
    return report


def _lease_keeper(stores: Stores, lease: Any, ttl_s: float) -> LeaseKeeper:
    from warden.backup import LeaseKeeper  # the backup task's: renews every quarter of the TTL

    return LeaseKeeper(stores.leases, lease, ttl_s)


class _Guard:
    """Stops a run between statements when its lease is lost (LeaseLost) or it is told to stop
    (MaintenanceStopped), and cancels the statement in flight then (`cancelling`): a VACUUM of hours
    must not go on under a lease someone else may hold now. Without a keeper or a stop event (a run
    in the Lambda function) it does nothing."""

    def __init__(self, keeper: LeaseKeeper | None, stop: threading.Event | None) -> None:
        self.keeper, self.stop = keeper, stop

    def must_stop(self) -> bool:
        return (self.keeper is not None and self.keeper.lost is not None) or bool(self.stop and self.stop.is_set())

    def check(self) -> None:
        if self.keeper is not None:
            self.keeper.check()
        if self.stop is not None and self.stop.is_set():
            raise MaintenanceStopped("the maintenance run was stopped (its task got SIGTERM) before it finished")

    @contextmanager
    def cancelling(self, cancel: Callable[[], None]) -> Iterator[None]:
        """While the block runs, call `cancel` once (from a watcher thread) as soon as the run must stop."""
        if self.keeper is None and self.stop is None:
            yield
            return
        done = threading.Event()

        def watch() -> None:
            while not done.wait(GUARD_POLL_S):
                if self.must_stop():
                    try:
                        cancel()
                    except Exception as err:  # the statement ends by its own timeout then
                        log.warning("cannot cancel the maintenance statement", extra={"error": str(err)})
                    return

        watcher = threading.Thread(target=watch, name="maintenance-guard", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()


def _item_key(target: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": f"maintenance#{target}"}, "sk": {"S": sk}}


def _update(table: str, target: str, sk: str, values: dict[str, dict[str, str]], remove: str = "") -> None:
    names = {f"#a{i}": k for i, k in enumerate(values)}
    expression = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values))) + (f" REMOVE {remove}"
                                                                                         if remove else "")
    try:
        aws_client("dynamodb").update_item(
            TableName=table, Key=_item_key(target, sk), UpdateExpression=expression, ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":v{i}": v for i, v in enumerate(values.values())})
    except ClientError as err:
        raise WardenError(f"cannot record maintenance of {target}: {err.response['Error']['Code']}") from err


def _record_start(table: str, target: str, runner: str) -> None:
    """The latest run began (on `runner`); its end is not known yet."""
    _update(table, target, RUN_ITEM, {"runner": {"S": runner}, "started_at": {"S": datetime.now(UTC).isoformat()}},
            remove="finished_at, duration_s, outcome")


def _record_end(table: str, target: str, duration_s: float, outcome: str) -> None:
    _update(table, target, RUN_ITEM, {"finished_at": {"S": datetime.now(UTC).isoformat()},
                                      "duration_s": {"N": f"{duration_s:.3f}"}, "outcome": {"S": outcome}})


def _record_runs(table: str, target: str, results: list[TaskResult], runner: str) -> None:
    """Each task's duration and runner; its last run only when it ran without errors (else it stays due)."""
    now = datetime.now(UTC).isoformat()
    for result in results:
        values = {"duration_s": {"N": f"{result.duration_s:.3f}"}, "runner": {"S": runner}}
        if not result.errors:
            values["last_run"] = {"S": now}
        _update(table, target, result.task, values)


# -- PostgreSQL ----------------------------------------------------------------------------------

def _postgres(secret: Any, tasks: list[Task], config: MaintenanceConfig, guard: _Guard,
              statement_timeout_s: float) -> list[TaskResult]:
    import psycopg

    from warden.engines.postgres import connect

    try:
        # A short connect timeout: a database that does not answer is not waited for as long as a statement.
        with connect(secret, timeout=min(CONNECT_TIMEOUT_S, statement_timeout_s)) as conn:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(statement_timeout_s * 1000)}ms",))
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(config.lock_timeout_s * 1000)}ms",))
            if conn.info.server_version >= 140000:  # a statement whose run was killed ends with it, not hours later
                conn.execute("SELECT set_config('client_connection_check_interval', %s, false)",
                             (f"{CLIENT_CHECK_S * 1000}ms",))
            notices: list[str] = []
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            runners = {"vacuum": _vacuum, "analyze": _analyze, "reindex": _reindex}
            with guard.cancelling(conn.cancel_safe):
                results = []
                for task in tasks:
                    guard.check()
                    results.append(_timed(task, lambda r=runners[task]: r(conn, config, notices, guard)))  # type: ignore[misc]
                guard.check()  # a statement cancelled by the guard is not a finished run
                return results
    except psycopg.Error as err:
        raise WardenError(f"PostgreSQL maintenance failed: {str(err).strip().splitlines()[0]}") from None


def _timed(task: Task, run: Callable[[], tuple[str, dict[str, Any], list[str]]]) -> TaskResult:
    started = time.monotonic()
    summary, details, errors = run()
    return TaskResult(task=task, duration_s=round(time.monotonic() - started, 3), summary=summary, details=details,
                      errors=errors)


def _rows(conn: Any, query: str, params: Any = None) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(query, params).fetchall())


def _each(conn: Any, statement: Any, tables: list[dict[str, Any]], notices: list[str], guard: _Guard,
          ) -> tuple[list[str], list[str], list[str]]:
    """Run `statement` (with {table}) per table: (done, skipped because locked, errors)."""
    import psycopg
    from psycopg import sql

    done: list[str] = []
    skipped: list[str] = []
    errors: list[str] = []
    for row in tables:
        name = f"{row['schema']}.{row['table']}"
        guard.check()
        notices.clear()
        try:
            conn.execute(statement.format(table=sql.Identifier(row["schema"], row["table"])))
        except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as err:
            skipped.append(name)
            errors.append(f"{name}: {str(err).strip().splitlines()[0]}")
            continue
        except psycopg.Error as err:
            errors.append(f"{name}: {str(err).strip().splitlines()[0]}")
            continue
        (skipped if any("lock not available" in n for n in notices) else done).append(name)
    return done, skipped, errors


_TABLES = """
SELECT schemaname AS schema, relname AS table, n_dead_tup AS dead, n_live_tup AS live,
       n_mod_since_analyze AS changed
FROM pg_stat_user_tables WHERE {where} ORDER BY n_dead_tup DESC, relname
"""


def _vacuum(conn: Any, config: MaintenanceConfig, notices: list[str],
            guard: _Guard) -> tuple[str, dict[str, Any], list[str]]:
    from psycopg import sql

    tables = _rows(conn, _TABLES.format(where="n_dead_tup >= %s"), (config.vacuum_min_dead_tuples,))
    done, skipped, errors = _each(conn, sql.SQL("VACUUM (ANALYZE, SKIP_LOCKED) {table}"), tables, notices, guard)
    dead = {f"{r['schema']}.{r['table']}": r["dead"] for r in tables}
    return (f"vacuumed {len(done)} table(s), skipped {len(skipped)} locked",
            {"vacuumed": done, "skipped_locked": skipped, "dead_tuples_before": dead}, errors)


def _analyze(conn: Any, config: MaintenanceConfig, notices: list[str],
             guard: _Guard) -> tuple[str, dict[str, Any], list[str]]:
    from psycopg import sql

    tables = _rows(conn, _TABLES.format(where="n_mod_since_analyze > 0"))
    done, skipped, errors = _each(conn, sql.SQL("ANALYZE (SKIP_LOCKED) {table}"), tables, notices, guard)
    return (f"analyzed {len(done)} table(s), skipped {len(skipped)} locked",
            {"analyzed": done, "skipped_locked": skipped}, errors)


def _reindex(conn: Any, config: MaintenanceConfig, notices: list[str],
             guard: _Guard) -> tuple[str, dict[str, Any], list[str]]:
    import psycopg
    from psycopg import sql

    # The health check's estimate (pg_stats widths vs pages), so report and maintenance agree.
    from warden.engines.postgres.health import _BLOAT

    candidates = [r for r in _rows(conn, _BLOAT)
                  if r["bytes"] >= config.reindex_min_bytes and r["bloat_ratio"] >= config.reindex_min_bloat_ratio]
    done: list[dict[str, Any]] = []
    errors: list[str] = []
    for row in candidates[: config.reindex_max_per_run]:
        schema, index = row["index"].split(".", 1)
        guard.check()
        try:
            conn.execute(sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(sql.Identifier(schema, index)))
        except psycopg.Error as err:
            errors.append(f"{row['index']}: {str(err).strip().splitlines()[0]}")
            # A failed concurrent rebuild leaves an invalid `<index>_ccnew`: drop it, it only costs writes.
            try:
                conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                    sql.Identifier(schema, f"{index}_ccnew")))
            except psycopg.Error as drop_err:
                errors.append(f"{row['index']}_ccnew left behind: {str(drop_err).strip().splitlines()[0]}")
            continue
        after = conn.execute("SELECT pg_relation_size(%s::regclass)",
                             (sql.Identifier(schema, index).as_string(conn),)).fetchone()
        done.append({"index": row["index"], "bytes_before": row["bytes"], "bytes_after": after[0] if after else None,
                     "estimated_bloat_ratio": row["bloat_ratio"]})
    return (f"rebuilt {len(done)} of {len(candidates)} bloated index(es)",
            {"reindexed": done, "candidates": len(candidates), "min_bytes": config.reindex_min_bytes,
             "min_bloat_ratio": config.reindex_min_bloat_ratio}, errors)


# -- Neo4j ---------------------------------------------------------------------------------------

def _neo4j(secret: Any, tasks: list[Task], config: MaintenanceConfig, guard: _Guard,
           statement_timeout_s: float) -> list[TaskResult]:
    import neo4j
    from neo4j.exceptions import Neo4jError, ServiceUnavailable

    from warden.engines.neo4j import driver

    timeout = statement_timeout_s

    def rows(session: Any, query: str) -> list[dict[str, Any]]:
        return [r.data() for r in session.run(neo4j.Query(query, timeout=timeout))]

    def index_states(session: Any) -> tuple[str, dict[str, Any], list[str]]:
        indexes = rows(session, "SHOW INDEXES YIELD name, type, state, populationPercent, owningConstraint "
                                "RETURN name, type, state, populationPercent, owningConstraint")
        constraints = rows(session, "SHOW CONSTRAINTS YIELD name, type, ownedIndex RETURN name, type, ownedIndex")
        state = {i["name"]: i["state"] for i in indexes}
        bad_indexes = [i for i in indexes if i["state"] != "ONLINE"]
        bad_constraints = [{**c, "index_state": state.get(c["ownedIndex"])} for c in constraints
                           if c["ownedIndex"] and state.get(c["ownedIndex"]) != "ONLINE"]
        problems = [f"index {i['name']} is {i['state']}" for i in bad_indexes] + [
            f"constraint {c['name']} has index {c['ownedIndex']} {c['index_state']}" for c in bad_constraints]
        return (f"{len(indexes)} index(es), {len(constraints)} constraint(s); "
                f"{len(bad_indexes)} index(es) and {len(bad_constraints)} constraint(s) not ONLINE",
                {"not_online_indexes": bad_indexes, "not_online_constraints": bad_constraints,
                 "problems": problems, "indexes": len(indexes), "constraints": len(constraints)}, [])

    def resample(session: Any) -> tuple[str, dict[str, Any], list[str]]:
        rows(session, "CALL db.resampleOutdatedIndexes()")
        return "resampled outdated index statistics", {}, []

    runners = {"neo4j_indexes": index_states, "resample": resample}
    try:
        with driver(secret, timeout=30).session(database=secret.database) as session:
            results = []
            for task in tasks:  # each a few short statements, bounded by their timeout: checked between tasks
                guard.check()
                results.append(_timed(task, lambda r=runners[task]: r(session)))  # type: ignore[misc]
            return results
    except (ServiceUnavailable, OSError) as err:
        raise WardenError(f"Neo4j at {secret.uri} unavailable: {err}") from None
    except Neo4jError as err:
        raise WardenError(f"Neo4j maintenance failed: {err.code}") from None
