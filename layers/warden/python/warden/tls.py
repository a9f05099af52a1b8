"""TLS to the databases: on by default, off only by a target's explicit `tls: {"required": false}`.

- PostgreSQL: a secret without `sslmode` means `verify-full` (the server's certificate must chain to
  a trusted CA and name the host), trusting the secret's `sslrootcert` or else the RDS CA bundle
  shipped in the layer (`warden/certs/rds-global-bundle.pem`, see warden/certs/SOURCE.md).
- Neo4j: the URI must be `neo4j+s://` or `bolt+s://` (verified against the system's CAs).

`check_tls` is applied where a target meets its secret (warden.stores.secrets.load_secret): a target that
requires TLS and a secret that asks for less is refused before any connection. With the opt-out,
the secret's choice is used, and the adapters log a warning (`warn_*`) the first time a process
connects to that database without verified TLS: once per target and process (a Lambda execution
environment, a CLI run), so the choice stays visible in the logs without drowning them.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from warden.errors import ConfigError

if TYPE_CHECKING:
    from warden.config.credentials import DatabaseSecret, Neo4jSecret, PostgresSecret
    from warden.config.target import Target

log = logging.getLogger(__name__)

_warned: set[tuple[str, ...]] = set()  # the databases this process has logged an opt-out for
_warned_lock = threading.Lock()  # health checks connect from several threads at once

CERTS_DIR = Path(__file__).resolve().parent / "certs"
RDS_CA_BUNDLE = CERTS_DIR / "rds-global-bundle.pem"
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
VERIFIED_SSLMODES = ("verify-ca", "verify-full")
ENCRYPTED_SSLMODES = ("require", *VERIFIED_SSLMODES)  # "allow" / "prefer" may fall back to plain text
VERIFIED_SCHEMES = ("neo4j+s", "bolt+s")


class TlsError(ConfigError):
    """A connection would not use the TLS its target requires, or the CA to verify it is missing."""


def neo4j_scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower()


def check_tls(target: Target, secret: DatabaseSecret) -> None:
    """Refuse a secret that asks for less than verified TLS when `target` requires it (the default).

    The message names the target, the secret and the setting, never a credential."""
    if not target.tls.required:
        return
    how = ('or, to connect without it, set `"tls": {"required": false}` on target '
           f"{target.name!r} in the stage configuration")
    if secret.engine == "postgres":
        sslmode = secret.sslmode
        if sslmode not in VERIFIED_SSLMODES:
            raise TlsError(
                f"target {target.name!r} requires TLS, but its secret {target.secret_name!r} sets sslmode={sslmode}: "
                f"use verify-full (the default when sslmode is left out) or verify-ca, {how}")
    else:
        scheme = neo4j_scheme(secret.uri)
        if scheme not in VERIFIED_SCHEMES:
            raise TlsError(
                f"target {target.name!r} requires TLS, but its secret {target.secret_name!r} has a {scheme}:// URI: "
                f"use neo4j+s:// or bolt+s://, {how}")


def postgres_root_cert(secret: PostgresSecret) -> str | None:
    """The CA file libpq verifies the server with (`sslrootcert`), for the verify-* modes; None otherwise."""
    if secret.sslmode not in VERIFIED_SSLMODES:
        return None
    path = Path(secret.sslrootcert) if secret.sslrootcert else RDS_CA_BUNDLE
    if not path.is_file():
        where = "the secret's sslrootcert" if secret.sslrootcert else "the RDS CA bundle of the warden layer"
        raise TlsError(f"cannot verify PostgreSQL at {secret.host}:{secret.port} (sslmode={secret.sslmode}): "
                       f"{where} {path} does not exist"
                       + ("" if secret.sslrootcert else "; fetch it with `python -m infra.certs` before deploying"))
    return str(path)


def warn_postgres(secret: PostgresSecret) -> None:
    """Log a warning when a PostgreSQL connection is about to be made without verified TLS: the first
    time this process connects to that database (host, port, dbname) with that sslmode."""
    if secret.sslmode in VERIFIED_SSLMODES:
        return
    if not _first_warning(("postgres", secret.host, str(secret.port), secret.dbname, secret.sslmode)):
        return
    what = ("TLS without certificate verification" if secret.sslmode == "require"
            else "no TLS (or TLS only if the server insists)")
    log.warning("PostgreSQL connection with %s: the target opted out of required TLS", what,
                extra={"host": secret.host, "port": secret.port, "dbname": secret.dbname, "sslmode": secret.sslmode})


def warn_neo4j(secret: Neo4jSecret) -> None:
    """Log a warning when a Neo4j connection is made without verified TLS: the first time this
    process connects to that URI and database."""
    scheme = neo4j_scheme(secret.uri)
    if scheme in VERIFIED_SCHEMES or not _first_warning(("neo4j", secret.uri, secret.database)):
        return
    what = "TLS without certificate verification" if scheme.endswith("+ssc") else "no TLS"
    log.warning("Neo4j connection with %s: the target opted out of required TLS", what,
                extra={"uri": secret.uri, "scheme": scheme})


def forget_warnings() -> None:
    """Forget which opt-outs this process has logged, so the next connection warns again (tests)."""
    with _warned_lock:
        _warned.clear()


def _first_warning(key: tuple[str, ...]) -> bool:
    with _warned_lock:
        if key in _warned:
            return False
        _warned.add(key)
        return True
