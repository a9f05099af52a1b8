"""Streaming backup artifacts: bytes in, one S3 object out, in constant memory.

`ArtifactWriter` hashes (SHA-256) and counts what it is given and hands it, part by part, to a
sink: `S3MultipartSink` uploads parts in a background thread while the producer keeps writing (at
most `queue_parts` parts wait in memory), `NullSink` discards them (benchmarks). On any failure the
multipart upload is aborted: no partial object ever becomes visible.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from warden.errors import WardenError

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 16 * MiB  # S3's minimum is 5 MiB (all parts but the last); 10 000 parts max


class ArtifactError(WardenError):
    """Storing or reading a backup artifact failed; `code` is S3's error code when S3 said no."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class OutOfTime(ArtifactError):
    """The writer's deadline passed while the producer was still writing (the upload is aborted)."""


@dataclass(frozen=True)
class ArtifactInfo:
    key: str
    size_bytes: int
    sha256: str
    parts: int
    version_id: str | None = None  # the object version the upload made (versioned bucket)


class Sink(Protocol):
    def put_part(self, number: int, data: bytes) -> None: ...
    def complete(self) -> None: ...
    def abort(self) -> None: ...


class NullSink:
    """Discards every part (benchmarks: Warden's pipeline without the network)."""

    def put_part(self, number: int, data: bytes) -> None:
        return None

    def complete(self) -> None:
        return None

    def abort(self) -> None:
        return None


class S3MultipartSink:
    """An S3 multipart upload, SSE-KMS with the given key, parts uploaded by a background thread."""

    def __init__(self, s3: Any, bucket: str, key: str, *, kms_key_id: str | None = None,
                 queue_parts: int = 2, metadata: dict[str, str] | None = None) -> None:
        self.s3, self.bucket, self.key = s3, bucket, key
        extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
        if kms_key_id:
            extra["SSEKMSKeyId"] = kms_key_id
        if metadata:
            extra["Metadata"] = metadata
        try:
            self.upload_id: str = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
        except ClientError as err:
            raise ArtifactError(f"cannot start upload of s3://{bucket}/{key}: {_code(err)}") from err
        self._parts: list[dict[str, Any]] = []
        self.version_id: str | None = None
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=queue_parts)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._upload_loop, name=f"upload-{key}", daemon=True)
        self._thread.start()

    def _upload_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain after a failure so the producer never blocks
            number, data = item
            try:
                etag = self.s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                           PartNumber=number, Body=data)["ETag"]
                self._parts.append({"PartNumber": number, "ETag": etag})
            except BaseException as err:
                self._error = err

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            err = self._error
            raise ArtifactError(f"upload of s3://{self.bucket}/{self.key} failed: {err}") from err

    def put_part(self, number: int, data: bytes) -> None:
        self._raise_if_failed()
        self._queue.put((number, data))

    def _finish_thread(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def complete(self) -> None:
        self._finish_thread()
        self._raise_if_failed()
        try:
            response = self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": sorted(self._parts, key=lambda p: p["PartNumber"])},
            )
        except ClientError as err:
            raise ArtifactError(f"cannot complete s3://{self.bucket}/{self.key}: {_code(err)}", _code(err)) from err
        self.version_id = response.get("VersionId")

    def abort(self) -> None:
        self._error = self._error or ArtifactError("aborted")
        self._finish_thread()
        abort_upload(self.s3, self.bucket, self.key, self.upload_id)


def abort_upload(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload; an upload that is already gone is fine."""
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as err:
        if _code(err) not in ("NoSuchUpload", "404"):
            raise ArtifactError(f"cannot abort upload {upload_id} of s3://{bucket}/{key}: {_code(err)}") from err


class ArtifactWriter:
    """Write bytes; get one object with its size and SHA-256. Use as a context manager: leaving the
    block with an exception aborts the upload.

    `deadline` (a `time.monotonic()` value): a write after it raises `OutOfTime`, so a producer that
    would outlive its Lambda invocation stops while there is still time to abort and record why.
    `on_write`: called after each write with the bytes written so far (progress); an exception it
    raises stops the producer like any failed write.
    """

    def __init__(self, sink: Sink, key: str, *, part_size: int = DEFAULT_PART_SIZE,
                 deadline: float | None = None, on_write: Callable[[int], None] | None = None) -> None:
        if part_size < 5 * MiB and not isinstance(sink, NullSink):
            raise ValueError("S3 parts must be at least 5 MiB")
        self.sink, self.key, self.part_size = sink, key, part_size
        self._hash = hashlib.sha256()
        # One part's buffer, allocated once and refilled in place: growing, slicing and trimming a
        # bytearray per part cost ~2 ms of page faults and copies per MiB (tests/perf).
        self._buffer = bytearray(part_size)
        self._view = memoryview(self._buffer)
        self._fill = 0
        self._size = 0
        self._part = 0
        self._closed = False
        self._deadline = deadline
        self._on_write = on_write
        self.info: ArtifactInfo | None = None

    @property
    def size_bytes(self) -> int:
        """Bytes written so far."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ArtifactError("write after close")
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise OutOfTime(f"the deadline passed with {self._size} bytes written to {self.key}")
        self._hash.update(data)  # releases the GIL for large buffers
        view = memoryview(data).cast("B")
        size = view.nbytes
        self._size += size
        while view:
            take = min(len(view), self.part_size - self._fill)
            self._view[self._fill:self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill == self.part_size:
                self._flush()
        if self._on_write is not None:
            self._on_write(self._size)
        return size

    def _flush(self) -> None:
        self._part += 1
        chunk = bytes(self._view[:self._fill])  # the sink may keep it (upload queue): its own copy
        self._fill = 0
        self.sink.put_part(self._part, chunk)

    def close(self) -> ArtifactInfo:
        if self.info is not None:
            return self.info
        self._closed = True
        if self._fill or self._part == 0:
            self._flush()
        self._release()
        self.sink.complete()
        self.info = ArtifactInfo(key=self.key, size_bytes=self._size, sha256=self._hash.hexdigest(), parts=self._part,
                                 version_id=getattr(self.sink, "version_id", None))
        return self.info

    def abort(self) -> None:
        self._closed = True
        self._release()
        self.sink.abort()

    def _release(self) -> None:
        self._fill = 0
        self._view.release()
        self._buffer = bytearray()
        self._view = memoryview(self._buffer)

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def iter_object(s3: Any, bucket: str, key: str, chunk_size: int = MiB, *,
                version_id: str | None = None) -> Iterator[bytes]:
    """The stored object's bytes (that version, or the current one), streamed."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {}))["Body"]
    except ClientError as err:
        where = f"s3://{bucket}/{key}" + (f" version {version_id}" if version_id else "")
        raise ArtifactError(f"cannot read {where}: {_code(err)}", _code(err)) from err
    try:
        while chunk := body.read(chunk_size):
            yield chunk
    finally:
        body.close()


def digest_object(s3: Any, bucket: str, key: str, *, version_id: str | None = None) -> tuple[int, str]:
    """(size, SHA-256) of the stored object, recomputed from its bytes."""
    digest, size = hashlib.sha256(), 0
    for chunk in iter_object(s3, bucket, key, version_id=version_id):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def json_bytes(document: dict[str, Any]) -> bytes:
    """The bytes a manifest is stored as (their SHA-256 is the manifest's own, on the record)."""
    return json.dumps(document, indent=2, sort_keys=True).encode()


def put_json(s3: Any, bucket: str, key: str, document: dict[str, Any], *, kms_key_id: str | None = None) -> str | None:
    """Store a JSON document; returns the version id S3 gave it (versioned bucket) or None."""
    extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
    if kms_key_id:
        extra["SSEKMSKeyId"] = kms_key_id
    try:
        response = s3.put_object(Bucket=bucket, Key=key, Body=json_bytes(document),
                                 ContentType="application/json", **extra)
    except ClientError as err:
        raise ArtifactError(f"cannot write s3://{bucket}/{key}: {_code(err)}", _code(err)) from err
    return response.get("VersionId") if isinstance(response, dict) else None


def get_json(s3: Any, bucket: str, key: str, *, version_id: str | None = None) -> dict[str, Any]:
    return dict(json.loads(b"".join(iter_object(s3, bucket, key, version_id=version_id))))


class S3Artifacts:
    """The backup bucket as an ArtifactStore (warden.stores.base), SSE-KMS with the stage's key.

    `s3`: the client to use (tests hand in a wrapped one); the cached client otherwise.
    `pinned`: reads honour the version ids the catalog records (the stage's own bucket). A copy whose
    version ids are not the primary's (the replica, as the local runtime makes it) reads the current
    object: its content is still checked against the recorded SHA-256s.
    """

    def __init__(self, bucket: str, *, kms_key_id: str | None = None, s3: Any | None = None,
                 pinned: bool = True) -> None:
        self.bucket, self.kms_key_id, self._client, self.pinned = bucket, kms_key_id, s3, pinned

    def _version(self, version_id: str | None) -> str | None:
        return version_id if self.pinned else None

    @property
    def s3(self) -> Any:
        if self._client is not None:
            return self._client
        from warden.stores.clients import aws_client

        return aws_client("s3")

    def start_upload(self, key: str, *, metadata: dict[str, str] | None = None) -> S3MultipartSink:
        return S3MultipartSink(self.s3, self.bucket, key, kms_key_id=self.kms_key_id, metadata=metadata)

    def abort_upload(self, key: str, upload_id: str) -> None:
        abort_upload(self.s3, self.bucket, key, upload_id)

    def put_json(self, key: str, document: dict[str, Any]) -> str | None:
        return put_json(self.s3, self.bucket, key, document, kms_key_id=self.kms_key_id)

    def put_bytes(self, key: str, body: bytes, *, content_type: str,
                  metadata: dict[str, str] | None = None) -> str | None:
        extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms", "ContentType": content_type}
        if self.kms_key_id:
            extra["SSEKMSKeyId"] = self.kms_key_id
        if metadata:
            extra["Metadata"] = metadata
        try:
            response = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
        except ClientError as err:
            raise ArtifactError(f"cannot write s3://{self.bucket}/{key}: {_code(err)}", _code(err)) from err
        return response.get("VersionId") if isinstance(response, dict) else None

    def get_json(self, key: str, version_id: str | None = None) -> dict[str, Any]:
        return get_json(self.s3, self.bucket, key, version_id=self._version(version_id))

    def get_bytes(self, key: str, version_id: str | None = None) -> bytes:
        return b"".join(iter_object(self.s3, self.bucket, key, version_id=self._version(version_id)))

    def iter_object(self, key: str, version_id: str | None = None) -> Iterator[bytes]:
        return iter_object(self.s3, self.bucket, key, version_id=self._version(version_id))

    def digest(self, key: str, version_id: str | None = None) -> tuple[int, str]:
        return digest_object(self.s3, self.bucket, key, version_id=self._version(version_id))

    def head(self, key: str, version_id: str | None = None) -> dict[str, Any] | None:
        """HeadObject's answer, or None when there is no such object (version)."""
        version_id = self._version(version_id)
        try:
            return dict(self.s3.head_object(Bucket=self.bucket, Key=key,
                                            **({"VersionId": version_id} if version_id else {})))
        except ClientError as err:
            if _code(err) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise ArtifactError(f"cannot read s3://{self.bucket}/{key}: {_code(err)}", _code(err)) from err

    def version_pages(self, prefix: str) -> Iterator[list[dict[str, Any]]]:
        """Every version and delete marker under `prefix`, one list per ListObjectVersions page;
        each {"Key", "VersionId", "IsLatest", "Size", "DeleteMarker"}."""
        try:
            for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
                yield ([{**obj, "DeleteMarker": False} for obj in page.get("Versions", [])]
                       + [{**obj, "DeleteMarker": True} for obj in page.get("DeleteMarkers", [])])
        except ClientError as err:
            raise ArtifactError(f"cannot list s3://{self.bucket}/{prefix}: {_code(err)}", _code(err)) from err

    def delete_versions(self, objects: list[dict[str, str]]) -> list[dict[str, str]]:
        """Delete those versions (at most 1000, one DeleteObjects call); returns the per-key failures."""
        try:
            response = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        except ClientError as err:
            raise ArtifactError(f"DeleteObjects on {self.bucket} failed: {_code(err)}", _code(err)) from err
        return list(response.get("Errors", []))

    def object_lock_enabled(self) -> bool:
        try:
            config = self.s3.get_object_lock_configuration(Bucket=self.bucket).get("ObjectLockConfiguration", {})
        except ClientError as err:
            if _code(err) == "ObjectLockConfigurationNotFoundError":
                return False
            raise ArtifactError(f"cannot read the Object Lock configuration of {self.bucket}: {_code(err)}",
                                _code(err)) from err
        return bool(config.get("ObjectLockEnabled") == "Enabled")


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", "ClientError"))
