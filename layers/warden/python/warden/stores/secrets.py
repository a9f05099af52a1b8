"""Database credentials from Secrets Manager. Values are SecretStr: they never reach a log line."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError
from pydantic import TypeAdapter, ValidationError

from warden.config.credentials import DatabaseSecret
from warden.config.target import Target
from warden.errors import SecretError
from warden.stores.clients import aws_client
from warden.tls import check_tls

_SECRET = TypeAdapter(DatabaseSecret)


def load_secret(target: Target) -> DatabaseSecret:
    """The target's credentials; the secret's `engine` must match the target's."""
    try:
        raw = aws_client("secretsmanager").get_secret_value(SecretId=target.secret_name)["SecretString"]
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "ClientError")
        raise SecretError(
            f"cannot read secret {target.secret_name!r} of target {target.name!r}: {code}"
        ) from err
    try:
        data = json.loads(raw)
        data.setdefault("engine", target.engine.value)
        secret = _SECRET.validate_python(data)
    except (ValueError, ValidationError) as err:
        # The message names the fields only: pydantic's input echo could contain the password.
        fields = [".".join(map(str, e["loc"])) for e in getattr(err, "errors", lambda: [])()]
        raise SecretError(
            f"secret {target.secret_name!r} of target {target.name!r} has not the expected shape "
            f"(problem fields: {fields or 'not JSON'})"
        ) from None
    if secret.engine != target.engine.value:
        raise SecretError(f"secret {target.secret_name!r} is for {secret.engine}, target is {target.engine}")
    check_tls(target, secret)  # verified TLS unless the target opted out (warden.tls)
    return secret


class SecretsManagerSecrets:
    """Secrets Manager as a SecretStore (warden.stores.base)."""

    def load(self, target: Target) -> DatabaseSecret:
        return load_secret(target)
