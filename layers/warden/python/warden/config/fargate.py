"""How big a target's Fargate task is, and how long it may run (`Target.fargate`, docs/fargate.md).

One task definition serves every target of a stage; these values become the RunTask overrides
(cpu, memory, ephemeral storage) and the Task state machine's TimeoutSeconds / HeartbeatSeconds.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from warden.config.base import Model

FargateCpu = Literal[256, 512, 1024, 2048, 4096, 8192, 16384]

# The memory (MiB) Fargate accepts for each cpu value (vCPU units): (smallest, largest, step).
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size
FARGATE_MEMORY: dict[int, tuple[int, int, int]] = {
    256: (512, 2048, 512),  # 512, 1024, 2048 (1536 is not one: see memory_choices)
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
    8192: (16384, 61440, 4096),
    16384: (32768, 122880, 8192),
}


def memory_choices(cpu: int) -> list[int]:
    """Every memory size (MiB) Fargate accepts with `cpu`."""
    if cpu == 256:
        return [512, 1024, 2048]
    low, high, step = FARGATE_MEMORY[cpu]
    return list(range(low, high + 1, step))


class FargateSize(Model):
    """A target's `fargate:` block: the task's size and limits when its backup runs on Fargate.

    `cpu` in vCPU units (1024 = 1 vCPU); `memory_mib` one of the sizes Fargate pairs with that cpu;
    `ephemeral_gib` the task's disk (21 is Fargate's free minimum); `timeout_hours` the most a run
    may take; `heartbeat_s` how long the task may go without progress before it is stopped.
    """

    cpu: FargateCpu = 1024
    memory_mib: Annotated[int, Field(gt=0)] = 4096
    ephemeral_gib: Annotated[int, Field(ge=21, le=200)] = 21
    timeout_hours: Annotated[float, Field(ge=0.5, le=48)] = 12
    heartbeat_s: Annotated[int, Field(ge=60, le=3600)] = 300

    @model_validator(mode="after")
    def _memory_fits_the_cpu(self) -> FargateSize:
        choices = memory_choices(self.cpu)
        if self.memory_mib not in choices:
            low, high, step = FARGATE_MEMORY[self.cpu]
            allowed = ", ".join(map(str, choices)) if len(choices) <= 4 else f"{low} to {high} in steps of {step}"
            raise ValueError(f"fargate.memory_mib {self.memory_mib} does not go with cpu {self.cpu}: Fargate "
                             f"accepts {allowed} MiB with it")
        return self

    @property
    def timeout_s(self) -> int:
        return int(self.timeout_hours * 3600)
