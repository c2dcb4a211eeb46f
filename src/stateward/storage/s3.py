"""S3 blob store (``[blob_store] type = "s3"``): one object per blob, ciphertext only.

- keys: ``<prefix><blob_key[:2]>/<blob_key>`` in ``bucket``;
- put: ``PutObject`` with a ``Content-MD5`` header (S3 refuses a body that does not match it,
  ``BadDigest``) and ``ServerSideEncryption``/``SSEKMSKeyId`` when ``sse`` is configured
  (server-side encryption is on top of the barrier's own encryption, never instead of it);
- get: ``GetObject``; ``NoSuchKey`` -> :class:`FileNotFoundError` (the service answers "blob
  missing", as for the file store);
- delete: ``DeleteObject`` (idempotent: S3 answers 204 for a missing key);
- list: ``ListObjectsV2`` pages under the prefix, ``(key, now - LastModified)`` per blob;
  objects whose name is not a blob key are ignored (never collected).

Client: the default ``boto3`` credential chain (environment, shared config, instance/container
role), ``region``/``endpoint_url`` if set, connect/read timeouts and botocore's "standard" retry
mode with ``max_attempts`` attempts in total, like the AWS KMS key provider. IAM permissions
needed on ``arn:aws:s3:::<bucket>/<prefix>*``: ``s3:PutObject``, ``s3:GetObject``,
``s3:DeleteObject``, and ``s3:ListBucket`` on the bucket (with ``sse = "aws:kms"`` also
``kms:GenerateDataKey``/``kms:Decrypt`` on the SSE key).

Errors other than a missing key raise :class:`~stateward.storage.errors.StoreUnavailable`
(the service answers 503): connection failures, timeouts, throttling and 5xx with
``retry=True``; refusals (``AccessDenied``, ``NoSuchBucket``, rejected or missing credentials,
other 4xx) with ``retry=False``. Messages name the operation, the bucket and the S3 error
code; never credentials or blob content.

Tested against moto 5.2.1 in server mode over real HTTP; not against the live S3 service.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stateward.common.aws import boto_client
from stateward.common.net import check_service_url
from stateward.storage.errors import StoreUnavailable

_KEY_RE = re.compile(r"^[a-f0-9]{32}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_RETRY_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "BadDigest",
        "IncompleteBody",
    }
)
_CREDENTIAL_ERRORS = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.UnknownCredentialError,
    botocore.exceptions.ProfileNotFound,
    botocore.exceptions.NoRegionError,
    botocore.exceptions.ParamValidationError,
)


class S3BlobStoreConfig(BaseModel):
    """``[blob_store]`` with ``type = "s3"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["s3"] = "s3"
    bucket: str
    #: Object name prefix ("" = the bucket root); ends with ``/`` unless empty.
    prefix: str = Field(default="stateward/", max_length=512)
    #: Endpoint override (VPC endpoint, MinIO/Ceph, a local S3 for tests).
    endpoint_url: str | None = None
    #: AWS region (default: from the profile / ``AWS_REGION`` / ``AWS_DEFAULT_REGION``).
    region: str | None = None
    #: Server-side encryption asked for on every PutObject (unset: the bucket's default).
    sse: Literal["aws:kms", "AES256"] | None = None
    #: KMS key for ``sse = "aws:kms"`` (unset: the account's ``aws/s3`` key).
    sse_kms_key_id: str | None = Field(default=None, min_length=1, max_length=2048)
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    read_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    #: Attempts per call in total (botocore "standard" retry mode; 1 = no retry).
    max_attempts: int = Field(default=3, ge=1, le=10)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not _BUCKET_RE.fullmatch(value) or ".." in value:
            raise ValueError("bucket must be an S3 bucket name (3-63 of a-z 0-9 . -)")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and (
            not value.endswith("/")
            or value.startswith("/")
            or "//" in value
            or not _PREFIX_RE.fullmatch(value)
        ):
            raise ValueError(
                "prefix must be empty or end with '/' (no leading '/', no '//'), "
                'e.g. "stateward/"'
            )
        return value

    @field_validator("sse", mode="before")
    @classmethod
    def _sse_none(cls, value: object) -> object:
        return None if value == "none" else value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else check_service_url(value, field="endpoint_url")

    @model_validator(mode="after")
    def _kms_key(self) -> S3BlobStoreConfig:
        if self.sse_kms_key_id is not None and self.sse != "aws:kms":
            raise ValueError('sse_kms_key_id needs sse = "aws:kms"')
        return self


class S3BlobStore:
    """Blobs as objects ``<prefix><key[:2]>/<key>`` in one S3 bucket."""

    #: Objects per ListObjectsV2 page (S3's maximum; tests lower it to see several pages).
    page_size = 1000

    def __init__(self, config: S3BlobStoreConfig, *, client: Any = None) -> None:
        self.config = config
        self.bucket = config.bucket
        self.prefix = config.prefix
        self._client: Any = client if client is not None else self._make_client()

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _make_client(self) -> Any:
        cfg = self.config
        try:
            return boto_client(
                "s3",
                region=cfg.region,
                endpoint_url=cfg.endpoint_url,
                connect_timeout=cfg.connect_timeout_seconds,
                read_timeout=cfg.read_timeout_seconds,
                max_attempts=cfg.max_attempts,
            )
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error("client setup", exc) from None

    def object_name(self, key: str) -> str:
        if not _KEY_RE.match(key):
            raise ValueError("invalid blob key")
        return f"{self.prefix}{key[:2]}/{key}"

    # -- errors --

    def _error(self, op: str, exc: Exception) -> StoreUnavailable:
        where = f"blob store unavailable: S3 {op} in bucket {self.bucket!r}"
        if isinstance(exc, botocore.exceptions.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or "unknown")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            retry = status >= 500 or status == 429 or code in _RETRY_CODES
            return StoreUnavailable(f"{where} failed: {code} (HTTP {status})", retry=retry)
        if isinstance(exc, _CREDENTIAL_ERRORS):
            return StoreUnavailable(f"{where} failed: {type(exc).__name__}", retry=False)
        return StoreUnavailable(f"{where} failed: {type(exc).__name__}", retry=True)

    @staticmethod
    def _not_found(exc: botocore.exceptions.ClientError) -> bool:
        return str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND_CODES

    def check(self) -> None:
        """``HeadBucket`` at start: a missing bucket, a wrong endpoint or missing rights stop
        ``serve`` with one clear line instead of failing the first write."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if status == 404:
                raise StoreUnavailable(
                    f"blob store unavailable: S3 bucket {self.bucket!r} does not exist", retry=False
                ) from None
            if status == 403:
                raise StoreUnavailable(
                    f"blob store unavailable: access to S3 bucket {self.bucket!r} denied "
                    "(HeadBucket needs s3:ListBucket)",
                    retry=False,
                ) from None
            raise self._error("HeadBucket", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error("HeadBucket", exc) from None

    # -- BlobStore protocol --

    def put(self, key: str, data: bytes) -> None:
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.object_name(key),
            "Body": data,
            "ContentMD5": base64.b64encode(md5).decode("ascii"),
            "ContentType": "application/octet-stream",
        }
        if self.config.sse is not None:
            args["ServerSideEncryption"] = self.config.sse
        if self.config.sse_kms_key_id is not None:
            args["SSEKMSKeyId"] = self.config.sse_kms_key_id
        try:
            self._client.put_object(**args)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error("PutObject", exc) from None

    def get(self, key: str) -> bytes:
        name = self.object_name(key)
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=name)
            body = answer["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()
        except botocore.exceptions.ClientError as exc:
            if self._not_found(exc):
                raise FileNotFoundError(f"s3://{self.bucket}/{name}") from None
            raise self._error("GetObject", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error("GetObject", exc) from None

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self.object_name(key))
        except botocore.exceptions.ClientError as exc:
            if self._not_found(exc):
                return
            raise self._error("DeleteObject", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error("DeleteObject", exc) from None

    def list(self) -> Iterator[tuple[str, float]]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(
                Bucket=self.bucket,
                Prefix=self.prefix,
                PaginationConfig={"PageSize": self.page_size},
            ):
                now = time.time()
                for obj in page.get("Contents", ()):
                    name = str(obj.get("Key", ""))
                    key = self._blob_key(name)
                    if key is None:
                        continue
                    modified = obj.get("LastModified")
                    age = now - modified.timestamp() if isinstance(modified, datetime) else 0.0
                    yield key, max(age, 0.0)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error("ListObjectsV2", exc) from None

    def _blob_key(self, name: str) -> str | None:
        """The blob key of an object name under the prefix, or None for any other object."""
        rest = name[len(self.prefix) :]
        shard, _, key = rest.partition("/")
        if _KEY_RE.match(key) and shard == key[:2] and len(rest) == 35:
            return key
        return None
