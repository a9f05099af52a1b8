"""Warden: keeps Neo4j and PostgreSQL on AWS durable and healthy.

This package is the domain library shared by every Lambda handler and ECS task (it ships as a
layer) and by the `warden` CLI (warden_cli/, outside the layer). Layers only reach down:
`config`, `events`, `models`, `errors`, `names`, `settings` at the bottom; `stores` (AWS adapters)
and `engines` (databases) above them; the domain modules (backup, verify, prune, health, license,
recovery, maintenance, remediation, report, rotation) on top. Nothing connects at import time.
"""

__version__ = "0.1.0"
