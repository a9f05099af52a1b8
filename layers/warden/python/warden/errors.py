"""The library's own exceptions. Adapters translate AWS, Neo4j and psycopg errors into these, so
callers branch on types, never on message text. Their `__name__` is what Step Functions sees as
the error name of a failed task (`errorType`), so Catch/Retry rules can name them."""


class WardenError(Exception):
    """Base of every error Warden raises on purpose."""


class ConfigError(WardenError):
    """Configuration or input is invalid. Never retried: the same input fails the same way."""


class TargetNotFound(ConfigError):
    """No target of that name is configured for the stage."""


class SecretError(WardenError):
    """A target's credentials could not be read or do not have the expected shape."""


class DatabaseUnavailable(WardenError):
    """The database did not accept a connection in time. Transient: worth a retry."""


class DatabaseError(WardenError):
    """The database answered with an error."""


class BadRequest(ConfigError):
    """A function's event is not what the function accepts: it names the field and what was expected.
    Raised before anything is touched; the invocation fails (the error alarm sees it)."""


class BackupRefused(WardenError):
    """The backup record cannot be used for this (CORRUPT, FAILED, still running, expired)."""
