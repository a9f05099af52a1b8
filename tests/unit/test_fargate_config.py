"""A target's runner and Fargate size are validated at the edge: a task Fargate would refuse is a
configuration error naming the field and what Fargate accepts."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from warden.config.fargate import FargateSize, memory_choices
from warden.config.target import Target

PG = {"name": "orders", "engine": "postgres", "secret_name": "warden/dev/orders"}


def test_a_target_runs_where_it_fits_on_a_one_vcpu_four_gib_task_by_default() -> None:
    target = Target.model_validate(PG)
    assert target.runner == "auto"
    assert target.fargate == FargateSize(cpu=1024, memory_mib=4096, ephemeral_gib=21, timeout_hours=12,
                                         heartbeat_s=300)
    assert target.fargate.timeout_s == 43200


@pytest.mark.parametrize(("cpu", "memory"), [(256, 512), (256, 2048), (512, 4096), (1024, 2048), (2048, 16384),
                                             (4096, 30720), (8192, 61440), (16384, 122880), (16384, 32768)])
def test_every_fargate_cpu_memory_pair_is_accepted(cpu: int, memory: int) -> None:
    assert FargateSize.model_validate({"cpu": cpu, "memory_mib": memory}).memory_mib == memory


@pytest.mark.parametrize(("size", "message"), [
    ({"cpu": 1024, "memory_mib": 1024}, "memory_mib 1024 does not go with cpu 1024: Fargate accepts 2048 to 8192"),
    ({"cpu": 256, "memory_mib": 1536}, "accepts 512, 1024, 2048 MiB"),
    ({"cpu": 8192, "memory_mib": 18432}, "16384 to 61440 in steps of 4096"),
    ({"cpu": 1000}, "cpu"),
    ({"ephemeral_gib": 20}, "ephemeral_gib"),
    ({"ephemeral_gib": 201}, "ephemeral_gib"),
    ({"timeout_hours": 0.25}, "timeout_hours"),
    ({"timeout_hours": 49}, "timeout_hours"),
    ({"heartbeat_s": 30}, "heartbeat_s"),
    ({"heartbeat_s": 3601}, "heartbeat_s"),
    ({"memory": 4096}, "memory"),  # a typo is an error, not a default
])
def test_a_task_fargate_would_refuse_is_a_configuration_error(size: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Target.model_validate({**PG, "fargate": size})


def test_runner_is_auto_lambda_or_fargate() -> None:
    assert Target.model_validate({**PG, "runner": "fargate"}).runner == "fargate"
    with pytest.raises(ValidationError, match="runner"):
        Target.model_validate({**PG, "runner": "ecs"})


def test_an_rds_snapshot_target_cannot_run_on_fargate() -> None:
    with pytest.raises(ValidationError, match="runner fargate runs logical backups"):
        Target.model_validate({**PG, "runner": "fargate", "rds": {"instance_id": "orders"},
                               "backup": {"method": "rds-snapshot"}})


def test_memory_choices_follow_fargate_steps() -> None:
    assert memory_choices(256) == [512, 1024, 2048]
    assert memory_choices(512) == [1024, 2048, 3072, 4096]
    assert memory_choices(16384)[:2] == [32768, 40960]
