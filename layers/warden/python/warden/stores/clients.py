"""Lazily created, cached AWS clients. Nothing connects at import time; tests reset the cache."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)


@cache
def aws_client(service: str) -> Any:
    """One boto3 client per service for this execution environment.

    The endpoint comes from the standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables,
    which is how the local runtime points functions at its moto server.
    """
    return boto3.session.Session().client(service, config=_CONFIG)


def reset_clients() -> None:
    aws_client.cache_clear()
