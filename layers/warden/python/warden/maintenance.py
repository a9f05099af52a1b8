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
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

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

MAINTENANCE_LEASE_S = 16 * 60
DUE_SLACK = 0.9  # a 6-hourly schedule finds the last run "5 h 59 min" ago: still due
Seconds = Annotated[float, Field(gt=0)]
Hours = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
TASKS: dict[Engine, tuple[Task, ...]] = {
    Engine.POSTGRES: ("vacuum", "analyze", "reindex"),
    Engine.NEO4J: ("neo4j_indexes", "resample"),
}




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


def due_tasks(settings: Settings, target: Target, config: MaintenanceConfig, now: datetime | None = None) -> list[Task]:
    """The target's tasks whose last run is older than their interval (or that never ran)."""
    if not settings.state_table:
        raise ConfigError(f"stage {settings.stage!r} lacks the state table (leases, last runs)")
    now = now or datetime.now(UTC)
    intervals = {"vacuum": config.vacuum_interval_h, "analyze": config.analyze_interval_h,
                 "reindex": config.reindex_interval_h, "neo4j_indexes": config.neo4j_interval_h,
                 "resample": config.neo4j_interval_h}
    last = _last_runs(settings.state_table, target.name)
    return [task for task in TASKS[target.engine]
            if task not in last or now - last[task] >= timedelta(hours=intervals[task] * DUE_SLACK)]


def run_maintenance(stores: Stores, target: Target, *, actor: str, tasks: list[Task] | None = None,
                    config: MaintenanceConfig | None = None,
                    secret_loader: Callable[[Target], Any] | None = None) -> MaintenanceReport:
    """Run `tasks` (default: the due ones) on one target under its lease, and audit the run."""
    settings = stores.settings
    if not settings.state_table:
        raise ConfigError(f"stage {settings.stage!r} lacks the state table (leases, last runs)")
    config = config or maintenance_of(target)
    wrong = [t for t in tasks or [] if t not in TASKS[target.engine]]
    if wrong:
        raise ConfigError(f"{target.engine} target {target.name} has no maintenance task {wrong}")
    started = time.monotonic()
    report = MaintenanceReport(target=target.name)
    chosen = tasks if tasks is not None else due_tasks(settings, target, config)
    leases = stores.leases
    try:
        lease, _ = leases.acquire(target.name, f"{actor}#{uuid.uuid4().hex[:8]}", "maintenance", MAINTENANCE_LEASE_S)
    except LeaseHeld as held:
        report.skipped = str(held)
    else:
        try:
            if chosen:
                runner = _postgres if target.engine is Engine.POSTGRES else _neo4j
                report.tasks = runner((secret_loader or stores.secrets.load)(target), chosen, config)
                _record_runs(settings.state_table, target.name, [t.task for t in report.tasks if not t.errors])
        finally:
            leases.release(lease)
    report.duration_s = round(time.monotonic() - started, 3)
    stores.audit.audit(target=target.name, operation="maintenance", step="finish",
                    outcome=report.outcome, actor=actor, **{k: v for k, v in report.as_dict().items()
                                                             if k not in ("target", "outcome")})
    return report


def _last_runs(table: str, target: str) -> dict[str, datetime]:
    response = aws_client("dynamodb").query(
        TableName=table, KeyConditionExpression="pk = :pk", ConsistentRead=True,
        ExpressionAttributeValues={":pk": {"S": f"maintenance#{target}"}})
    return {item["sk"]["S"]: datetime.fromisoformat(item["last_run"]["S"]) for item in response.get("Items", [])}


def _record_runs(table: str, target: str, tasks: list[str]) -> None:
    now = datetime.now(UTC).isoformat()
    for task in tasks:
        try:
            aws_client("dynamodb").put_item(TableName=table, Item={
                "pk": {"S": f"maintenance#{target}"}, "sk": {"S": task}, "last_run": {"S": now}})
        except ClientError as err:
            raise WardenError(f"cannot record maintenance of {target}: {err.response['Error']['Code']}") from err


# -- PostgreSQL ----------------------------------------------------------------------------------

def _postgres(secret: Any, tasks: list[Task], config: MaintenanceConfig) -> list[TaskResult]:
    import psycopg

    from warden.engines.postgres import connect

    try:
        with connect(secret, timeout=config.statement_timeout_s) as conn:
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(config.lock_timeout_s * 1000)}ms",))
            notices: list[str] = []
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            runners = {"vacuum": _vacuum, "analyze": _analyze, "reindex": _reindex}
            return [_timed(task, lambda r=runners[task]: r(conn, config, notices)) for task in tasks]  # type: ignore[misc]
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


def _each(conn: Any, statement: Any, tables: list[dict[str, Any]], notices: list[str],
          ) -> tuple[list[str], list[str], list[str]]:
    """Run `statement` (with {table}) per table: (done, skipped because locked, errors)."""
    import psycopg
    from psycopg import sql

    done: list[str] = []
    skipped: list[str] = []
    errors: list[str] = []
    for row in tables:
        name = f"{row['schema']}.{row['table']}"
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


def _vacuum(conn: Any, config: MaintenanceConfig, notices: list[str]) -> tuple[str, dict[str, Any], list[str]]:
    from psycopg import sql

    tables = _rows(conn, _TABLES.format(where="n_dead_tup >= %s"), (config.vacuum_min_dead_tuples,))
    done, skipped, errors = _each(conn, sql.SQL("VACUUM (ANALYZE, SKIP_LOCKED) {table}"), tables, notices)
    dead = {f"{r['schema']}.{r['table']}": r["dead"] for r in tables}
    return (f"vacuumed {len(done)} table(s), skipped {len(skipped)} locked",
            {"vacuumed": done, "skipped_locked": skipped, "dead_tuples_before": dead}, errors)


def _analyze(conn: Any, config: MaintenanceConfig, notices: list[str]) -> tuple[str, dict[str, Any], list[str]]:
    from psycopg import sql

    tables = _rows(conn, _TABLES.format(where="n_mod_since_analyze > 0"))
    done, skipped, errors = _each(conn, sql.SQL("ANALYZE (SKIP_LOCKED) {table}"), tables, notices)
    return (f"analyzed {len(done)} table(s), skipped {len(skipped)} locked",
            {"analyzed": done, "skipped_locked": skipped}, errors)


def _reindex(conn: Any, config: MaintenanceConfig, notices: list[str]) -> tuple[str, dict[str, Any], list[str]]:
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

def _neo4j(secret: Any, tasks: list[Task], config: MaintenanceConfig) -> list[TaskResult]:
    import neo4j
    from neo4j.exceptions import Neo4jError, ServiceUnavailable

    from warden.engines.neo4j import driver

    timeout = config.statement_timeout_s

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
            return [_timed(task, lambda r=runners[task]: r(session)) for task in tasks]  # type: ignore[misc]
    except (ServiceUnavailable, OSError) as err:
        raise WardenError(f"Neo4j at {secret.uri} unavailable: {err}") from None
    except Neo4jError as err:
        raise WardenError(f"Neo4j maintenance failed: {err.code}") from None
