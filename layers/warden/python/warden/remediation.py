"""Remediation: for the alarms Warden knows, fix the problem itself, safely, and say what it did.

An EventBridge rule sends every "CloudWatch Alarm State Change" of the stage's alarms
(`warden-<stage>-<target>-<what>`) here. The alarm's suffix picks an action from `ACTIONS`; each
action is opt-in per target (`RemediationConfig`, all off by default), may run as a dry run, is
rate-limited per target, action and hour (a conditional counter in the state table), runs under
the target's lease (so never beside a backup, prune or recovery of that target), is audited, and
is announced on the stage's SNS topic with what was done and why. A malformed event, an alarm
that is not ours or not in ALARM, or an unknown suffix is logged and ignored: nothing is touched.

A dry run takes the lease (so it reports what would really happen) but not a rate-limit slot: it
changes nothing, so it does not use up the real actions of the hour.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from warden import fleet_alarms
from warden.config.base import TARGET_NAME
from warden.config.operations import ActionConfig, RemediationConfig
from warden.config.target import Engine, Target
from warden.errors import ConfigError, TargetNotFound, WardenError
from warden.settings import Settings
from warden.stores import Stores
from warden.stores.clients import aws_client
from warden.stores.leases import Lease, LeaseHeld

logger = logging.getLogger(__name__)

WARDEN_APP = "warden"  # application_name / user agent prefix of Warden's own sessions: never touched
REMEDIATION_LEASE_S = 16 * 60  # a remediation backup runs inside one invocation (15 min at most)
Seconds = Annotated[float, Field(gt=0)]


def remediation_of(target: object) -> RemediationConfig:
    """The target's remediation configuration, or the defaults (everything off)."""
    return getattr(target, "remediation", None) or RemediationConfig()


# -- the alarm event -----------------------------------------------------------------------------

class _AlarmState(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    value: str
    reason: str = ""
    timestamp: str | None = None


class _AlarmDetail(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    alarm_name: str = Field(alias="alarmName", min_length=1, max_length=255)
    state: _AlarmState
    previous_state: _AlarmState | None = Field(default=None, alias="previousState")


class AlarmStateChange(BaseModel):
    """The part of EventBridge's "CloudWatch Alarm State Change" event remediation reads."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    detail_type: Literal["CloudWatch Alarm State Change"] = Field(alias="detail-type")
    source: Literal["aws.cloudwatch"]
    id: str = ""
    time: str | None = None
    detail: _AlarmDetail


@dataclass(frozen=True)
class Alarm:
    """A recognised alarm of this stage: which target, which action, and why."""

    name: str
    target: str
    suffix: str
    action: str
    state: str
    reason: str
    event_id: str = ""


@dataclass(frozen=True)
class Action:
    name: str  # the RemediationConfig field
    engines: frozenset[Engine]
    takes_lease: bool = True  # False: the library function it calls takes the lease itself


ACTIONS: dict[str, Action] = {
    "backup-too-old": Action("start_backup", frozenset(Engine)),
    "backup-failed": Action("start_backup", frozenset(Engine)),
    "pg-long-running-queries": Action("cancel_long_queries", frozenset({Engine.POSTGRES})),
    "pg-connections-saturated": Action("end_idle_in_transaction", frozenset({Engine.POSTGRES})),
    # RDS DatabaseConnections past its share of max_connections (infra/instance_alarms.py).
    "rds-connections-high": Action("end_idle_in_transaction", frozenset({Engine.POSTGRES})),
    "neo4j-long-running-transactions": Action("terminate_long_transactions", frozenset({Engine.NEO4J})),
    "backup-storage-over-budget": Action("prune", frozenset(Engine), takes_lease=False),
    "unhealthy": Action("recheck_health", frozenset(Engine), takes_lease=False),
}
_TARGET = re.compile(TARGET_NAME)


def parse_alarm(event: Any, stage: str) -> tuple[Alarm | None, str]:
    """The alarm an event is about, or (None, why it is ignored). Never raises on bad input."""
    try:
        change = AlarmStateChange.model_validate(event)
    except ValidationError as err:
        fields = sorted({".".join(map(str, e["loc"])) for e in err.errors()})
        return None, f"not a CloudWatch alarm state change (problem fields: {fields})"
    name = change.detail.alarm_name
    prefix = f"warden-{stage}-"
    if not name.startswith(prefix):
        return None, f"alarm {name!r} is not one of stage {stage!r}"
    rest = name.removeprefix(prefix)
    # Target names contain hyphens: match the longest known suffix, the target is what precedes it.
    for suffix in sorted(ACTIONS, key=len, reverse=True):
        target = rest.removesuffix(f"-{suffix}")
        if target != rest and _TARGET.match(target):
            if change.detail.state.value != "ALARM":
                return None, f"alarm {name!r} went to {change.detail.state.value}: nothing to fix"
            return Alarm(name=name, target=target, suffix=suffix, action=ACTIONS[suffix].name,
                         state=change.detail.state.value, reason=change.detail.state.reason,
                         event_id=change.id), ""
    return None, f"alarm {name!r} has no remediation action"


# -- outcome -------------------------------------------------------------------------------------

Outcome = Literal["ignored", "disabled", "busy", "rate-limited", "dry-run", "ok", "nothing-to-do", "failed"]


@dataclass
class Remediation:
    """What one alarm event came to."""

    outcome: Outcome
    why: str
    alarm: Alarm | None = None
    target: str | None = None
    action: str | None = None
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "why": self.why, "alarm": self.alarm.name if self.alarm else None,
                "target": self.target, "action": self.action, "summary": self.summary, "details": self.details}


@dataclass(frozen=True)
class ActionResult:
    summary: str
    details: dict[str, Any]
    changed: bool


@dataclass(frozen=True)
class _Context:
    stores: Stores
    target: Target
    config: RemediationConfig
    dry_run: bool
    actor: str
    lease: Lease | None
    secret_loader: Callable[[Target], Any]
    backup_function: str | None
    alarm: Alarm


# -- the flow ------------------------------------------------------------------------------------

def remediate(stores: Stores, event: Any, *, actor: str, config: RemediationConfig | None = None,
              target_loader: Callable[[Settings, str], Target] | None = None,
              secret_loader: Callable[[Target], Any] | None = None,
              backup_function: str | None = None) -> Remediation:
    """Handle one alarm state change: ignore it, or run its action under every safeguard.

    `config` overrides the target's own remediation configuration (tests, the CLI).
    `backup_function`: start a backup by invoking that function asynchronously (in AWS: the backup
    function has pg_dump and 15 minutes); without it the backup runs here, under our lease.
    """
    settings = stores.settings
    fleet = _fleet_alarm_of(event, settings.stage)
    if fleet is not None:
        return remediate_fleet(stores, fleet, event, actor=actor, config=config, target_loader=target_loader,
                               secret_loader=secret_loader, backup_function=backup_function)
    alarm, why = parse_alarm(event, settings.stage)
    if alarm is None:
        logger.warning("alarm event ignored", extra={"why": why})
        return Remediation(outcome="ignored", why=why)
    try:
        target = target_loader(settings, alarm.target) if target_loader else stores.targets.get(alarm.target)
    except TargetNotFound as err:
        logger.warning("alarm event ignored", extra={"why": str(err)})
        return Remediation(outcome="ignored", why=str(err), alarm=alarm)
    action = ACTIONS[alarm.suffix]
    if target.engine not in action.engines:
        why = f"{action.name} does not apply to a {target.engine} target"
        logger.warning("alarm event ignored", extra={"why": why})
        return Remediation(outcome="ignored", why=why, alarm=alarm, target=target.name, action=action.name)
    config = config or remediation_of(target)
    result = _guarded(stores, alarm, action, target, config, actor, secret_loader or stores.secrets.load,
                      backup_function)
    _record(stores, result, actor)
    return result


def _fleet_alarm_of(event: Any, stage: str) -> fleet_alarms.FleetAlarm | None:
    try:
        change = AlarmStateChange.model_validate(event)
    except ValidationError:
        return None
    if change.detail.state.value != "ALARM":
        return None
    return fleet_alarms.parse_name(change.detail.alarm_name, stage)


def remediate_fleet(stores: Stores, fleet: fleet_alarms.FleetAlarm, event: Any, *, actor: str,
                    config: RemediationConfig | None = None,
                    target_loader: Callable[[Settings, str], Target] | None = None,
                    secret_loader: Callable[[Target], Any] | None = None,
                    backup_function: str | None = None,
                    resolver: Callable[..., list[fleet_alarms.Breach]] | None = None) -> Remediation:
    """A fleet alarm went into ALARM: find the targets that breach (`fleet_alarms.resolve`), announce
    them with their failing check on the stage's topic, then run the condition's action (when it
    has one) per target, under the same safeguards as a per-target alarm."""
    settings = stores.settings
    change = AlarmStateChange.model_validate(event)
    expected = list(stores.targets.all()) if fleet.unreported else []
    found = (resolver or fleet_alarms.resolve)(aws_client("cloudwatch"), fleet.name, settings.stage,
                                               expected=expected)
    subject, body = fleet_alarms.message(settings.stage, fleet.name, found)
    logger.warning("fleet alarm", extra={"alarm": fleet.name, "targets": [b.target for b in found],
                                         "breaches": [b.text() for b in found]})
    if settings.topic_arn:
        try:
            aws_client("sns").publish(TopicArn=settings.topic_arn, Subject=subject, Message=body)
        except ClientError as err:
            raise WardenError(f"cannot announce {fleet.name} on {settings.topic_arn}: "
                              f"{err.response['Error']['Code']}") from err
    results: list[dict[str, Any]] = []
    action = ACTIONS.get(fleet.condition.suffix)
    # a condition without an action is only told (the notification above)
    for breach, act in [(b, action) for b in found] if action is not None else []:
        alarm = Alarm(name=fleet.name, target=breach.target, suffix=fleet.condition.suffix, action=act.name,
                      state="ALARM", reason=f"{change.detail.state.reason} ({breach.text()})", event_id=change.id)
        try:
            target = target_loader(settings, breach.target) if target_loader else stores.targets.get(breach.target)
        except TargetNotFound as err:
            results.append({"target": breach.target, "outcome": "ignored", "why": str(err)})
            continue
        if target.engine not in act.engines:
            continue
        result = _guarded(stores, alarm, act, target, config or remediation_of(target), actor,
                          secret_loader or stores.secrets.load, backup_function)
        _record(stores, result, actor)
        results.append(result.as_dict())
    return Remediation(outcome="ok" if found else "nothing-to-do", why=subject,
                       alarm=Alarm(name=fleet.name, target="", suffix=fleet.condition.suffix,
                                   action=action.name if action else "", state="ALARM",
                                   reason=change.detail.state.reason, event_id=change.id),
                       summary=body, details={"breaches": [b.text() for b in found], "results": results})


def _guarded(stores: Stores, alarm: Alarm, action: Action, target: Target, config: RemediationConfig,
             actor: str, secret_loader: Callable[[Target], Any], backup_function: str | None) -> Remediation:
    chosen: ActionConfig = getattr(config, action.name)
    base = {"alarm": alarm, "target": target.name, "action": action.name}
    if not chosen.enabled:
        return Remediation(outcome="disabled", why=f"{action.name} is not enabled for {target.name}", **base)
    settings = stores.settings
    if not settings.state_table:
        raise ConfigError(f"stage {settings.stage!r} lacks the state table (leases, rate limits)")
    leases = stores.leases
    lease: Lease | None = None
    try:
        if action.takes_lease:
            lease, _ = leases.acquire(target.name, f"{actor}#{uuid.uuid4().hex[:8]}", f"remediate:{action.name}",
                                      REMEDIATION_LEASE_S)
        else:
            holder = leases.get(target.name)
            if holder is not None and holder.expires_at > time.time():
                raise LeaseHeld(f"{target.name} is busy: {holder.operation} by {holder.owner}", holder)
    except LeaseHeld as held:
        return Remediation(outcome="busy", why=str(held), **base)
    try:
        if not chosen.dry_run and not _take_slot(settings.state_table, target.name, action.name, chosen.max_per_hour):
            return Remediation(outcome="rate-limited",
                               why=f"{action.name} ran {chosen.max_per_hour} time(s) this hour for {target.name}",
                               **base)
        context = _Context(stores=stores, target=target, config=config, dry_run=chosen.dry_run, actor=actor,
                           lease=lease, secret_loader=secret_loader, backup_function=backup_function,
                           alarm=alarm)
        try:
            done = _RUNNERS[action.name](context)
        except WardenError as err:
            return Remediation(outcome="failed", why=f"alarm {alarm.name}: {alarm.reason}",
                               summary=f"{type(err).__name__}: {err}", **base)
        outcome: Outcome = "dry-run" if chosen.dry_run else ("ok" if done.changed else "nothing-to-do")
        return Remediation(outcome=outcome, why=f"alarm {alarm.name}: {alarm.reason}", summary=done.summary,
                           details=done.details, **base)
    finally:
        if lease is not None:
            leases.release(lease)


def _take_slot(table: str, target: str, action: str, max_per_hour: int) -> bool:
    """Count one run of `action` on `target` this (UTC) hour, unless `max_per_hour` already ran."""
    hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
    try:
        aws_client("dynamodb").update_item(
            TableName=table, Key={"pk": {"S": f"remediation#{target}#{action}"}, "sk": {"S": hour}},
            UpdateExpression="ADD #c :one SET #ttl = :ttl",
            ConditionExpression="attribute_not_exists(#c) OR #c < :max",
            ExpressionAttributeNames={"#c": "count", "#ttl": "ttl"},
            ExpressionAttributeValues={":one": {"N": "1"}, ":max": {"N": str(max_per_hour)},
                                       ":ttl": {"N": str(int(time.time()) + 2 * 86400)}},
        )
    except ClientError as err:
        if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise WardenError(f"cannot count remediation {action} of {target}: {err.response['Error']['Code']}") from err
    return True


def _record(stores: Stores, result: Remediation, actor: str) -> None:
    """Audit, then announce on SNS: what was done (or not) and why."""
    assert result.target and result.action
    settings = stores.settings
    stores.audit.audit(target=result.target, operation="remediation", step=result.action,
                    outcome=result.outcome, actor=actor, alarm=result.alarm.name if result.alarm else None,
                    why=result.why, summary=result.summary, result=result.details)
    logger.info("remediation", extra={"target": result.target, "action": result.action, "outcome": result.outcome,
                                      "summary": result.summary})
    if not settings.topic_arn:
        return
    subject = f"Warden {settings.stage} {result.target}: {result.action} {result.outcome}"[:100]
    try:
        aws_client("sns").publish(TopicArn=settings.topic_arn, Subject=subject,
                                  Message=json.dumps(result.as_dict(), default=str, indent=2))
    except ClientError as err:
        raise WardenError(f"cannot announce remediation on {settings.topic_arn}: "
                          f"{err.response['Error']['Code']}") from err


# -- actions -------------------------------------------------------------------------------------

def _start_backup(ctx: _Context) -> ActionResult:
    if ctx.dry_run:
        return ActionResult(f"would start a backup of {ctx.target.name}", {}, changed=False)
    if ctx.backup_function:
        request = {"target": ctx.target.name, "trigger": "remediation", "requested_by": f"alarm:{ctx.alarm.name}"}
        # Our lease proved the target idle; give it back first, or the backup would find it taken.
        if ctx.lease is not None and ctx.stores.settings.state_table:
            ctx.stores.leases.release(ctx.lease)
        try:
            aws_client("lambda").invoke(FunctionName=ctx.backup_function, InvocationType="Event",
                                        Payload=json.dumps(request).encode())
        except ClientError as err:
            raise WardenError(f"cannot start the backup function: {err.response['Error']['Code']}") from err
        return ActionResult(f"started a backup of {ctx.target.name} ({ctx.backup_function}, asynchronous)",
                            {"function": ctx.backup_function, "request": request}, changed=True)
    from warden.backup import run_backup

    outcome = run_backup(ctx.stores, ctx.target, actor=ctx.actor, trigger="remediation", held_lease=ctx.lease,
                         secret_loader=ctx.secret_loader)
    record = outcome.record
    assert record is not None  # we hold the lease: the backup cannot be "already running"
    return ActionResult(f"backup {record.backup_id} of {ctx.target.name} {record.status}",
                        {"backup_id": record.backup_id, "status": str(record.status), "size_bytes": record.size_bytes},
                        changed=True)


def _prune(ctx: _Context) -> ActionResult:
    from warden.prune import run_prune

    report = run_prune(ctx.stores, ctx.target, apply=not ctx.dry_run, actor=ctx.actor)
    to_delete = [d.backup_id for d in report.decisions if not d.keep]
    if report.already_running:
        raise WardenError(report.already_running)
    verb = "would delete" if ctx.dry_run else "deleted"
    return ActionResult(f"prune {verb} {len(to_delete if ctx.dry_run else report.deleted)} backup(s) "
                        f"of {ctx.target.name}, freed {report.bytes_freed} bytes",
                        {"to_delete": to_delete, "deleted": report.deleted, "failed": report.failed,
                         "bytes_freed": report.bytes_freed}, changed=bool(report.deleted))


def _recheck_health(ctx: _Context) -> ActionResult:
    from warden.health import check_target

    catalog = None if ctx.stores.missing("catalog") else ctx.stores.catalog
    health = check_target(ctx.target, catalog=catalog)
    failing = [{"check": c.name, "status": str(c.status), "message": c.message}
               for c in health.checks if c.status != "pass"]
    return ActionResult(f"{ctx.target.name} is {health.status} on re-check ({len(failing)} check(s) not passing)",
                        {"status": str(health.status), "server_version": health.server_version, "checks": failing},
                        changed=False)


def _cancel_long_queries(ctx: _Context) -> ActionResult:
    return _pg_cancel_long_queries(ctx.secret_loader(ctx.target), limit_s=ctx.config.long_query_limit_s,
                                   grace_s=ctx.config.cancel_grace_s, dry_run=ctx.dry_run)


def _end_idle_in_transaction(ctx: _Context) -> ActionResult:
    return _pg_end_idle_in_transaction(ctx.secret_loader(ctx.target),
                                       limit_s=ctx.config.idle_in_transaction_limit_s, dry_run=ctx.dry_run)


def _terminate_long_transactions(ctx: _Context) -> ActionResult:
    return _neo4j_terminate_long_transactions(ctx.secret_loader(ctx.target),
                                              limit_s=ctx.config.long_transaction_limit_s, dry_run=ctx.dry_run)


# -- PostgreSQL ----------------------------------------------------------------------------------

# Client sessions of other applications (never Warden's own, never this one) and their age.
_PG_SESSIONS = """
SELECT pid, usename AS user, application_name AS application, client_addr::text AS client, state,
       query_start, round(extract(epoch FROM now() - {since})::numeric, 1)::float AS seconds,
       left(query, 200) AS query
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND coalesce(application_name, '') NOT LIKE %(warden)s
  AND state = ANY(%(states)s) AND {since} < now() - make_interval(secs => %(limit)s)
ORDER BY {since}
"""


def _pg_rows(conn: Any, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(sql, params).fetchall())


def _pg_call(fn: Callable[[Any], ActionResult], secret: Any) -> ActionResult:
    import psycopg

    from warden.engines.postgres import connect

    try:
        with connect(secret, timeout=30) as conn:
            return fn(conn)
    except psycopg.Error as err:
        raise WardenError(f"PostgreSQL remediation failed: {str(err).strip().splitlines()[0]}") from None


def _public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "query_start"} for r in rows]


def _pg_cancel_long_queries(secret: Any, *, limit_s: float, grace_s: float, dry_run: bool) -> ActionResult:
    """Cancel queries running longer than `limit_s`; terminate those a cancel did not stop in `grace_s`."""
    def run(conn: Any) -> ActionResult:
        params = {"warden": f"{WARDEN_APP}%", "states": ["active"], "limit": limit_s}
        found = _pg_rows(conn, _PG_SESSIONS.format(since="query_start"), params)
        if dry_run or not found:
            verb = "would cancel" if dry_run else "found"
            return ActionResult(f"{verb} {len(found)} query(ies) running longer than {limit_s:g} s",
                                {"queries": _public(found), "limit_s": limit_s}, changed=False)
        # Only the very query that was found: same pid and same start (a pid can be reused).
        same = "SELECT {fn}(pid) FROM pg_stat_activity WHERE pid = %s AND query_start = %s AND state = 'active'"
        cancelled = [r for r in found if conn.execute(same.format(fn="pg_cancel_backend"),
                                                      (r["pid"], r["query_start"])).fetchone()]
        deadline = time.monotonic() + grace_s
        still: list[dict[str, Any]] = cancelled
        while still and time.monotonic() < deadline:
            time.sleep(0.2)
            still = [r for r in still if conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query_start = %s AND state = 'active'",
                (r["pid"], r["query_start"])).fetchone()]
        terminated = [r for r in still if conn.execute(same.format(fn="pg_terminate_backend"),
                                                       (r["pid"], r["query_start"])).fetchone()]
        return ActionResult(f"cancelled {len(cancelled)} query(ies) running longer than {limit_s:g} s, "
                            f"terminated {len(terminated)} that ignored the cancel",
                            {"cancelled": _public(cancelled), "terminated": [r["pid"] for r in terminated],
                             "limit_s": limit_s}, changed=bool(cancelled))
    return _pg_call(run, secret)


def _pg_end_idle_in_transaction(secret: Any, *, limit_s: float, dry_run: bool) -> ActionResult:
    """Terminate sessions idle in a transaction for longer than `limit_s` (they hold a connection
    slot, and locks, doing nothing)."""
    def run(conn: Any) -> ActionResult:
        params = {"warden": f"{WARDEN_APP}%", "limit": limit_s,
                  "states": ["idle in transaction", "idle in transaction (aborted)"]}
        found = _pg_rows(conn, _PG_SESSIONS.format(since="state_change"), params)
        if dry_run or not found:
            verb = "would end" if dry_run else "found"
            return ActionResult(f"{verb} {len(found)} session(s) idle in transaction longer than {limit_s:g} s",
                                {"sessions": _public(found), "limit_s": limit_s}, changed=False)
        ended = [r for r in found if conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = %s AND backend_start IS NOT NULL "
            "AND state LIKE 'idle in transaction%%' AND query_start = %s", (r["pid"], r["query_start"])).fetchone()]
        return ActionResult(f"ended {len(ended)} session(s) idle in transaction longer than {limit_s:g} s",
                            {"ended": _public(ended), "limit_s": limit_s}, changed=bool(ended))
    return _pg_call(run, secret)


# -- Neo4j ---------------------------------------------------------------------------------------

def _neo4j_terminate_long_transactions(secret: Any, *, limit_s: float, dry_run: bool) -> ActionResult:
    """TERMINATE TRANSACTIONS open longer than `limit_s`, but Warden's own."""
    import neo4j
    from neo4j.exceptions import Neo4jError, ServiceUnavailable

    from warden.engines.neo4j import driver

    try:
        with driver(secret, timeout=30).session(database=secret.database) as session:
            own = {r["connectionId"] for r in session.run(
                "CALL dbms.listConnections() YIELD connectionId, userAgent "
                "WHERE userAgent STARTS WITH $agent RETURN connectionId", agent=WARDEN_APP)}
            rows = [r.data() for r in session.run(neo4j.Query(
                "SHOW TRANSACTIONS YIELD transactionId, connectionId, username, clientAddress, metaData, "
                "currentQuery, elapsedTime, status "
                "WHERE elapsedTime.milliseconds >= $limit_ms "
                "RETURN transactionId, connectionId, username, clientAddress, metaData, currentQuery, "
                "elapsedTime.milliseconds / 1000.0 AS seconds, status", timeout=30), limit_ms=int(limit_s * 1000))]
            found = [{"id": r["transactionId"], "user": r["username"], "client": r["clientAddress"],
                      "seconds": round(r["seconds"], 1), "query": (r["currentQuery"] or "")[:200]}
                     for r in rows if r["connectionId"] not in own
                     and not str((r["metaData"] or {}).get("app", "")).startswith(WARDEN_APP)]
            if dry_run or not found:
                verb = "would terminate" if dry_run else "found"
                return ActionResult(f"{verb} {len(found)} transaction(s) open longer than {limit_s:g} s",
                                    {"transactions": found, "limit_s": limit_s}, changed=False)
            done = [r.data() for r in session.run("TERMINATE TRANSACTIONS $ids YIELD transactionId, message "
                                                  "RETURN transactionId, message", ids=[f["id"] for f in found])]
    except (ServiceUnavailable, OSError) as err:
        raise WardenError(f"Neo4j at {secret.uri} unavailable: {err}") from None
    except Neo4jError as err:
        raise WardenError(f"Neo4j remediation failed: {err.code}") from None
    terminated = [d["transactionId"] for d in done if "terminated" in str(d["message"]).lower()]
    return ActionResult(f"terminated {len(terminated)} transaction(s) open longer than {limit_s:g} s",
                        {"transactions": found, "terminated": terminated, "results": done, "limit_s": limit_s},
                        changed=bool(terminated))


_RUNNERS: dict[str, Callable[[_Context], ActionResult]] = {
    "start_backup": _start_backup,
    "cancel_long_queries": _cancel_long_queries,
    "end_idle_in_transaction": _end_idle_in_transaction,
    "terminate_long_transactions": _terminate_long_transactions,
    "prune": _prune,
    "recheck_health": _recheck_health,
}
