"""Per-target leases in the state table: conditional writes with an expiry, so two runs never work
on one target at once, and a lease left by a crashed run expires on its own."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from warden.errors import WardenError
from warden.stores.clients import aws_client


class LeaseHeld(WardenError):
    """Another run holds the target's lease: this one changes nothing."""

    def __init__(self, message: str, holder: Lease) -> None:
        super().__init__(message)
        self.holder = holder


class LeaseLost(WardenError):
    """Our lease is gone or someone else holds it now: the work it guarded must stop."""


@dataclass(frozen=True)
class Lease:
    target: str
    owner: str
    operation: str
    expires_at: float
    backup_id: str | None = None
    upload_key: str | None = None
    upload_id: str | None = None
    # A backup on Fargate (docs/fargate.md): its runner, and its Task state machine execution when known,
    # so the execution's Abandon step cleans up only after its own task.
    runner: str | None = None
    execution: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Lease:
        return cls(
            target=item["pk"]["S"].removeprefix("lease#"),
            owner=item["owner"]["S"],
            operation=item["operation"]["S"],
            expires_at=float(item["expires_at"]["N"]),
            backup_id=item.get("backup_id", {}).get("S"),
            upload_key=item.get("upload_key", {}).get("S"),
            upload_id=item.get("upload_id", {}).get("S"),
            runner=item.get("runner", {}).get("S"),
            execution=item.get("execution", {}).get("S"),
        )


class Leases:
    def __init__(self, table: str) -> None:
        self.table = table

    @property
    def _ddb(self) -> Any:
        return aws_client("dynamodb")

    def acquire(self, target: str, owner: str, operation: str, ttl_s: float,
                **attrs: str) -> tuple[Lease, Lease | None]:
        """Take the target's lease. Returns (our lease, the expired lease we replaced, if any) so
        the caller can clean up after a crashed run; raises LeaseHeld while someone else holds it."""
        now = time.time()
        lease = Lease(target=target, owner=owner, operation=operation, expires_at=now + ttl_s, **attrs)
        item = {"pk": {"S": f"lease#{target}"}, "sk": {"S": "lease"}, "owner": {"S": owner},
                "operation": {"S": operation}, "expires_at": {"N": f"{lease.expires_at:.3f}"},
                "ttl": {"N": str(int(lease.expires_at) + 86400)}}
        item.update({k: {"S": v} for k, v in attrs.items() if v})
        try:
            response = self._ddb.put_item(
                TableName=self.table, Item=item,
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now OR #o = :owner",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}, ":owner": {"S": owner}},
                ReturnValues="ALL_OLD",
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            holder = self.get(target)
            assert holder is not None
            raise LeaseHeld(f"{target} is busy: {holder.operation} by {holder.owner} "
                            f"(lease expires in {max(0, holder.expires_at - now):.0f} s)", holder) from None
        old = response.get("Attributes")
        previous = Lease.from_item(old) if old and old["owner"]["S"] != owner else None
        return lease, previous

    def update(self, lease: Lease, **attrs: str) -> Lease:
        """Record progress on our lease (e.g. the multipart upload id, for crash cleanup)."""
        names = {f"#a{i}": k for i, k in enumerate(attrs)}
        values = {f":v{i}": {"S": v} for i, v in enumerate(attrs.values())}
        sets = ", ".join(f"#a{i} = :v{i}" for i in range(len(attrs)))
        self._ddb.update_item(
            TableName=self.table, Key={"pk": {"S": f"lease#{lease.target}"}, "sk": {"S": "lease"}},
            UpdateExpression=f"SET {sets}", ConditionExpression="#o = :owner",
            ExpressionAttributeNames={**names, "#o": "owner"},
            ExpressionAttributeValues={**values, ":owner": {"S": lease.owner}},
        )
        return Lease(**{**lease.__dict__, **attrs})

    def renew(self, lease: Lease, ttl_s: float) -> Lease:
        """Push our lease's expiry to `ttl_s` from now; LeaseLost when it is gone or someone else's."""
        expires_at = time.time() + ttl_s
        try:
            self._ddb.update_item(
                TableName=self.table, Key={"pk": {"S": f"lease#{lease.target}"}, "sk": {"S": "lease"}},
                UpdateExpression="SET expires_at = :e, #t = :t",
                ConditionExpression="attribute_exists(pk) AND #o = :owner",
                ExpressionAttributeNames={"#o": "owner", "#t": "ttl"},
                ExpressionAttributeValues={":e": {"N": f"{expires_at:.3f}"}, ":t": {"N": str(int(expires_at) + 86400)},
                                           ":owner": {"S": lease.owner}},
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise LeaseLost(lost_message(lease, self.get(lease.target))) from None
        return Lease(**{**lease.__dict__, "expires_at": expires_at})

    def get(self, target: str) -> Lease | None:
        item = self._ddb.get_item(TableName=self.table, Key={"pk": {"S": f"lease#{target}"}, "sk": {"S": "lease"}},
                                  ConsistentRead=True).get("Item")
        return Lease.from_item(item) if item else None

    def release(self, lease: Lease) -> None:
        """Give the lease back (only if it is still ours)."""
        try:
            self._ddb.delete_item(
                TableName=self.table, Key={"pk": {"S": f"lease#{lease.target}"}, "sk": {"S": "lease"}},
                ConditionExpression="#o = :owner", ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":owner": {"S": lease.owner}},
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise


def lost_message(lease: Lease, holder: Lease | None) -> str:
    """Why `lease` is not ours any more, for LeaseLost."""
    now = "it is gone" if holder is None else f"{holder.operation} by {holder.owner} holds it now"
    return f"lease lost: the lease of {lease.target} held by {lease.owner} cannot be renewed ({now})"
