"""The backup catalog in DynamoDB: one item per backup, keyed `target#<name>` / `backup#<id>`, so a
target's backups list in time order (backup ids sort by time)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from warden.errors import WardenError
from warden.models import BackupRecord, BackupStatus
from warden.stores.clients import aws_client, from_dynamodb, to_dynamodb


class CatalogError(WardenError):
    """The catalog could not be read or written."""


class BackupNotFound(CatalogError):
    """No backup with that id for that target."""


class StaleRecord(CatalogError):
    """The record changed under us (another writer): the update was not applied."""


def new_backup_id(now: datetime | None = None) -> str:
    """`YYYYMMDDTHHMMSSZ-<8 hex>`: sorts by start time, unique without coordination."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


def object_prefix(target: str, backup_id: str) -> str:
    """`<target>/<yyyy>/<mm>/<dd>/<backup_id>/` — where a backup's data and manifest live."""
    return f"{target}/{backup_id[0:4]}/{backup_id[4:6]}/{backup_id[6:8]}/{backup_id}/"


def _key(target: str, backup_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"target#{target}"}, "sk": {"S": f"backup#{backup_id}"}}


def _to_item(record: BackupRecord) -> dict[str, Any]:
    # DynamoDB numbers are decimals: floats (durations, RTOs) go through their JSON text exactly.
    data = json.loads(record.model_dump_json(exclude_none=True), parse_float=Decimal)
    item = {k: to_dynamodb(v) for k, v in data.items()}
    item.update(_key(record.target, record.backup_id))
    return item


def _from_item(item: dict[str, Any]) -> BackupRecord:
    data = {k: _plain(from_dynamodb(v)) for k, v in item.items() if k not in ("pk", "sk")}
    return BackupRecord.model_validate(data)


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals back to int / float, recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Catalog:
    def __init__(self, table: str) -> None:
        self.table = table

    @property
    def _ddb(self) -> Any:
        return aws_client("dynamodb")

    def create(self, record: BackupRecord) -> BackupRecord:
        try:
            self._ddb.put_item(TableName=self.table, Item=_to_item(record),
                               ConditionExpression="attribute_not_exists(pk)")
        except ClientError as err:
            raise CatalogError(f"cannot create catalog record {record.backup_id}: {err}") from err
        return record

    def save(self, record: BackupRecord, *, expect_status: BackupStatus | None = None) -> BackupRecord:
        """Replace the record; with `expect_status`, only if the stored one still has that status."""
        kwargs: dict[str, Any] = {"ConditionExpression": "attribute_exists(pk)"}
        if expect_status is not None:
            kwargs = {"ConditionExpression": "#s = :expected", "ExpressionAttributeNames": {"#s": "status"},
                      "ExpressionAttributeValues": {":expected": {"S": expect_status.value}}}
        try:
            self._ddb.put_item(TableName=self.table, Item=_to_item(record), **kwargs)
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise StaleRecord(f"backup {record.backup_id} of {record.target} changed concurrently "
                                  f"(expected {expect_status})") from None
            raise CatalogError(f"cannot save catalog record {record.backup_id}: {err}") from err
        return record

    def get(self, target: str, backup_id: str) -> BackupRecord:
        try:
            item = self._ddb.get_item(TableName=self.table, Key=_key(target, backup_id),
                                      ConsistentRead=True).get("Item")
        except ClientError as err:
            raise CatalogError(f"cannot read catalog: {err}") from err
        if item is None:
            raise BackupNotFound(f"no backup {backup_id!r} for target {target!r}")
        return _from_item(item)

    def list(self, target: str, *, newest_first: bool = True) -> Iterator[BackupRecord]:
        """Every record of a target, paged lazily."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :b)",
            "ExpressionAttributeValues": {":pk": {"S": f"target#{target}"}, ":b": {"S": "backup#"}},
            "ScanIndexForward": not newest_first,
            "ConsistentRead": True,
        }
        try:
            for page in self._ddb.get_paginator("query").paginate(**kwargs):
                for item in page["Items"]:
                    yield _from_item(item)
        except ClientError as err:
            raise CatalogError(f"cannot list catalog of {target}: {err}") from err

    def stored_bytes(self, target: str) -> int:
        """Bytes of the target's backups still stored (every record not EXPIRED)."""
        return sum(r.size_bytes or 0 for r in self.list(target) if r.status is not BackupStatus.EXPIRED)

    def latest(self, target: str, statuses: frozenset[BackupStatus]) -> BackupRecord | None:
        return next((r for r in self.list(target) if r.status in statuses), None)
