"""Changes a test makes to a stage deployed into moto (local.deploy): a target's configuration in
SSM, and a function's environment before its first invocation (its cold start)."""

from __future__ import annotations

from typing import Any

from local.aws import LocalAws
from local.deploy import Deployment
from tests.conftest import STAGE
from warden import names
from warden.config.target import Target
from warden.settings import Settings


def set_target(aws: LocalAws, target: Target, **changes: Any) -> Target:
    """The target with `changes`, written to its SSM parameter as the operator would."""
    changed = Target.model_validate({**target.model_dump(mode="json"), **changes})
    aws.client("ssm").put_parameter(Name=names.target_parameter(STAGE, target.name), Value=changed.model_dump_json(),
                                    Type="String", Overwrite=True)
    return changed


def configure(aws: LocalAws, deployed: Deployment, job: str, **env: str) -> Settings:
    """The `job` function's environment plus `env` (before its first invocation: its cold start), and
    the settings it then reads; WARDEN_TASK_STATE_MACHINE_ARN="" is a stage without one."""
    function = deployed.function_named(job)
    lam = aws.client("lambda")
    variables = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    lam.update_function_configuration(FunctionName=function, Environment={"Variables": {**variables, **env}})
    return Settings.from_env({**deployed.function_environment(job), **env})
