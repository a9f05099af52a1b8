"""The one base of every configuration and request model, and the name patterns they share.

Every model forbids unknown fields, so a typo in configuration is an error, not a silent default,
and is frozen: past the edge, code trusts what was validated there.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# A target's name: it appears in S3 keys, SSM paths, schedule and alarm names.
TARGET_NAME = r"^[a-z][a-z0-9-]{0,47}$"
# A Secrets Manager name (letters, digits and /_+=.@-) or a secret's ARN.
SECRET_NAME = r"^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:)?[A-Za-z0-9/_+=.@-]+$"  # noqa: S105 - a pattern
# A target group's name, a tag's key and value (groups and tags select targets for fan-out, the
# dashboard's drill-down, the report and the CLI's fleet views).
GROUP_NAME = r"^[a-z][a-z0-9-]{0,31}$"
TAG_KEY = r"^[A-Za-z][A-Za-z0-9_.:/-]{0,63}$"
TAG_VALUE = r"^[A-Za-z0-9_.:/+=@ -]{0,128}$"
# A backup id sorts by time: `YYYYMMDDTHHMMSSZ-<8 hex>`.
BACKUP_ID = r"^\d{8}T\d{6}Z-[0-9a-f]{8}$"


class Model(BaseModel):
    """Unknown fields are errors; instances are immutable."""

    # Validators are built on first use: a function builds the few models it validates, not all of them.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
