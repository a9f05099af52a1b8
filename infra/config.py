"""Stage configuration: cdk.json context (`stages`, `stage`) read into validated `StageConfig`s.

Errors name the stage and the field (`stage 'dev': targets[0].engine: ...`) so a typo in cdk.json
is found from the message alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from warden.config.retention import RetentionPolicy
from warden.config.stage import StageConfig

REPO = Path(__file__).resolve().parent.parent
CDK_JSON = REPO / "cdk.json"

STAGES_KEY = "stages"
STAGE_KEY = "stage"

# The values CloudWatch Logs accepts for a log group's retention.
LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)


class ConfigError(ValueError):
    """The stage configuration in the CDK context is missing or invalid."""


def read_cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """The `context` block of cdk.json (what the CDK CLI would pass), or {} without a cdk.json."""
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    context = document.get("context", {})
    if not isinstance(context, dict):
        raise ConfigError(f"{path}: 'context' must be an object")
    return context


def parse_stages(raw: object) -> dict[str, StageConfig]:
    """Validate the `stages` context value: a mapping of stage name to its settings.

    The stage name is the key; a `name` inside the settings, if given, must match it. A JSON
    string (as `-c stages='{...}'` passes it) is accepted too.
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"context {STAGES_KEY!r} is a string but not JSON: {exc}") from exc
    if raw is None:
        raise ConfigError(f"no {STAGES_KEY!r} in the CDK context: define them in cdk.json")
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"context {STAGES_KEY!r} must be a non-empty object of stage name -> settings")
    return {str(name): _parse_stage(str(name), settings) for name, settings in raw.items()}


def select_stages(stages: Mapping[str, StageConfig], selected: object = None) -> list[StageConfig]:
    """The stages to synthesize: all of them, or the one named by `-c stage=<name>`."""
    if selected in (None, ""):
        return list(stages.values())
    if not isinstance(selected, str) or selected not in stages:
        raise ConfigError(f"unknown stage {selected!r}; cdk.json defines: {', '.join(stages)}")
    return [stages[selected]]


def load_stages(context: Mapping[str, Any]) -> list[StageConfig]:
    """The selected, validated stages from a CDK context (e.g. `app.node.try_get_context`)."""
    return select_stages(parse_stages(context.get(STAGES_KEY)), context.get(STAGE_KEY))


def _parse_stage(name: str, settings: object) -> StageConfig:
    if not isinstance(settings, Mapping):
        raise ConfigError(f"stage {name!r}: settings must be an object, got {type(settings).__name__}")
    declared = settings.get("name", name)
    if declared != name:
        raise ConfigError(f"stage {name!r}: 'name' is {declared!r}; it must match the key or be left out")
    try:
        stage = StageConfig.model_validate({**settings, "name": name})
    except ValidationError as exc:
        raise ConfigError(f"stage {name!r} is invalid:\n{_describe(exc)}") from None
    for index, target in enumerate(stage.targets):
        if not keeps_something(target.retention):
            raise ConfigError(
                f"stage {name!r}: targets[{index}].retention ({target.name}) keeps nothing: with keep_last and "
                "every calendar rule at 0, prune would delete every backup but the newest verified one; "
                "set keep_last or a keep_daily / weekly / monthly / yearly rule"
            )
    if stage.log_retention_days not in LOG_RETENTION_DAYS:
        allowed = ", ".join(str(d) for d in sorted(LOG_RETENTION_DAYS))
        raise ConfigError(
            f"stage {name!r}: log_retention_days={stage.log_retention_days} is not a CloudWatch Logs "
            f"retention; use one of {allowed}"
        )
    return stage


def keeps_something(policy: RetentionPolicy) -> bool:
    """Whether any keep rule of `policy` keeps a backup (the engine allows all-zero policies; a stage does not)."""
    return any((policy.keep_last, policy.keep_daily, policy.keep_weekly, policy.keep_monthly, policy.keep_yearly))


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        # Missing fields have no input; value errors already quote it.
        quiet = error["type"] in {"missing", "value_error"} or not error["loc"]
        got = "" if quiet else f" (got {_short(error['input'])})"
        lines.append(f"  {where or '<stage>'}: {error['msg']}{got}")
    return "\n".join(lines)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
