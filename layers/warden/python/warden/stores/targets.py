"""Target configuration at run time: the stack writes one JSON parameter per target under
`/warden/<stage>/targets/<name>` in SSM Parameter Store; functions read them by path."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from botocore.exceptions import ClientError
from pydantic import ValidationError

from warden.config.target import Target
from warden.errors import ConfigError, TargetNotFound
from warden.settings import Settings
from warden.stores.clients import aws_client


def load_targets(settings: Settings) -> dict[str, Target]:
    """Every target configured for the stage, by name."""
    ssm = aws_client("ssm")
    targets: dict[str, Target] = {}
    try:
        pages = ssm.get_paginator("get_parameters_by_path").paginate(
            Path=settings.targets_path, Recursive=False, WithDecryption=True
        )
        for page in pages:
            for param in page["Parameters"]:
                target = _parse(param["Name"], param["Value"])
                targets[target.name] = target
    except ClientError as err:
        raise ConfigError(f"cannot read target configuration under {settings.targets_path}: {err}") from err
    return dict(sorted(targets.items()))


def get_target(settings: Settings, name: str) -> Target:
    """One target by name; `TargetNotFound` lists the ones that exist."""
    targets = load_targets(settings)
    if name not in targets:
        known = ", ".join(targets) or "none"
        raise TargetNotFound(f"unknown target {name!r} in stage {settings.stage!r} (configured: {known})")
    return targets[name]


def select_targets(settings: Settings, name: str | None) -> list[Target]:
    """The named target, or every target of the stage when no name is given."""
    return [get_target(settings, name)] if name else list(load_targets(settings).values())


def named_targets(configured: Mapping[str, Target], names: Sequence[str] | None, stage: str) -> list[Target]:
    """The `names` targets in that order, or every configured one when `names` is None. Any name the
    stage does not configure is `TargetNotFound` for the whole selection, naming each unknown one."""
    if names is None:
        return list(configured.values())
    unknown = [n for n in names if n not in configured]
    if unknown:
        known = ", ".join(list(configured)[:20]) or "none"
        more = f" and {len(configured) - 20} more" if len(configured) > 20 else ""
        listed = ", ".join(repr(n) for n in unknown)
        raise TargetNotFound(f"unknown target{'s' if len(unknown) > 1 else ''} {listed} in stage {stage!r} "
                             f"(configured: {known}{more})")
    return [configured[n] for n in names]


def _parse(parameter: str, value: str) -> Target:
    try:
        return Target.model_validate(json.loads(value))
    except (ValueError, ValidationError) as err:
        raise ConfigError(f"target parameter {parameter} is not a valid target: {err}") from err


class ParameterStoreTargets:
    """The stage's targets in Parameter Store as a TargetStore (warden.stores.base)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def all(self) -> dict[str, Target]:
        return load_targets(self.settings)

    def get(self, name: str) -> Target:
        return get_target(self.settings, name)

    def select(self, name: str | None) -> list[Target]:
        return select_targets(self.settings, name)
