"""The rotation steps' Secrets Manager side (moto), where no database is involved: which secret is
whose, the pending version createSecret makes, and the refusals that come before any login."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from local.aws import ACCOUNT, REGION, LocalAws
from warden.config.target import Target
from warden.errors import ConfigError, SecretError
from warden.rotation import PENDING, RotationError, rotate_step, target_of_secret

NAME = "warden/unit/pg"
VALUE = {"engine": "postgres", "host": "db.internal", "port": 5432, "username": "app", "password": "old-Password-1",
         "dbname": "orders", "sslmode": "disable", "note": "kept as it is"}


def target(**rotation: Any) -> Target:
    return Target.model_validate({"name": "pg", "engine": "postgres", "secret_name": NAME, "tls": {"required": False},
                                  "rotation": {"enabled": True, **rotation}})


@pytest.fixture
def secret(aws: LocalAws) -> str:
    aws.client("secretsmanager").create_secret(Name=NAME, SecretString=json.dumps(VALUE))
    return NAME


def _stored(name: str) -> Any:
    from moto.secretsmanager.models import secretsmanager_backends

    return secretsmanager_backends[ACCOUNT][REGION].secrets[name]


def enable_rotation(aws: LocalAws, name: str) -> None:
    """RotationEnabled, as a rotation schedule sets it (moto sets it only while rotating)."""
    stored = _stored(name)
    stored.rotation_requested = stored.rotation_enabled = True


def test_the_secret_is_found_by_name_or_arn_and_must_rotate(aws: LocalAws, secret: str) -> None:
    arn = aws.client("secretsmanager").describe_secret(SecretId=secret)["ARN"]
    by_arn = target().model_copy(update={"secret_name": arn})
    assert target_of_secret([target()], secret).name == "pg"
    assert target_of_secret([by_arn], secret).name == "pg"
    assert target_of_secret([target()], arn).name == "pg"
    with pytest.raises(ConfigError, match="rotation is not enabled"):
        target_of_secret([target(enabled=False)], secret)
    with pytest.raises(ConfigError, match="not the secret of any target"):
        target_of_secret([target().model_copy(update={"secret_name": "warden/unit/other"})], secret)


def test_a_step_for_an_unknown_version_or_a_secret_without_rotation_is_refused(aws: LocalAws, secret: str) -> None:
    with pytest.raises(RotationError, match="does not have rotation enabled"):
        rotate_step(target(), secret, str(uuid.uuid4()), "createSecret")
    enable_rotation(aws, secret)
    with pytest.raises(RotationError, match="has no version"):
        rotate_step(target(), secret, str(uuid.uuid4()), "createSecret")
    with pytest.raises(ConfigError, match="unknown rotation step"):
        rotate_step(target(), secret, str(uuid.uuid4()), "dropSecret")


def test_create_secret_makes_a_pending_value_alternating_switches_the_user(aws: LocalAws, secret: str) -> None:
    # Given a rotation started as Secrets Manager starts one: a new version id labelled AWSPENDING,
    # no value yet (set in moto's store: its API cannot make a version without a value)
    enable_rotation(aws, secret)
    client = aws.client("secretsmanager")
    token = str(uuid.uuid4())
    _stored(secret).versions[token] = {"createdate": 0, "version_id": token, "version_stages": [PENDING]}
    alternating = target(strategy="alternating", master_secret_name="warden/unit/admin")

    # When createSecret runs, twice
    first = rotate_step(alternating, secret, token, "createSecret")
    pending = json.loads(client.get_secret_value(SecretId=secret, VersionId=token,
                                                 VersionStage=PENDING)["SecretString"])
    again = rotate_step(alternating, secret, token, "createSecret")

    # Then the pending value is the current one with the clone user and a new password, made once
    assert (first.outcome, again.outcome) == ("done", "already-done")
    assert pending == {**VALUE, "username": "app_clone", "password": pending["password"]}
    assert pending["password"] != VALUE["password"] and len(pending["password"]) == 32
    assert json.loads(client.get_secret_value(SecretId=secret, VersionId=token,
                                              VersionStage=PENDING)["SecretString"]) == pending
    # AWSCURRENT is untouched
    assert json.loads(client.get_secret_value(SecretId=secret)["SecretString"]) == VALUE


def test_set_secret_refuses_a_pending_value_for_another_server_before_any_login(aws: LocalAws, secret: str) -> None:
    enable_rotation(aws, secret)
    token = str(uuid.uuid4())
    aws.client("secretsmanager").put_secret_value(
        SecretId=secret, ClientRequestToken=token, VersionStages=[PENDING],
        SecretString=json.dumps({**VALUE, "host": "elsewhere.internal", "password": "new-Password-2"}))
    # db.internal does not exist: a login attempt would fail differently (unreachable)
    with pytest.raises(RotationError, match="different servers"):
        rotate_step(target(), secret, token, "setSecret")


def test_a_malformed_pending_value_is_named_by_its_fields_not_its_contents(aws: LocalAws, secret: str) -> None:
    enable_rotation(aws, secret)
    token = str(uuid.uuid4())
    aws.client("secretsmanager").put_secret_value(
        SecretId=secret, ClientRequestToken=token, VersionStages=[PENDING],
        SecretString=json.dumps({**VALUE, "port": "not-a-port", "password": "leaky-Password-3"}))
    with pytest.raises(SecretError, match="problem fields") as raised:
        rotate_step(target(), secret, token, "testSecret")
    assert "leaky-Password-3" not in str(raised.value) and "port" in str(raised.value)


@pytest.mark.parametrize(("strategy", "user"), [("alternating", "postgres"), ("alternating", "app_clone_clone"),
                                                ("single-user", "app_clone")])
def test_set_secret_refuses_a_pending_value_naming_another_user_before_any_login(
        aws: LocalAws, secret: str, strategy: str, user: str) -> None:
    # Given a pending version written by hand that names a user rotation must never touch
    enable_rotation(aws, secret)
    token = str(uuid.uuid4())
    aws.client("secretsmanager").put_secret_value(
        SecretId=secret, ClientRequestToken=token, VersionStages=[PENDING],
        SecretString=json.dumps({**VALUE, "username": user, "password": "new-Password-2"}))
    rotation = {"strategy": strategy, "master_secret_name": "warden/unit/admin"} if strategy == "alternating" else {}
    # When setSecret runs, Then it refuses (db.internal does not exist: no login was tried)
    with pytest.raises(RotationError, match=f"names user '{user}'"):
        rotate_step(target(**rotation), secret, token, "setSecret")
