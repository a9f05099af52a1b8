"""Licence checks of targets (the daily `license_check` job).

Neo4j tells its edition and version (`dbms.components()`) but not when a commercial licence ends, so
the expiry date is configuration (`Target.license.expiry`); an evaluation licence tells its days
left through `dbms.licenseAgreementDetails()` (Enterprise only: Community has no such procedure).
Community targets and PostgreSQL targets are "not applicable", never a failure.

`decide` is the whole policy, pure: edition, configured expiry, agreement details and today in;
status, days left and a message out.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from warden.checks import MetricPoint, spawn_daemon
from warden.config.base import Model
from warden.config.credentials import Neo4jSecret
from warden.config.health import LicenseConfig, license_of
from warden.config.target import Engine, Target
from warden.engines import engine_for
from warden.errors import DatabaseError, DatabaseUnavailable, WardenError
from warden.stores.secrets import load_secret

log = logging.getLogger(__name__)

LICENSE_TIMEOUT = 10.0


class LicenseStatus(StrEnum):
    OK = "ok"
    WARNING = "warning"  # expires within warn_days
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # Enterprise without a configured expiry date
    NOT_APPLICABLE = "not_applicable"  # Community, PostgreSQL
    ERROR = "error"  # could not be checked (server down, credentials, timeout)


_RANK = {LicenseStatus.OK: 0, LicenseStatus.NOT_APPLICABLE: 0, LicenseStatus.UNKNOWN: 1,
         LicenseStatus.WARNING: 1, LicenseStatus.ERROR: 2, LicenseStatus.EXPIRED: 2}





class TargetLicense(Model):
    target: str
    engine: Engine
    status: LicenseStatus
    message: str
    edition: str | None = None
    version: str | None = None
    days_left: int | None = None
    expires_on: date | None = None
    evaluation: bool = False
    checked_at: str


class LicenseReport(Model):
    stage: str
    status: LicenseStatus  # the worst of the targets'
    targets: list[TargetLicense]


@dataclass(frozen=True)
class Agreement:
    """What `dbms.licenseAgreementDetails()` answers: status `yes` (accepted), `no`, `eval` (an
    evaluation licence, `days_left` of `total_days`) or `expired` (evaluation over)."""

    status: str
    days_left: int | None = None
    total_days: int | None = None


@dataclass(frozen=True)
class Decision:
    status: LicenseStatus
    days_left: int | None
    message: str
    expires_on: date | None = None
    evaluation: bool = False


def decide(edition: str | None, *, expiry: date | None, warn_days: int, today: date,
           agreement: Agreement | None = None) -> Decision:
    """The licence policy. Community → not applicable. An evaluation licence → its own days left.
    Enterprise → days until the configured expiry: expired past it, warning within `warn_days`,
    unknown when no expiry is configured (worth a look, not an outage)."""
    if (edition or "").lower() != "enterprise":
        return Decision(LicenseStatus.NOT_APPLICABLE, None, f"{edition or 'this'} edition needs no licence")
    if agreement is not None and agreement.status == "expired":
        return Decision(LicenseStatus.EXPIRED, 0, "evaluation licence expired", evaluation=True)
    if agreement is not None and agreement.status == "eval" and agreement.days_left is not None:
        days = agreement.days_left
        status = LicenseStatus.WARNING if days <= warn_days else LicenseStatus.OK
        total = f" of {agreement.total_days}" if agreement.total_days else ""
        return Decision(status, days, f"evaluation licence: {days}{total} days left", evaluation=True)
    if agreement is not None and agreement.status == "no":
        return Decision(LicenseStatus.WARNING, None, "Enterprise licence agreement not accepted")
    if expiry is None:
        return Decision(LicenseStatus.UNKNOWN, None, "Enterprise edition, but no licence expiry is configured "
                        "(set license.expiry on the target)")
    days = (expiry - today).days
    if days < 0:
        return Decision(LicenseStatus.EXPIRED, days, f"licence expired on {expiry} ({-days} days ago)", expiry)
    status = LicenseStatus.WARNING if days <= warn_days else LicenseStatus.OK
    return Decision(status, days, f"licence expires on {expiry}: {days} days left", expiry)


def read_agreement(secret: Neo4jSecret, *, timeout: float) -> Agreement | None:
    """`dbms.licenseAgreementDetails()` where the server has it; None where it does not (Community)."""
    import neo4j
    from neo4j.exceptions import ClientError, Neo4jError, ServiceUnavailable

    from warden.engines.neo4j import driver

    query = neo4j.Query("CALL dbms.licenseAgreementDetails()", timeout=timeout)
    try:
        with driver(secret, timeout=timeout).session(database="system") as session:
            records = [r.data() for r in session.run(query)]
    except ClientError as err:
        if err.code == "Neo.ClientError.Procedure.ProcedureNotFound":
            return None
        raise DatabaseError(f"Neo4j licence query failed: {err.code}") from None
    except (ServiceUnavailable, OSError) as err:
        raise DatabaseUnavailable(f"Neo4j at {secret.uri} unavailable: {err}") from None
    except Neo4jError as err:
        raise DatabaseError(f"Neo4j licence query failed: {err.code}") from None
    if not records:
        return None
    row = records[0]
    return Agreement(status=str(row.get("status", "")).lower(), days_left=_int(row.get("daysLeftOnTrial")),
                     total_days=_int(row.get("totalTrialDays")))


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def check_license(target: Target, *, config: LicenseConfig | None = None, today: date | None = None,
                  timeout: float = 5.0) -> TargetLicense:
    """The licence of one target (connects to Neo4j targets only)."""
    config = config or license_of(target)
    today = today or datetime.now(UTC).date()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if target.engine is not Engine.NEO4J:
        return TargetLicense(target=target.name, engine=target.engine, status=LicenseStatus.NOT_APPLICABLE,
                             message="PostgreSQL needs no licence", edition="postgresql", checked_at=now)
    try:
        secret = load_secret(target)
        info = engine_for(target.engine).server_info(secret, timeout=timeout)
        agreement = read_agreement(secret, timeout=timeout) if info.edition.lower() == "enterprise" else None
    except WardenError as err:
        return TargetLicense(target=target.name, engine=target.engine, status=LicenseStatus.ERROR,
                             message=f"licence not checked: {err}", checked_at=now)
    decision = decide(info.edition, expiry=config.expiry, warn_days=config.warn_days, today=today,
                      agreement=agreement)
    return TargetLicense(target=target.name, engine=target.engine, status=decision.status,
                         message=decision.message, edition=info.edition, version=info.version,
                         days_left=decision.days_left, expires_on=decision.expires_on,
                         evaluation=decision.evaluation, checked_at=now)


def check_licenses(stage: str, targets: Iterable[Target], *, configs: Mapping[str, LicenseConfig] | None = None,
                   today: date | None = None, timeout: float = 5.0) -> LicenseReport:
    """Every target concurrently; a target that does not answer within LICENSE_TIMEOUT is an error."""
    targets, configs = list(targets), configs or {}
    futures = [spawn_daemon(functools.partial(check_license, t, config=configs.get(t.name), today=today,
                                              timeout=timeout), name=f"license-{t.name}") for t in targets]
    results = []
    for target, future in zip(targets, futures, strict=True):
        try:
            results.append(future.result(timeout=max(LICENSE_TIMEOUT, 2 * timeout)))
        except FutureTimeout:
            results.append(TargetLicense(target=target.name, engine=target.engine, status=LicenseStatus.ERROR,
                                         message="licence check timed out",
                                         checked_at=datetime.now(UTC).isoformat(timespec="seconds")))
    worst = max((r.status for r in results), key=_RANK.__getitem__, default=LicenseStatus.NOT_APPLICABLE)
    return LicenseReport(stage=stage, status=worst, targets=results)


def license_metric_points(report: LicenseReport) -> list[MetricPoint]:
    """`LicenseDaysLeft` {Stage, Target} for every target whose days left are known (docs/metrics.md)."""
    return [MetricPoint("LicenseDaysLeft", "Count", float(t.days_left), {"Stage": report.stage, "Target": t.target})
            for t in report.targets if t.days_left is not None]


def format_license_text(report: LicenseReport) -> str:
    lines = [f"stage {report.stage}: licences {report.status.value}"]
    for t in report.targets:
        lines.append(f"  {t.target:<24} [{t.status.value:<14}] {t.message}")
    return "\n".join(lines)
