"""Configuration is validated at the edge: bad input is a clear error, never a silent default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from local.config import load_local_config
from warden.config.stage import StageConfig
from warden.config.target import Engine, Schedules, Target
from warden.errors import ConfigError, SecretError


def test_sample_local_config_gives_targets_of_both_engines() -> None:
    config = load_local_config()
    targets = [t.as_target(config.stage) for t in config.targets]
    assert {t.engine for t in targets} == {Engine.NEO4J, Engine.POSTGRES}
    assert all(t.secret_name == f"warden/local/{t.name}" for t in targets)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"name": "a", "engine": "mysql", "local": "neo4j"}, "engine"),
        ({"name": "a", "engine": "neo4j"}, "exactly one of"),
        ({"name": "a", "engine": "neo4j", "local": "postgres18"}, "not a neo4j server"),
        ({"name": "a", "engine": "postgres", "connection": {"host": "db"}}, "password_env"),
        ({"name": "Bad Name", "engine": "neo4j", "local": "neo4j"}, "name"),
        ({"name": "a", "engine": "neo4j", "local": "neo4j", "colour": "red"}, "colour"),
    ],
)
def test_bad_local_target_is_rejected_with_the_reason(tmp_path: Path, target: dict, message: str) -> None:
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"stage": "local", "targets": [target]}))
    with pytest.raises(ConfigError, match=message):
        load_local_config(path)


def test_missing_local_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_local_config(tmp_path / "nope.yaml")


def test_external_target_needs_its_password_variable() -> None:
    config = load_local_config_from({"name": "orders", "engine": "postgres",
                                     "connection": {"host": "db", "username": "w"}, "password_env": "ORDERS_PW"})
    target = config.targets[0]
    with pytest.raises(ConfigError, match="ORDERS_PW is not set"):
        target.secret({})
    assert target.secret({"ORDERS_PW": "s3cret"})["password"] == "s3cret"


def load_local_config_from(target: dict):
    from local.config import LocalConfig

    return LocalConfig.model_validate({"stage": "local", "targets": [target]})


def test_stage_rejects_duplicate_target_names() -> None:
    target = {"name": "graph", "engine": "neo4j", "secret_name": "s"}
    with pytest.raises(ValidationError, match="unique"):
        StageConfig.model_validate({"name": "dev", "targets": [target, target]})


@pytest.mark.parametrize("expression, problem", [("every day", "use rate"), ("cron(0 2 * * ?)", "six fields"),
                                                 ("rate(5 weeks)", "a rate is"), ("", "use rate")])
def test_schedule_must_be_an_eventbridge_expression(expression: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Schedules(backup=expression)


def test_bad_secret_shape_error_names_fields_but_never_the_password() -> None:
    from local.aws import LocalAws
    from warden.stores.secrets import load_secret

    with LocalAws() as aws:
        # Given a PostgreSQL secret without a host but with a password
        aws.client("secretsmanager").create_secret(
            Name="warden/pg", SecretString=json.dumps({"username": "u", "password": "hunter2-top-secret"}))
        target = Target(name="pg", engine=Engine.POSTGRES, secret_name="warden/pg")
        # When it is loaded
        with pytest.raises(SecretError) as err:
            load_secret(target)
    # Then the error says which field, and nothing of the password
    assert "host" in str(err.value)
    assert "hunter2" not in str(err.value) and err.value.__cause__ is None


def test_missing_secret_is_a_secret_error() -> None:
    from local.aws import LocalAws
    from warden.stores.secrets import load_secret

    with LocalAws(), pytest.raises(SecretError, match="ResourceNotFoundException"):
        load_secret(Target(name="pg", engine=Engine.POSTGRES, secret_name="warden/absent"))
