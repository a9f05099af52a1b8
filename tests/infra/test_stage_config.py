"""Stage configuration from the CDK context: a bad cdk.json fails with a message that says where."""

from __future__ import annotations

import re

import pytest

from infra.config import ConfigError, load_stages, parse_stages, read_cdk_json_context, select_stages

pytestmark = pytest.mark.infra


def neo4j_target(**overrides: object) -> dict[str, object]:
    return {"name": "graph-main", "engine": "neo4j", "secret_name": "warden/dev/graph-main", **overrides}


def test_an_unknown_engine_is_an_error_naming_stage_target_and_field() -> None:
    with pytest.raises(ConfigError) as error:
        parse_stages({"dev": {"targets": [neo4j_target(engine="mysql")]}})
    message = str(error.value)
    assert "stage 'dev'" in message
    assert "targets[0].engine" in message
    assert "'mysql'" in message


def test_every_problem_of_a_stage_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as error:
        parse_stages({"dev": {"targets": [neo4j_target(name="Bad Name", schedules={"backup": "daily"})]}})
    assert "targets[0].name" in str(error.value)
    assert "targets[0].schedules.backup" in str(error.value)


def test_a_typo_in_a_stage_field_is_an_error_not_a_default() -> None:
    with pytest.raises(ConfigError, match="log_retention"):
        parse_stages({"dev": {"log_retention": 30}})


def test_a_log_retention_cloudwatch_does_not_offer_is_an_error() -> None:
    with pytest.raises(ConfigError, match="log_retention_days=31"):
        parse_stages({"dev": {"log_retention_days": 31}})


def test_a_name_inside_a_stage_must_match_its_key() -> None:
    with pytest.raises(ConfigError, match="must match the key"):
        parse_stages({"dev": {"name": "prod"}})


def test_missing_or_empty_stages_are_errors() -> None:
    with pytest.raises(ConfigError, match="no 'stages'"):
        parse_stages(None)
    with pytest.raises(ConfigError, match="non-empty"):
        parse_stages({})


def test_stages_given_as_a_json_string_on_the_command_line_are_parsed() -> None:
    stages = parse_stages('{"dev": {"targets": [{"name": "g", "engine": "neo4j", "secret_name": "s"}]}}')
    assert stages["dev"].targets[0].engine.value == "neo4j"


def test_stage_selects_one_stage_and_no_stage_selects_all() -> None:
    stages = parse_stages({"dev": {}, "prod": {}})
    assert [s.name for s in select_stages(stages, "prod")] == ["prod"]
    assert [s.name for s in select_stages(stages, None)] == ["dev", "prod"]
    with pytest.raises(ConfigError, match=re.escape("unknown stage 'qa'; cdk.json defines: dev, prod")):
        select_stages(stages, "qa")


def test_cdk_json_defines_dev_staging_and_prod_and_they_are_valid() -> None:
    context = read_cdk_json_context()
    stages = load_stages(context)
    assert [s.name for s in stages] == ["dev", "staging", "prod"]
    assert context["@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy"] is True
