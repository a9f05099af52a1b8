"""The AWS adapters the domain code is handed: catalog (DynamoDB), audit (append-only), leases,
artifacts (S3), secrets (Secrets Manager), targets (SSM Parameter Store), recovery state, and the
cached boto3 clients they share.

`Stores.from_settings(settings)` builds the bundle once per invocation (handlers), per CLI call or
per test, and the domain functions take it as their first argument. The interfaces are the
Protocols in `warden.stores.base`; `warden.stores.memory` has in-memory versions for unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from warden import names
from warden.errors import ConfigError
from warden.settings import Settings
from warden.stores.base import (
    ArtifactStore,
    AuditStore,
    CatalogStore,
    LeaseStore,
    RecoveryStateStore,
    SecretStore,
    TargetStore,
)

# Which setting (and environment variable) each store needs.
_NEEDS = {
    "catalog": ("catalog_table", names.ENV_CATALOG_TABLE),
    "leases": ("state_table", names.ENV_STATE_TABLE),
    "recovery_state": ("state_table", names.ENV_STATE_TABLE),
    "artifacts": ("bucket", names.ENV_BUCKET),
}


class Unconfigured:
    """Stands in for a store the stage has no table / bucket for: any use raises ConfigError."""

    def __init__(self, stage: str, store: str) -> None:
        self._stage, self._store = stage, store

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        setting, env = _NEEDS[self._store]
        raise ConfigError(f"stage {self._stage!r} lacks the {setting.replace('_', ' ')} ({env}): "
                          f"the {self._store.replace('_', ' ')} store is not configured")

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class Stores:
    """Every store a domain function may use, built from one stage's settings."""

    settings: Settings
    catalog: CatalogStore
    audit: AuditStore
    leases: LeaseStore
    artifacts: ArtifactStore
    secrets: SecretStore
    targets: TargetStore
    recovery_state: RecoveryStateStore

    @classmethod
    def from_settings(cls, settings: Settings) -> Stores:
        """The AWS adapters for `settings` (nothing connects until a store is used). A store whose
        table or bucket the stage lacks raises ConfigError, naming the setting, when it is used."""
        from warden.stores.artifacts import S3Artifacts
        from warden.stores.audit import AuditLog
        from warden.stores.catalog import Catalog
        from warden.stores.leases import Leases
        from warden.stores.recovery_state import StateStore
        from warden.stores.secrets import SecretsManagerSecrets
        from warden.stores.targets import ParameterStoreTargets

        def unconfigured(store: str) -> Any:
            return cast(Any, Unconfigured(settings.stage, store))

        return cls(
            settings=settings,
            catalog=Catalog(settings.catalog_table) if settings.catalog_table else unconfigured("catalog"),
            audit=AuditLog(settings.audit_table),
            leases=Leases(settings.state_table) if settings.state_table else unconfigured("leases"),
            artifacts=(S3Artifacts(settings.bucket, kms_key_id=settings.kms_key_id) if settings.bucket
                       else unconfigured("artifacts")),
            secrets=SecretsManagerSecrets(),
            targets=ParameterStoreTargets(settings),
            recovery_state=StateStore(settings.state_table) if settings.state_table else unconfigured("recovery_state"),
        )

    def missing(self, *stores: str) -> list[str]:
        """The settings the named stores need and the stage lacks (e.g. ["catalog_table", "bucket"])."""
        found: list[str] = []
        for store in stores:
            setting = _NEEDS[store][0]
            if isinstance(getattr(self, store), Unconfigured) and setting not in found:
                found.append(setting)
        return found

    def require(self, *stores: str) -> None:
        """Raise ConfigError, naming every missing setting, unless the named stores are configured."""
        missing = self.missing(*stores)
        if missing:
            raise ConfigError(f"stage {self.settings.stage!r} lacks settings: {', '.join(missing)}")


__all__ = ["ArtifactStore", "AuditStore", "CatalogStore", "LeaseStore", "RecoveryStateStore", "SecretStore",
           "Stores", "TargetStore", "Unconfigured"]
