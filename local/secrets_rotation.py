"""Secrets Manager rotation in moto, made to behave as AWS documents it.

moto 5's `RotateSecret` invokes the rotation function's four steps, but differs from AWS where
rotation tests need it not to:
- it runs every step even after one failed, and then makes the new version the default value, so a
  failed rotation would look successful. AWS stops at the failing step and AWSCURRENT stays.
- `GetSecretValue` without a version returns moto's "default version", which `UpdateSecretVersionStage`
  does not move with the AWSCURRENT label. In AWS the label *is* the default.

`patch_rotation()` wraps both operations (and nothing else) and returns the function that undoes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def patch_rotation() -> Callable[[], None]:
    """Apply the two fixes to moto's Secrets Manager backend; returns the undo."""
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.secretsmanager.models import SecretsManagerBackend

    original_rotate = SecretsManagerBackend.rotate_secret
    original_stage = SecretsManagerBackend.update_secret_version_stage

    def update_secret_version_stage(self: Any, secret_id: str, version_stage: str, remove_from_version_id: str,
                                    move_to_version_id: str) -> tuple[str, str]:
        result = original_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
        if version_stage == "AWSCURRENT" and move_to_version_id:
            self.secrets[secret_id].default_version_id = move_to_version_id
        return result

    def rotate_secret(self: Any, secret_id: str, *args: Any, **kwargs: Any) -> str:
        secret = self.secrets[secret_id] if self._is_valid_identifier(secret_id) else None
        current = secret.default_version_id if secret is not None else None
        failed: list[str] = []
        invoke = LambdaSimpleBackend.invoke

        def step(backend: Any, function_name: str, qualifier: str | None, body: Any, headers: Any,
                 response_headers: dict[str, str]) -> Any:
            if failed:  # AWS stops at the first failing step
                return b"{}"
            payload = invoke(backend, function_name, qualifier, body, headers, response_headers)
            if response_headers.get("x-amz-function-error"):
                failed.append(f"{body!s}: {payload!r:.500}")
            return payload

        LambdaSimpleBackend.invoke = step  # type: ignore[method-assign,assignment]
        try:
            result: str = original_rotate(self, secret_id, *args, **kwargs)
        finally:
            LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
        if failed and secret is not None:
            # moto made the new version the default regardless; AWSCURRENT (and the value) stay.
            secret.default_version_id = current
            log.warning("local rotation stopped at a failing step: %s", failed[0])
        return result

    SecretsManagerBackend.rotate_secret = rotate_secret  # type: ignore[method-assign]
    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage  # type: ignore[method-assign]

    def undo() -> None:
        SecretsManagerBackend.rotate_secret = original_rotate  # type: ignore[method-assign]
        SecretsManagerBackend.update_secret_version_stage = original_stage  # type: ignore[method-assign]

    return undo
