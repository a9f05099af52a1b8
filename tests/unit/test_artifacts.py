"""Backup artifacts stream into S3 in constant memory, hashed on the way, and never leave a
partial object behind."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local.aws import LocalAws
from warden.stores.artifacts import (
    ArtifactError,
    ArtifactWriter,
    MiB,
    NullSink,
    OutOfTime,
    S3MultipartSink,
    digest_object,
)

BUCKET = "backups"


@pytest.fixture
def s3() -> Iterator[Any]:
    with LocalAws() as aws:
        client = aws.client("s3")
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield client


def test_multipart_object_has_the_bytes_size_and_sha256_written(s3: Any) -> None:
    data = os.urandom(12 * MiB + 123)
    with ArtifactWriter(S3MultipartSink(s3, BUCKET, "t/data.bin"), "t/data.bin", part_size=5 * MiB) as writer:
        for i in range(0, len(data), 1 * MiB + 7):
            writer.write(data[i:i + 1 * MiB + 7])
    assert writer.info is not None
    assert writer.info.parts == 3
    assert writer.info.size_bytes == len(data)
    assert writer.info.sha256 == hashlib.sha256(data).hexdigest()
    assert s3.get_object(Bucket=BUCKET, Key="t/data.bin")["Body"].read() == data
    assert digest_object(s3, BUCKET, "t/data.bin") == (len(data), hashlib.sha256(data).hexdigest())
    assert s3.head_object(Bucket=BUCKET, Key="t/data.bin")["ServerSideEncryption"] == "aws:kms"


def test_empty_artifact_is_a_valid_empty_object(s3: Any) -> None:
    with ArtifactWriter(S3MultipartSink(s3, BUCKET, "t/empty"), "t/empty") as writer:
        pass
    assert writer.info is not None and writer.info.size_bytes == 0
    assert s3.get_object(Bucket=BUCKET, Key="t/empty")["Body"].read() == b""


def test_failure_in_the_producer_aborts_the_upload_and_leaves_no_object(s3: Any) -> None:
    with pytest.raises(RuntimeError, match="database went away"), \
            ArtifactWriter(S3MultipartSink(s3, BUCKET, "t/partial"), "t/partial", part_size=5 * MiB) as writer:
        writer.write(os.urandom(11 * MiB))
        raise RuntimeError("database went away")
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="t/partial")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)


def test_a_write_after_the_deadline_stops_the_producer_and_aborts(s3: Any) -> None:
    deadline = time.monotonic() + 1.0
    with pytest.raises(OutOfTime, match=r"deadline passed with 6291456 bytes"), \
            ArtifactWriter(S3MultipartSink(s3, BUCKET, "t/late"), "t/late", part_size=5 * MiB,
                           deadline=deadline) as writer:
        writer.write(os.urandom(6 * MiB))  # before the deadline: taken (one part already uploading)
        time.sleep(max(0.0, deadline - time.monotonic()) + 0.01)
        writer.write(b"x")
    assert writer.size_bytes == 6 * MiB
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="t/late")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)


class FailingPartClient:
    """The real (moto) client, except that part 2 fails as a network error would."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def upload_part(self, **kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2:
            raise ConnectionError("connection reset by peer")
        return self._client.upload_part(**kwargs)


def test_failed_part_upload_surfaces_and_aborts(s3: Any) -> None:
    flaky = FailingPartClient(s3)
    with pytest.raises(ArtifactError, match="connection reset"), \
            ArtifactWriter(S3MultipartSink(flaky, BUCKET, "t/flaky"), "t/flaky", part_size=5 * MiB) as writer:
        for _ in range(6):
            writer.write(os.urandom(5 * MiB))
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="t/flaky")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)


def test_null_sink_still_hashes_and_counts() -> None:
    with ArtifactWriter(NullSink(), "null", part_size=1024) as writer:
        writer.write(b"a" * 5000)
    assert writer.info is not None
    assert writer.info.size_bytes == 5000 and writer.info.parts == 5
    assert writer.info.sha256 == hashlib.sha256(b"a" * 5000).hexdigest()
