"""Recovery: restore → validation → approval → promotion, with rollback. The Recovery state machine
(infra/recovery.py) sequences these steps; each is one invocation of the recovery function, but for
restore and validation when Preflight chose the Fargate runner (`Plan.runner`, docs/fargate.md):
then each is an ECS task (`python -m warden.task recovery`, warden.task_recovery).

Production is touched only in Promote. Everything before works on staging, so any failure,
rejection or timeout before Promote leaves production untouched; Rollback undoes what Promote did
(swap back, or restore the safety backup) and cleans staging. Each step records its progress in the
target's recovery state record (state table, `recovery#<target>` / `current`), and is audited.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from warden.backup import restore_backup, run_backup, verify_backup
from warden.config.backup import RDS_SNAPSHOT
from warden.config.credentials import DatabaseSecret, PostgresSecret
from warden.config.protection import ReplicaSettings
from warden.config.target import Engine, Target
from warden.engines import engine_for
from warden.engines.base import RestoreRefused
from warden.errors import ConfigError, WardenError
from warden.events import RecoveryInput
from warden.models import GOOD_BACKUP, BackupStatus, RecoveryState, RecoveryStatus
from warden.replication import source_stores
from warden.runner import choose_recovery, fargate_available, stop_task_runs, task_sizes
from warden.snapshot_backup import restore_refusal
from warden.stores import CatalogStore, Stores
from warden.stores.catalog import BackupNotFound
from warden.stores.clients import aws_client
from warden.stores.leases import Lease, LeaseHeld
from warden.stores.recovery_state import StateStore

ACTIVE_PARAMETER = "/warden/{stage}/active/{target}"

logger = logging.getLogger(__name__)


class RecoveryRefused(ConfigError):
    """Preflight refused the recovery (bad input, unusable backup, target busy): nothing touched."""


class ValidationFailed(WardenError):
    """The restored copy does not match its manifest or is not healthy: it is not promoted."""




@dataclass
class Plan:
    """What Preflight decided; passed between the steps through the execution's state."""

    target: str
    backup_id: str
    promotion: str
    approval: str
    execution: str
    staging: dict[str, Any]  # {"kind": "database", "name": ...} or {"kind": "secret", "name": ...}
    source: str = "primary"  # or "replica": data and manifest are read from the replica bucket
    runner: str = "lambda"  # or "fargate": restore and validate run as ECS tasks (a plan without it: Lambda)
    # The tasks' size and limits (warden.runner.task_sizes) when the runner is fargate; the RunTask states read them.
    task: dict[str, Any] | None = None

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> Plan:
        return cls(**{k: data[k] for k in ("target", "backup_id", "promotion", "approval", "execution", "staging")},
                   source=data.get("source", "primary"), runner=data.get("runner") or "lambda",
                   task=data.get("task"))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- the state record ---------------------------------------------------------------------------



# -- helpers ------------------------------------------------------------------------------------

def _actor(execution: str) -> str:
    return f"execution:{execution}"


def _audit(stores: Stores, plan_or_target: Plan | str, step: str, outcome: str, **details: Any) -> None:
    target = plan_or_target if isinstance(plan_or_target, str) else plan_or_target.target
    execution = "" if isinstance(plan_or_target, str) else plan_or_target.execution
    stores.audit.audit(target=target, operation="recovery", step=step, outcome=outcome,
                    actor=_actor(execution) if execution else details.pop("actor", "recovery"),
                    backup_id=None if isinstance(plan_or_target, str) else plan_or_target.backup_id, **details)


def _need(value: str | None, what: str) -> str:
    if not value:
        raise ConfigError(f"the stage lacks {what}")
    return value


def _catalog(stores: Stores) -> CatalogStore:
    _need(stores.settings.catalog_table, "a catalog table")
    return stores.catalog


def staging_secret(stores: Stores, target: Target, production: DatabaseSecret) -> tuple[DatabaseSecret,
                                                                                               dict[str, Any]]:
    """The database a recovery restores into before promotion."""
    config = target.recovery
    if config.staging_secret_name:
        # The target itself with the staging secret: its TLS rule applies to staging too.
        staged = target.model_copy(update={"secret_name": config.staging_secret_name})
        return stores.secrets.load(staged), {"kind": "secret", "name": config.staging_secret_name}
    if isinstance(production, PostgresSecret):
        name = config.staging_database or f"{production.dbname}_warden_staging"[:63]
        return production.model_copy(update={"dbname": name}), {"kind": "database", "name": name}
    if config.staging_database:  # Neo4j Enterprise: another database on the same server
        return production.model_copy(update={"database": config.staging_database}), {
            "kind": "database", "name": config.staging_database}
    raise ConfigError(f"target {target.name}: Neo4j Community has one database per server; set "
                      "recovery.staging_secret_name to a Neo4j Warden may restore into")


def _staging_for(stores: Stores, plan: Plan) -> tuple[Target, DatabaseSecret, DatabaseSecret]:
    target = stores.targets.get(plan.target)
    production = stores.secrets.load(target)
    staging, _ = staging_secret(stores, target, production)
    return target, production, staging


# -- steps --------------------------------------------------------------------------------------

def _read_stores(stores: Stores, source: str, replica: ReplicaSettings | None) -> Stores:
    """Where the backup's bytes are read: the stage's bucket, or (source "replica") the replica's."""
    if source != "replica":
        return stores
    try:
        return source_stores(stores, replica)
    except ConfigError as err:
        raise RecoveryRefused(f"source 'replica': {err}") from None


# A backup whose primary copy is damaged or gone (verify found it CORRUPT) may still have a good replica.
_REPLICA_USABLE = frozenset({*GOOD_BACKUP, BackupStatus.CORRUPT})


def _replica_backup(read: Stores, catalog: CatalogStore, target: str, backup_id: str, execution: str) -> str:
    """The backup a recovery from the replica uses: one with a COMPLETED replica (`latest`: the newest),
    whose replica is verified against the catalog's SHA-256 now unless the record is VERIFIED."""
    if backup_id == "latest":
        record = next((r for r in catalog.list(target)
                       if r.replica == "COMPLETED" and r.status in _REPLICA_USABLE), None)
        if record is None:
            raise RecoveryRefused(f"{target} has no backup with a COMPLETED replica to recover from")
    else:
        try:
            record = catalog.get(target, backup_id)
        except BackupNotFound as err:
            raise RecoveryRefused(str(err)) from None
        if record.replica != "COMPLETED" or record.status not in _REPLICA_USABLE:
            raise RecoveryRefused(f"backup {record.backup_id} ({record.status}) has no COMPLETED replica "
                                  f"(replica: {record.replica}); verify records it once S3 has copied the backup")
    if record.method == RDS_SNAPSHOT:
        raise RecoveryRefused(restore_refusal(record))
    if record.status is not BackupStatus.VERIFIED:
        checked = verify_backup(read, target, record.backup_id, actor=_actor(execution))
        if checked.status is not BackupStatus.VERIFIED:
            raise RecoveryRefused(f"the replica of backup {record.backup_id} failed verification: {checked.error}")
    return record.backup_id


def preflight(stores: Stores, raw_input: dict[str, Any], execution: str,
              replica: ReplicaSettings | None = None) -> Plan:
    """Check everything before touching anything; take the target's lease for the whole recovery.

    With `"source": "replica"` the backup must have a COMPLETED replica (`latest`: the newest backup
    that has one, even if its primary copy was found CORRUPT), verified now, and the steps read it
    from the replica bucket.
    """
    try:
        request = RecoveryInput.model_validate(raw_input)
    except PydanticValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in err.errors())
        raise RecoveryRefused(f"bad recovery input: {problems}") from None
    _need(stores.settings.state_table, "a state table")
    target = stores.targets.get(request.target)
    read = _read_stores(stores, request.source, replica)
    if request.promotion == "in-place" and target.backup.method == RDS_SNAPSHOT:
        raise RecoveryRefused(f"{target.name} backs up by rds-snapshot: an in-place promotion's safety backup "
                              "would be a snapshot Warden cannot restore on rollback; use swap, or restore with RDS")
    catalog = _catalog(stores)
    if request.source == "replica":
        backup_id = _replica_backup(read, catalog, target.name, request.backup_id, execution)
    elif request.backup_id == "latest":
        newest = catalog.latest(target.name, frozenset({BackupStatus.VERIFIED}))
        if newest is None:
            raise RecoveryRefused(f"{target.name} has no VERIFIED backup to recover from")
        if newest.method == RDS_SNAPSHOT:  # RDS restores snapshots, not Warden
            raise RecoveryRefused(restore_refusal(newest))
        backup_id = newest.backup_id
    else:
        try:
            record = catalog.get(target.name, request.backup_id)
        except BackupNotFound as err:
            raise RecoveryRefused(str(err)) from None
        if record.method == RDS_SNAPSHOT:
            raise RecoveryRefused(restore_refusal(record))
        if record.status not in GOOD_BACKUP:
            raise RecoveryRefused(f"backup {record.backup_id} is {record.status}; only VERIFIED (or COMPLETED, "
                                  "re-verified now) backups are recovered")
        if record.status is BackupStatus.COMPLETED:
            checked = verify_backup(stores, target.name, record.backup_id, actor=_actor(execution))
            if checked.status is not BackupStatus.VERIFIED:
                raise RecoveryRefused(f"backup {record.backup_id} failed verification: {checked.error}")
        backup_id = record.backup_id
    production = stores.secrets.load(target)
    staging, staging_ref = staging_secret(stores, target, production)
    chosen = catalog.get(target.name, backup_id)
    try:
        runner = choose_recovery(target, catalog, chosen, available=fargate_available(stores.settings))
    except ConfigError as err:
        raise RecoveryRefused(str(err)) from None
    task = task_sizes(target, spool_bytes=chosen.size_bytes) if runner.runner == "fargate" else None
    # The lease outlives the steps: a restore and a validation on Fargate may each take their task's timeout.
    ttl = target.recovery.approval_timeout_s + 4 * 3600 + (2 * task["timeout_s"] if task else 0)
    try:
        lease, _ = stores.leases.acquire(target.name, execution, "recovery", ttl)
    except LeaseHeld as held:
        raise RecoveryRefused(f"{target.name} is busy: {held}") from None
    try:
        _check_staging_reachable(target, staging)
        plan = Plan(target=target.name, backup_id=backup_id, promotion=request.promotion, approval=request.approval,
                    execution=execution, staging=staging_ref, source=request.source, runner=runner.runner, task=task)
        stores.recovery_state.put(RecoveryState(
            target=target.name, status=RecoveryStatus.RECOVERING, execution=execution, backup_id=backup_id,
            promotion=request.promotion, approval=request.approval, started_at=datetime.now(UTC),
            progress=["preflight"]))
    except BaseException:
        stores.leases.release(lease)
        raise
    _audit(stores, plan, "preflight", "ok", promotion=plan.promotion, approval=plan.approval,
           requested_by=request.requested_by, source=plan.source, runner=plan.runner, runner_reason=runner.reason)
    return plan


def _check_staging_reachable(target: Target, staging: DatabaseSecret) -> None:
    """Staging must answer (PostgreSQL: its server; the database itself is created by the restore)."""
    engine_for(target.engine).check_reachable(staging)


def restore(stores: Stores, plan: Plan, replica: ReplicaSettings | None = None) -> dict[str, Any]:
    """Restore the backup into staging (replacing whatever an earlier run left there)."""
    _need(stores.settings.state_table, "a state table")
    stores.recovery_state.update(plan.target, plan.execution, status=RecoveryStatus.RECOVERING)
    target, _, staging = _staging_for(stores, plan)
    started = time.monotonic()
    result = restore_backup(_read_stores(stores, plan.source, replica), target, plan.backup_id, staging,
                            actor=_actor(plan.execution), replace=True)
    stores.recovery_state.update(plan.target, plan.execution, step_done="restore")
    _audit(stores, plan, "restore", "ok", staging=plan.staging, seconds=round(time.monotonic() - started, 2))
    return {"counts": result.counts, "seconds": round(time.monotonic() - started, 2)}


def validate(stores: Stores, plan: Plan, replica: ReplicaSettings | None = None) -> dict[str, Any]:
    """Compare staging with the backup's manifest (counts, schema) and check it answers."""
    _need(stores.settings.state_table, "a state table")
    stores.recovery_state.update(plan.target, plan.execution, status=RecoveryStatus.VALIDATION)
    target, _, staging = _staging_for(stores, plan)
    record = _catalog(stores).get(plan.target, plan.backup_id)
    read = _read_stores(stores, plan.source, replica)
    _need(read.settings.bucket, "a bucket")
    manifest = read.artifacts.get_json(record.manifest_key or "", record.manifest_version_id)
    engine = engine_for(target.engine)
    errors: list[str] = []
    warnings: list[str] = []  # index states as the source's (an index FAILED there fails here too)
    try:
        engine.server_info(staging)
        counts = engine.count_objects(staging)
        errors, warnings = engine.compare_indexes(staging, manifest)
    except WardenError as err:
        errors.append(f"staging does not answer: {err}")
        counts = {}
    expected = manifest.get("counts", {})
    for key in sorted(set(expected) | set(counts)):
        if expected.get(key) != counts.get(key):
            errors.append(f"{key}: backup has {expected.get(key)}, staging has {counts.get(key)}")
    stores.recovery_state.update(plan.target, plan.execution, validation_errors=errors, step_done="validate")
    if errors:
        _audit(stores, plan, "validate", "failed", errors=errors[:50])
        raise ValidationFailed(f"{len(errors)} validation error(s): {'; '.join(errors[:5])}")
    _audit(stores, plan, "validate", "ok", objects=sum(counts.values()), **({"warnings": warnings} if warnings else {}))
    return {"counts": counts, **({"warnings": warnings} if warnings else {})}


def request_approval(stores: Stores, plan: Plan, task_token: str) -> None:
    """Manual approval: keep the task token on the record and ask the operators through SNS."""
    _need(stores.settings.state_table, "a state table")
    stores.recovery_state.update(plan.target, plan.execution, status=RecoveryStatus.AWAITING_APPROVAL,
                             task_token=task_token)
    if stores.settings.topic_arn:
        aws_client("sns").publish(
            TopicArn=stores.settings.topic_arn,
            Subject=f"Warden {stores.settings.stage}: approve recovery of {plan.target}?"[:100],
            Message=(f"Recovery of {plan.target} from backup {plan.backup_id} passed validation and waits for "
                     f"approval to promote ({plan.promotion}).\n\n"
                     f"  warden --stage {stores.settings.stage} recovery approve --target {plan.target}\n"
                     f"  warden --stage {stores.settings.stage} recovery reject --target {plan.target}\n\n"
                     f"Execution: {plan.execution}"))
    _audit(stores, plan, "approval", "requested")


def answer_approval(stores: Stores, target: str, *, approve: bool, actor: str, reason: str = "") -> str:
    """`warden recovery approve|reject`: answer the waiting task token. Returns the execution."""
    _need(stores.settings.state_table, "a state table")
    state = stores.recovery_state.get(target)
    if state.status is not RecoveryStatus.AWAITING_APPROVAL or not state.task_token:
        raise ConfigError(f"no recovery of {target} is waiting for approval (status {state.status})")
    cause = f"rejected by {actor}" + (f": {reason}" if reason else "")
    # The token leaves the record before the answer is sent: once answered, the execution moves on
    # and writes the record itself. A rejection's reason goes on the record first: Rollback keeps it.
    stores.recovery_state.update(target, state.execution or "", task_token=None,
                                 **({} if approve else {"error": f"Rejected: {cause}"}))
    sfn = aws_client("stepfunctions")
    if approve:
        sfn.send_task_success(taskToken=state.task_token, output=json.dumps({"approved_by": actor}))
    else:
        sfn.send_task_failure(taskToken=state.task_token, error="Rejected", cause=cause)
    stores.audit.audit(target=target, operation="recovery",
                    step="approve" if approve else "reject", outcome="ok", actor=actor, backup_id=state.backup_id,
                    **({} if approve else {"reason": reason}))
    return state.execution or ""


def promote(stores: Stores, plan: Plan, replica: ReplicaSettings | None = None) -> dict[str, Any]:
    """Make the validated copy production (swap or in-place); `none` (a drill) promotes nothing."""
    _need(stores.settings.state_table, "a state table")
    store = stores.recovery_state
    if plan.promotion == "none":
        store.update(plan.target, plan.execution, status=RecoveryStatus.RECOVERY_SUCCESS, step_done="promote:none")
        return {"promoted": False}
    target, production, _ = _staging_for(stores, plan)
    if plan.promotion == "swap":
        if plan.staging["kind"] == "database" and isinstance(production, PostgresSecret):
            from warden.engines.postgres.promote import _rename_swap  # psycopg: PostgreSQL swaps only

            previous = _rename_swap(production, plan.staging["name"])
            store.update(plan.target, plan.execution, previous_database=previous, step_done="promote:swapped")
        else:
            previous_active = _move_active_pointer(stores, plan)
            store.update(plan.target, plan.execution, previous_active=previous_active,
                         step_done="promote:pointer-moved")
    else:  # in-place: a safety backup of production first, then restore into production
        lease = stores.leases.get(plan.target)
        if lease is None or lease.owner != plan.execution:
            raise WardenError(f"{plan.target}: this recovery no longer holds the target's lease")
        safety = run_backup(stores, target, actor=_actor(plan.execution), trigger="recovery", held_lease=lease)
        assert safety.record is not None
        verify_backup(stores, target.name, safety.record.backup_id, actor=_actor(plan.execution))
        store.update(plan.target, plan.execution, safety_backup_id=safety.record.backup_id,
                     step_done="promote:safety-backup")
        store.update(plan.target, plan.execution, step_done="promote:in-place-started")
        restore_backup(_read_stores(stores, plan.source, replica), target, plan.backup_id, production,
                       actor=_actor(plan.execution), replace=True)
        store.update(plan.target, plan.execution, step_done="promote:in-place-restored")
    store.update(plan.target, plan.execution, status=RecoveryStatus.PROMOTED)
    _audit(stores, plan, "promote", "ok", promotion=plan.promotion)
    return {"promoted": True}










def _move_active_pointer(stores: Stores, plan: Plan) -> str:
    """The active-endpoint parameter applications read moves to the validated copy."""
    ssm = aws_client("ssm")
    name = ACTIVE_PARAMETER.format(stage=stores.settings.stage, target=plan.target)
    try:
        previous = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        previous = json.dumps({"secret_name": stores.targets.get(plan.target).secret_name})
    ssm.put_parameter(Name=name, Value=json.dumps({"secret_name": plan.staging["name"]}), Type="String",
                      Overwrite=True)
    return str(previous)


def finish(stores: Stores, plan: Plan) -> dict[str, Any]:
    """Record the outcome and the measured RTO, give the lease back; a drill's evidence goes on the backup."""
    _need(stores.settings.state_table, "a state table")
    store = stores.recovery_state
    state = store.get(plan.target)
    finished = datetime.now(UTC)
    rto = round((finished - state.started_at).total_seconds(), 2) if state.started_at else None
    state = store.update(plan.target, plan.execution, finished_at=finished, rto_s=rto, step_done="finish")
    if plan.promotion == "none":
        catalog = _catalog(stores)
        record = catalog.get(plan.target, plan.backup_id)
        record.last_drill = {"at": finished.isoformat(), "rto_s": rto, "execution": plan.execution,
                             "result": "passed", "validated": "counts and schema match the manifest"}
        catalog.save(record)
    _release(stores, plan)
    _cleanup_staging(stores, plan, promoted=state.status is RecoveryStatus.PROMOTED)
    _audit(stores, plan, "finish", "ok", status=state.status.value, rto_s=rto)
    return {"status": state.status.value, "rto_s": rto}


def rollback(stores: Stores, plan: Plan, error: dict[str, Any] | None) -> dict[str, Any]:
    """Undo what Promote did (by the recorded progress), clean staging, mark RECOVERY_FAILED."""
    _need(stores.settings.state_table, "a state table")
    stopped = _stop_tasks(stores, plan)
    store = stores.recovery_state
    state = store.get(plan.target)
    done = set(state.progress)
    undone: list[str] = []
    target = stores.targets.get(plan.target)
    production = stores.secrets.load(target)
    if "promote:swapped" in done and state.previous_database and isinstance(production, PostgresSecret):
        from warden.engines.postgres.promote import _swap_back  # psycopg: PostgreSQL swaps only

        _swap_back(production, state.previous_database, plan.staging["name"])
        undone.append("swapped back")
    if "promote:pointer-moved" in done and state.previous_active:
        aws_client("ssm").put_parameter(Name=ACTIVE_PARAMETER.format(stage=stores.settings.stage, target=plan.target),
                                        Value=state.previous_active, Type="String", Overwrite=True)
        undone.append("active pointer moved back")
    if "promote:in-place-started" in done and state.safety_backup_id:
        restore_backup(stores, target, state.safety_backup_id, production, actor=_actor(plan.execution),
                       replace=True)
        undone.append(f"production restored from safety backup {state.safety_backup_id}")
    # A failure that came without its cause (moto drops send_task_failure's) keeps what the record
    # says already: the operator's rejection and reason (answer_approval), or the first rollback's.
    reason = state.error if state.error and not (error or {}).get("Cause") else _describe(error)
    store.update(plan.target, plan.execution, status=RecoveryStatus.RECOVERY_FAILED, error=reason,
                 finished_at=datetime.now(UTC), task_token=None, step_done="rollback")
    _release(stores, plan)
    _cleanup_staging(stores, plan, promoted=False)
    extra = {"stopped_tasks": stopped} if stopped else {}
    _audit(stores, plan, "rollback", "ok", error=reason, undone=undone, **extra)
    return {"status": RecoveryStatus.RECOVERY_FAILED.value, "error": reason, "undone": undone, **extra}


def _stop_tasks(stores: Stores, plan: Plan) -> list[str]:
    """Stop the execution's restore or validation task if one still runs: a heartbeat timeout ends
    its state, not the task, which would go on writing into staging while Rollback cleans it up.
    On a stage that starts tasks, whatever the plan's runner (a cancel's plan does not know it)."""
    if not stores.settings.task_cluster:
        return []
    from botocore.exceptions import ClientError

    name = plan.execution.rsplit(":", 1)[-1]  # RunTask's group is the execution's name, the plan has its ARN
    try:
        return stop_task_runs(stores.settings, name, f"recovery {name} rolled back")
    except ClientError as err:  # roll back all the same
        logger.warning("rollback: tasks not stopped", extra={"target": plan.target, "error": str(err)})
        return []


def cancel(stores: Stores, target: str, *, actor: str) -> RecoveryState:
    """`warden recovery cancel`: the caller has stopped the execution; roll back what it did."""
    _need(stores.settings.state_table, "a state table")
    state = stores.recovery_state.get(target)
    if state.execution is None or state.status in (RecoveryStatus.PROMOTED, RecoveryStatus.RECOVERY_FAILED,
                                                   RecoveryStatus.NOT_RECOVERING) or state.finished_at:
        raise ConfigError(f"no recovery of {target} is running (status {state.status})")
    staging_ref = _staging_ref(stores, target)
    plan = Plan(target=target, backup_id=state.backup_id or "", promotion=state.promotion or "none",
                approval=state.approval or "auto", execution=state.execution, staging=staging_ref)
    rollback(stores, plan, {"Error": "Cancelled", "Cause": f"cancelled by {actor}"})
    return stores.recovery_state.get(target)


def _staging_ref(stores: Stores, target_name: str) -> dict[str, Any]:
    target = stores.targets.get(target_name)
    return staging_secret(stores, target, stores.secrets.load(target))[1]


def _release(stores: Stores, plan: Plan) -> None:
    _need(stores.settings.state_table, "a state table")
    leases = stores.leases
    held = leases.get(plan.target)
    if held is not None and held.owner == plan.execution:
        leases.release(Lease(target=plan.target, owner=plan.execution, operation="recovery", expires_at=0))


def _cleanup_staging(stores: Stores, plan: Plan, *, promoted: bool) -> None:
    """A same-server PostgreSQL staging database is dropped unless it became production."""
    if plan.staging.get("kind") != "database" or (promoted and plan.promotion == "swap"):
        return
    target = stores.targets.get(plan.target)
    production = stores.secrets.load(target)
    if not isinstance(production, PostgresSecret) or target.engine is not Engine.POSTGRES:
        return
    from psycopg import sql

    from warden.engines.postgres import connect
    from warden.engines.postgres.promote import _maintenance_db, _terminate

    with connect(production, dbname=_maintenance_db(production), timeout=60) as conn:
        _terminate(conn, [plan.staging["name"]])
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(plan.staging["name"])))


def _describe(error: dict[str, Any] | None) -> str:
    if not error:
        return "unknown error"
    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
        cause = f"{parsed.get('errorType', '')}: {parsed.get('errorMessage', cause)}"
    except (ValueError, TypeError, AttributeError):
        pass
    return f"{error.get('Error', 'Error')}: {cause}"[:2000]


__all__ = ["Plan", "RecoveryRefused", "RecoveryState", "RestoreRefused", "StateStore", "ValidationFailed",
           "answer_approval", "cancel", "finish", "preflight", "promote", "request_approval", "restore",
           "rollback", "validate"]
