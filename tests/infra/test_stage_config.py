"""Stage configuration from the CDK context: a bad cdk.json fails with a message that says where."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import app
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


# Each kind of bad stage configuration is stopped before synthesis, with the field and the reason.
BAD_STAGES = {
    "unknown engine": ({"engine": "mysql"}, r"targets\[0\]\.engine: Input should be 'neo4j' or 'postgres'"),
    "cron with 5 fields": ({"schedules": {"backup": "cron(0 2 * * ?)"}}, r"schedules\.backup: .*six fields"),
    "cron hour 24": ({"schedules": {"backup": "cron(0 24 * * ? *)"}}, r"hours '24': 24 is outside 0-23"),
    "cron without ?": ({"schedules": {"verify": "cron(0 4 * * * *)"}}, r"exactly one of day-of-month and day-of"),
    "rate 0": ({"schedules": {"health": "rate(0 minutes)"}}, r"the rate must be at least 1"),
    "rate 1 plural": ({"schedules": {"health": "rate(1 minutes)"}}, r"say rate\(1 minute\)"),
    "drill schedule": ({"recovery": {"drill_schedule": "weekly"}}, r"recovery\.drill_schedule: .*use rate"),
    "retention keeps nothing": (
        {"retention": {"keep_last": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}},
        r"targets\[0\]\.retention \(graph-main\) keeps nothing"),
    "negative retention": ({"retention": {"keep_daily": -1}}, r"retention\.keep_daily: .*greater than or equal to 0"),
    "threshold over 100 %": ({"health": {"connections_warn_pct": 120}},
                             r"health\.connections_warn_pct: .*less than or"),
    "warn above fail": ({"health": {"long_query_warn_s": 600, "long_query_fail_s": 300}},
                        r"long_query_warn_s \(600.0\) must not be above long_query_fail_s"),
    "zero timeout": ({"health": {"connectivity_timeout_s": 0}}, r"health\.connectivity_timeout_s: .*greater than 0"),
    "no credentials": ({"secret_name": None}, r"targets\[0\]\.secret_name: Field required"),
    "empty credentials": ({"secret_name": ""}, r"targets\[0\]\.secret_name: String should have at least 1"),
    "bad secret name": ({"secret_name": "warden dev"}, r"targets\[0\]\.secret_name: String should match pattern"),
    "tls not a switch": ({"tls": {"required": "sometimes"}}, r"targets\[0\]\.tls\.required: Input should be a valid"),
    "tls typo": ({"tls": {"enabled": False}}, r"targets\[0\]\.tls\.enabled: Extra inputs are not permitted"),
}


def _without_none(target: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in target.items() if v is not None}


@pytest.mark.parametrize("overrides, message", BAD_STAGES.values(), ids=BAD_STAGES.keys())
def test_a_bad_stage_is_an_error_naming_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_stages({"dev": {"targets": [_without_none(neo4j_target(**overrides))]}})


@pytest.mark.parametrize("overrides, message", list(BAD_STAGES.values())[:3], ids=list(BAD_STAGES)[:3])
def test_a_bad_stage_never_produces_a_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               overrides: dict[str, object], message: str) -> None:
    out = tmp_path / "cdk.out"
    monkeypatch.setenv("CDK_OUTDIR", str(out))
    stages = json.dumps({"dev": {"targets": [_without_none(neo4j_target(**overrides))]}})
    assert app.main(["-c", f"stages={stages}"]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists() or not any(out.iterdir())


def test_a_secret_may_be_named_by_its_arn() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:warden/dev/graph-main-AbCdEf"
    assert parse_stages({"dev": {"targets": [neo4j_target(secret_name=arn)]}})["dev"].targets[0].secret_name == arn
