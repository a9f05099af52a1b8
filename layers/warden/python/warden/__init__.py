"""Warden: keeps Neo4j and PostgreSQL on AWS durable and healthy.

This package is the domain library shared by every Lambda handler (it ships as a layer) and by
the `warden` CLI. Nothing here connects to anything at import time.
"""

__version__ = "0.1.0"
