"""The append-only audit trail: one item per step of every operation, never updated or deleted
(the functions' IAM allows PutItem only, and each put is conditional on a new key)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from warden.errors import WardenError
from warden.models import AuditEntry
from warden.stores.clients import aws_client, from_dynamodb, to_dynamodb

_SK_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


class AuditError(WardenError):
    """The audit trail could not be written: the operation must not claim success."""


def record(table: str, entry: AuditEntry) -> AuditEntry:
    """Append one entry. The sort key (time + random suffix) makes every put a new item."""
    sk = f"{entry.at.astimezone(UTC).strftime(_SK_TIME)}#{uuid.uuid4().hex[:12]}"
    item = {
        "pk": f"target#{entry.target}",
        "sk": sk,
        "operation": entry.operation,
        "step": entry.step,
        "outcome": entry.outcome,
        "actor": entry.actor,
        "details": json.dumps(entry.details, default=str, sort_keys=True),
    }
    if entry.backup_id:
        item["backup_id"] = entry.backup_id
    try:
        aws_client("dynamodb").put_item(
            TableName=table,
            Item={k: to_dynamodb(v) for k, v in item.items()},
            ConditionExpression="attribute_not_exists(pk)",
        )
    except ClientError as err:
        raise AuditError(f"cannot write audit entry for {entry.target}: {err}") from err
    return entry


def audit(table: str | None, *, target: str, operation: str, step: str, outcome: str, actor: str,
          backup_id: str | None = None, **details: Any) -> AuditEntry | None:
    """Convenience: build and append an entry (no-op when the stage has no audit table)."""
    entry = AuditEntry(target=target, at=datetime.now(UTC), operation=operation, step=step, outcome=outcome,
                       actor=actor, backup_id=backup_id, details=details)
    return record(table, entry) if table else None


def tail(table: str, target: str, limit: int = 50) -> list[AuditEntry]:
    """The newest `limit` entries of a target, newest first."""
    response = aws_client("dynamodb").query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"target#{target}"}},
        ScanIndexForward=False,
        Limit=limit,
    )
    return [_entry(target, raw) for raw in response.get("Items", [])]


def between(table: str, target: str, start: datetime, end: datetime) -> list[AuditEntry]:
    """The target's entries from `start` to `end`, oldest first (sort keys start with the time)."""
    kwargs = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :a AND :b",
        "ExpressionAttributeValues": {":pk": {"S": f"target#{target}"},
                                      ":a": {"S": start.astimezone(UTC).strftime(_SK_TIME)},
                                      ":b": {"S": end.astimezone(UTC).strftime(_SK_TIME)}},
    }
    try:
        return [_entry(target, raw) for page in aws_client("dynamodb").get_paginator("query").paginate(**kwargs)
                for raw in page.get("Items", [])]
    except ClientError as err:
        raise AuditError(f"cannot read the audit trail of {target}: {err.response['Error']['Code']}") from err


def _entry(target: str, raw: dict[str, Any]) -> AuditEntry:
    item = {k: from_dynamodb(v) for k, v in raw.items()}
    at = datetime.strptime(item["sk"].split("#")[0], _SK_TIME).replace(tzinfo=UTC)
    return AuditEntry(target=target, at=at, operation=item["operation"], step=item["step"],
                      outcome=item["outcome"], actor=item["actor"], backup_id=item.get("backup_id"),
                      details=json.loads(item.get("details", "{}")))


class AuditLog:
    """The audit table as a store; without a table (a stage that has none) writes are no-ops."""

    def __init__(self, table: str | None) -> None:
        self.table = table

    def append(self, entry: AuditEntry) -> AuditEntry:
        return record(self.table, entry) if self.table else entry

    def audit(self, *, target: str, operation: str, step: str, outcome: str, actor: str,
              backup_id: str | None = None, **details: Any) -> AuditEntry | None:
        return audit(self.table, target=target, operation=operation, step=step, outcome=outcome, actor=actor,
                     backup_id=backup_id, **details)

    def tail(self, target: str, limit: int = 50) -> list[AuditEntry]:
        return tail(self.table, target, limit) if self.table else []

    def between(self, target: str, start: datetime, end: datetime) -> list[AuditEntry]:
        return between(self.table, target, start, end) if self.table else []
