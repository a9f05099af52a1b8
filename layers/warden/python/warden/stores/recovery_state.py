"""The recovery state record of each target (DynamoDB, the state table): who is recovering it, the
step it is at, and the steps done. Visible to the CLI at every step; one execution owns a record at
a time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from warden.errors import WardenError
from warden.models import RecoveryState
from warden.stores.clients import aws_client


class NotTheOwner(WardenError):
    """The recovery record belongs to another execution: this one may not change it."""


class StateStore:
    def __init__(self, table: str) -> None:
        self.table = table

    def get(self, target: str) -> RecoveryState:
        item = aws_client("dynamodb").get_item(
            TableName=self.table, Key={"pk": {"S": f"recovery#{target}"}, "sk": {"S": "current"}},
            ConsistentRead=True).get("Item")
        if item is None:
            return RecoveryState(target=target)
        return RecoveryState.model_validate_json(item["state"]["S"])

    def put(self, state: RecoveryState) -> RecoveryState:
        state.updated_at = datetime.now(UTC)
        aws_client("dynamodb").put_item(TableName=self.table, Item={
            "pk": {"S": f"recovery#{state.target}"}, "sk": {"S": "current"},
            "state": {"S": state.model_dump_json()}})
        return state

    def update(self, target: str, execution: str, **changes: Any) -> RecoveryState:
        return self.put(updated(self.get(target), execution, changes))


def updated(state: RecoveryState, execution: str, changes: dict[str, Any]) -> RecoveryState:
    """`state` with `changes` applied by `execution`, its owner (NotTheOwner otherwise); a
    `step_done` change appends that step to the progress. Every recovery state store updates
    through this one transition."""
    if state.execution != execution:
        raise NotTheOwner(f"the recovery record of {state.target} belongs to {state.execution}, not {execution}")
    changes = dict(changes)
    progress = changes.pop("step_done", None)
    state = state.model_copy(update=changes)
    if progress:
        state.progress = [*state.progress, progress]
    return state
