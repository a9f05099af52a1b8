"""Lazily created, cached AWS clients. Nothing connects at import time, and nothing imports boto3
until the first client is made (a quarter of a second of every cold start); tests reset the cache."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def aws_client(service: str, region: str | None = None) -> Any:
    """One boto3 client per service (and region: None is the function's own) for this execution environment.

    The endpoint comes from the standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables,
    which is how the local runtime points functions at its moto server.
    """
    import boto3.session
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)
    return boto3.session.Session().client(service, region_name=region, config=config)


@cache
def _dynamodb_codec() -> tuple[Any, Any]:
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    return TypeSerializer(), TypeDeserializer()


def to_dynamodb(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value (boto3's TypeSerializer, loaded on first use)."""
    return _dynamodb_codec()[0].serialize(value)


def from_dynamodb(value: dict[str, Any]) -> Any:
    """A DynamoDB attribute value as a Python value (boto3's TypeDeserializer, loaded on first use)."""
    return _dynamodb_codec()[1].deserialize(value)


def reset_clients() -> None:
    aws_client.cache_clear()
