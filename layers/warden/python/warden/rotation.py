"""Secrets Manager rotation of a target's database credentials (the four-step rotation contract).

Secrets Manager calls the rotate function four times per rotation, with the secret, a
`ClientRequestToken` (the id of the new version) and a step:

- `createSecret`: a new version labelled AWSPENDING, with a new random password (and, alternating,
  the other user). Nothing changes in the database.
- `setSecret`: the database learns the pending password. Single-user: the secret's user changes its
  own password (logged in with AWSCURRENT, or AWSPREVIOUS after an interrupted rotation);
  alternating: the master user creates `<user>_clone` when missing and sets the password of the
  user that is not current.
- `testSecret`: log in with the pending credentials and run a query.
- `finishSecret`: AWSCURRENT moves to the new version (the old one becomes AWSPREVIOUS) and the
  AWSPENDING label is removed.

Every step may be retried by Secrets Manager and is idempotent: createSecret keeps a pending value
that exists, setSecret does nothing when the pending password already works, finishSecret does
nothing when the version is already current. When a step fails, Secrets Manager stops: AWSCURRENT
stays where it was. Passwords are never logged; messages name secrets, users and versions only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from pydantic import TypeAdapter, ValidationError

from warden.config.credentials import DatabaseSecret, Neo4jSecret, PostgresSecret
from warden.config.rotation import ALTERNATING, CLONE_SUFFIX
from warden.config.target import Engine, Target
from warden.engines import engine_for
from warden.errors import ConfigError, SecretError, WardenError
from warden.events import Step
from warden.stores.clients import aws_client
from warden.tls import check_tls

log = logging.getLogger(__name__)

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
# Characters a password must not contain: they break URIs (user:password@host), shells or JSON
# quoting in operators' hands. What is left (letters, digits, `!$()*,-._`) is plenty at 32 characters.
EXCLUDE_CHARACTERS = " \"#%&'+/:;<=>?@[\\]^`{|}~"
_SECRET = TypeAdapter(DatabaseSecret)






class RotationError(WardenError):
    """A rotation step cannot complete; Secrets Manager stops the rotation, AWSCURRENT is unchanged."""


@dataclass(frozen=True)
class StepResult:
    step: str
    target: str
    version: str
    outcome: str  # "done", "already-done"
    username: str

    def as_dict(self) -> dict[str, str]:
        return {"step": self.step, "target": self.target, "version": self.version, "outcome": self.outcome,
                "username": self.username}


def target_of_secret(targets: list[Target], secret_id: str) -> Target:
    """The target whose credentials `secret_id` (a name or an ARN) are, with rotation enabled.

    Refuses a secret that is no target's, or whose target has rotation off: the rotate function
    changes passwords only where the configuration says so."""
    metadata = _describe(secret_id)
    names = {secret_id, metadata["ARN"], metadata["Name"]}
    matches = [t for t in targets if t.secret_name in names]
    if not matches:
        raise ConfigError(f"secret {metadata['Name']!r} is not the secret of any target of this stage")
    if len(matches) > 1:
        raise ConfigError(f"secret {metadata['Name']!r} belongs to several targets: {[t.name for t in matches]}")
    target = matches[0]
    if not target.rotation.enabled:
        raise ConfigError(f"target {target.name!r}: rotation is not enabled (rotation.enabled)")
    return target


def rotate_step(target: Target, secret_id: str, token: str, step: str) -> StepResult:
    """Run one step of the rotation of `target`'s secret for version `token`."""
    try:
        chosen = Step(step)
    except ValueError:
        raise ConfigError(f"unknown rotation step {step!r}; expected one of {[s.value for s in Step]}") from None
    metadata = _describe(secret_id)
    if not metadata.get("RotationEnabled"):
        raise RotationError(f"secret {metadata['Name']!r} does not have rotation enabled")
    stages = metadata.get("VersionIdsToStages", {})
    if token not in stages:
        raise RotationError(f"secret {metadata['Name']!r} has no version {token}")
    if CURRENT in stages[token] and chosen is not Step.FINISH:
        log.info("rotation step skipped: version already current",
                 extra={"target": target.name, "step": chosen.value, "version": token})
        return StepResult(chosen.value, target.name, token, "already-done", _username(secret_id, CURRENT))
    if PENDING not in stages[token] and CURRENT not in stages[token]:
        raise RotationError(f"version {token} of secret {metadata['Name']!r} is not AWSPENDING")
    steps: dict[Step, Callable[[Target, str, str, dict[str, list[str]]], StepResult]] = {
        Step.CREATE: create_secret, Step.SET: set_secret, Step.TEST: test_secret, Step.FINISH: finish_secret,
    }
    result = steps[chosen](target, secret_id, token, stages)
    log.info("rotation step finished", extra=result.as_dict())
    return result


def create_secret(target: Target, secret_id: str, token: str, stages: dict[str, list[str]]) -> StepResult:
    """The pending version: the current value with a new password (alternating: the other user)."""
    current = _value(secret_id, stage=CURRENT)
    try:
        pending = _value(secret_id, stage=PENDING, version=token)
        return StepResult(Step.CREATE.value, target.name, token, "already-done", str(pending.get("username")))
    except _NoValue:
        pass
    new = dict(current)
    if target.rotation.strategy == ALTERNATING:
        new["username"] = other_user(str(current["username"]))
    new["password"] = new_password(target.rotation.password_length)
    _secret_of(target, new, "pending")  # the value still has the target's shape
    try:
        aws_client("secretsmanager").put_secret_value(SecretId=secret_id, ClientRequestToken=token,
                                                      SecretString=json.dumps(new), VersionStages=[PENDING])
    except ClientError as err:
        raise RotationError(f"cannot store the pending version of {secret_id!r}: {_code(err)}") from None
    return StepResult(Step.CREATE.value, target.name, token, "done", str(new["username"]))


def set_secret(target: Target, secret_id: str, token: str, stages: dict[str, list[str]]) -> StepResult:
    """Make the database accept the pending credentials (nothing to do when it already does)."""
    engine = engine_for(target.engine)
    current = _secret_of(target, _value(secret_id, stage=CURRENT), "current")
    pending = _secret_of(target, _value(secret_id, stage=PENDING, version=token), "pending")
    _same_server(target, current, pending)
    _expected_user(target, current, pending)
    if engine.can_log_in(pending):
        return StepResult(Step.SET.value, target.name, token, "already-done", pending.username)
    new = pending.password.get_secret_value()
    if target.rotation.strategy == ALTERNATING:
        assert target.rotation.master_secret_name is not None  # RotationConfig insists
        master = _secret_of(target, _value(target.rotation.master_secret_name, stage=CURRENT), "master")
        _same_server(target, current, master)
        base = current.username.removesuffix(CLONE_SUFFIX)
        created = engine.set_user_password(master, pending.username, new,
                                           member_of=base if pending.username != base else None,
                                           dbname=getattr(current, "dbname", None))
        if created:
            log.info("rotation created the alternate user", extra={"target": target.name, "user": pending.username})
    else:
        who = _logged_in_secret(target, secret_id, current, engine)
        engine.change_own_password(who, new)
    return StepResult(Step.SET.value, target.name, token, "done", pending.username)


def test_secret(target: Target, secret_id: str, token: str, stages: dict[str, list[str]]) -> StepResult:
    """Log in with the pending credentials and run a query; fail the rotation when that fails."""
    pending = _secret_of(target, _value(secret_id, stage=PENDING, version=token), "pending")
    if not engine_for(target.engine).can_log_in(pending):
        raise RotationError(f"target {target.name!r}: the database refuses the pending credentials of "
                            f"{pending.username!r} (version {token}); AWSCURRENT is unchanged")
    return StepResult(Step.TEST.value, target.name, token, "done", pending.username)


def finish_secret(target: Target, secret_id: str, token: str, stages: dict[str, list[str]]) -> StepResult:
    """AWSCURRENT to the new version (the old one becomes AWSPREVIOUS), AWSPENDING removed."""
    client = aws_client("secretsmanager")
    current_version = next((v for v, labels in stages.items() if CURRENT in labels), None)
    username = str(_value(secret_id, stage=PENDING if PENDING in stages[token] else CURRENT,
                          version=token).get("username"))
    outcome = "already-done"
    try:
        if current_version != token:
            client.update_secret_version_stage(SecretId=secret_id, VersionStage=CURRENT, MoveToVersionId=token,
                                               RemoveFromVersionId=current_version)
            outcome = "done"
        if PENDING in stages[token]:
            client.update_secret_version_stage(SecretId=secret_id, VersionStage=PENDING,
                                               RemoveFromVersionId=token)
    except ClientError as err:
        raise RotationError(f"cannot make version {token} of {secret_id!r} current: {_code(err)}") from None
    return StepResult(Step.FINISH.value, target.name, token, outcome, username)


def other_user(username: str) -> str:
    """The alternating partner of `username`: `<user>` ⇄ `<user>_clone`."""
    return username.removesuffix(CLONE_SUFFIX) if username.endswith(CLONE_SUFFIX) else username + CLONE_SUFFIX


def new_password(length: int) -> str:
    """A random password from Secrets Manager, without characters that break URIs or quoting."""
    try:
        return str(aws_client("secretsmanager").get_random_password(
            PasswordLength=length, ExcludeCharacters=EXCLUDE_CHARACTERS, RequireEachIncludedType=True,
        )["RandomPassword"])
    except ClientError as err:
        raise RotationError(f"cannot generate a password: {_code(err)}") from None


# -- helpers -----------------------------------------------------------------------------------


class _NoValue(Exception):
    pass


def _describe(secret_id: str) -> dict[str, Any]:
    try:
        return dict(aws_client("secretsmanager").describe_secret(SecretId=secret_id))
    except ClientError as err:
        raise SecretError(f"cannot describe secret {secret_id!r}: {_code(err)}") from None


def _value(secret_id: str, *, stage: str, version: str | None = None) -> dict[str, Any]:
    """A version's JSON value. `_NoValue` when that version / stage has none (yet)."""
    args: dict[str, str] = {"SecretId": secret_id, "VersionStage": stage}
    if version:
        args["VersionId"] = version
    try:
        raw = aws_client("secretsmanager").get_secret_value(**args)
    except ClientError as err:
        if _code(err) in ("ResourceNotFoundException", "SecretHasNoValueException"):
            raise _NoValue(stage) from None
        raise SecretError(f"cannot read {stage} of secret {secret_id!r}: {_code(err)}") from None
    if "SecretString" not in raw:
        raise _NoValue(stage)
    try:
        value = json.loads(raw["SecretString"])
    except ValueError:
        raise SecretError(f"{stage} of secret {secret_id!r} is not JSON") from None
    if not isinstance(value, dict):
        raise SecretError(f"{stage} of secret {secret_id!r} is not a JSON object")
    return value


def _secret_of(target: Target, value: dict[str, Any], what: str) -> PostgresSecret | Neo4jSecret:
    try:
        secret = _SECRET.validate_python({"engine": target.engine.value, **value})
    except ValidationError as err:
        fields = [".".join(map(str, e["loc"])) for e in err.errors()]  # names only: inputs may hold passwords
        raise SecretError(f"target {target.name!r}: the {what} secret has not the expected shape "
                          f"(problem fields: {fields})") from None
    if secret.engine != target.engine.value:
        raise SecretError(f"target {target.name!r}: the {what} secret is for {secret.engine}")
    check_tls(target, secret)  # rotation connects like every function: verified TLS unless opted out
    return secret


def _same_server(target: Target, a: PostgresSecret | Neo4jSecret, b: PostgresSecret | Neo4jSecret) -> None:
    where = (lambda s: s.uri) if target.engine is Engine.NEO4J else (lambda s: (s.host, s.port))
    if where(a) != where(b):
        raise RotationError(f"target {target.name!r}: the secrets name different servers; rotation "
                            "changes passwords on the target's own server only")


def _expected_user(target: Target, current: Any, pending: Any) -> None:
    """The pending user is the current one (single-user) or its alternate: never anyone else, so a
    pending version written by hand cannot make the master change another user's password."""
    allowed = ({current.username.removesuffix(CLONE_SUFFIX), current.username.removesuffix(CLONE_SUFFIX) + CLONE_SUFFIX}
               if target.rotation.strategy == ALTERNATING else {current.username})
    if pending.username not in allowed:
        raise RotationError(f"target {target.name!r}: the pending version names user {pending.username!r}; "
                            f"rotation only sets the password of {sorted(allowed)}")


def _logged_in_secret(target: Target, secret_id: str, current: Any, engine: Any) -> Any:
    """Credentials that log in now: AWSCURRENT, or AWSPREVIOUS (a rotation interrupted after its
    setSecret once changed the password but before finishSecret)."""
    if engine.can_log_in(current):
        return current
    try:
        previous = _secret_of(target, _value(secret_id, stage=PREVIOUS), "previous")
    except _NoValue:
        previous = None
    if previous is not None and previous.username == current.username and engine.can_log_in(previous):
        return previous
    raise RotationError(f"target {target.name!r}: neither the current nor the previous credentials of "
                        f"{current.username!r} log in; cannot change the password")


def _username(secret_id: str, stage: str) -> str:
    try:
        return str(_value(secret_id, stage=stage).get("username"))
    except _NoValue:
        return ""


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", "ClientError"))
