"""Reading an S3 backend's bucket: listing its state objects (or every version of them) and
fetching one object version, never more than ``max_body_bytes`` of it."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]

from stateward.common.aws import boto_client
from stateward.common.text import source_ref
from stateward.transfer.errors import SourceError, TooLargeSource


def too_large(limit: int, size: int | None) -> str:
    """The reason an object of ``size`` bytes (None: unknown) is skipped."""
    return f"larger than max_body_bytes ({limit} bytes)" + (
        "" if size is None else f": {size} bytes"
    )


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    key: str
    #: ``None`` when listed without ``--versions`` (the current object).
    version_id: str | None
    modified: float
    size: int


#: Reads one object version: (bytes, version ID, time).
Loader = Callable[[ObjectVersion], tuple[bytes, str | None, float]]


def _s3_error(op: str, where: str, exc: Exception) -> SourceError:
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return SourceError(f"S3 {op} {where} failed: {err.get('Code') or 'error'} (HTTP {status})")
    return SourceError(f"S3 {op} {where} failed: {type(exc).__name__}")


def s3_client(endpoint_url: str | None, region: str | None) -> Any:
    try:
        return boto_client(
            "s3",
            region=region,
            endpoint_url=endpoint_url,
            connect_timeout=5.0,
            read_timeout=60.0,
            max_attempts=5,
        )
    except botocore.exceptions.BotoCoreError as exc:
        raise _s3_error("client setup", "", exc) from None


def _when(value: Any) -> float:
    return value.timestamp() if isinstance(value, dt.datetime) else 0.0


def list_current(client: Any, bucket: str, prefixes: list[str]) -> dict[str, list[ObjectVersion]]:
    out: dict[str, list[ObjectVersion]] = {}
    try:
        for prefix in prefixes:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = str(obj["Key"])
                    out[key] = [
                        ObjectVersion(key, None, _when(obj.get("LastModified")), obj["Size"])
                    ]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise _s3_error("ListObjectsV2", f"s3://{bucket}", exc) from None
    return out


def list_versions(
    client: Any, bucket: str, prefixes: list[str]
) -> tuple[dict[str, list[ObjectVersion]], set[str]]:
    """Every version of every key, oldest first, and the keys whose latest version is a
    delete marker. S3 lists a key's versions newest first; times have a resolution of a
    second, so the listing order breaks ties."""
    listed: dict[str, list[ObjectVersion]] = defaultdict(list)
    deleted: set[str] = set()
    seen: set[tuple[str, str]] = set()
    try:
        for prefix in prefixes:
            pages = client.get_paginator("list_object_versions").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for page in pages:
                for v in page.get("Versions", ()):
                    key, vid = str(v["Key"]), str(v.get("VersionId") or "null")
                    if (key, vid) not in seen:
                        seen.add((key, vid))
                        listed[key].append(
                            ObjectVersion(key, vid, _when(v.get("LastModified")), v["Size"])
                        )
                for m in page.get("DeleteMarkers", ()):
                    if m.get("IsLatest"):
                        deleted.add(str(m["Key"]))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise _s3_error("ListObjectVersions", f"s3://{bucket}", exc) from None
    ordered = {
        key: sorted(reversed(found), key=lambda v: v.modified)  # stable: ties keep S3's order
        for key, found in listed.items()
    }
    return ordered, deleted


def s3_ref(bucket: str, key: str, version_id: str | None) -> str:
    """Where a version came from; ``?versionId=null`` names the version S3 keeps for an object
    written before versioning was enabled."""
    ref = f"s3://{bucket}/{key}"
    return source_ref(ref if version_id is None else f"{ref}?versionId={version_id}")


def fetch(
    client: Any, bucket: str, v: ObjectVersion, limit: int
) -> tuple[bytes, str | None, float]:
    """The bytes of one object version, its version ID (the current one's if unknown) and its
    time (as read, in case the current object changed since it was listed).

    A listed version is always fetched by its ID, ``null`` included (without it S3 answers
    with the current object). Raises TooLargeSource, reading at most ``limit + 1`` bytes, for
    an object larger than ``limit`` (one that grew since it was listed)."""
    args: dict[str, Any] = {"Bucket": bucket, "Key": v.key}
    if v.version_id is not None:
        args["VersionId"] = v.version_id
    try:
        answer = client.get_object(**args)
        body = answer["Body"]
        try:
            length = answer.get("ContentLength")
            length = length if isinstance(length, int) else None
            if length is not None and length > limit:
                raise TooLargeSource(too_large(limit, length))
            data = bytes(body.read(limit + 1))
        finally:
            body.close()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise _s3_error("GetObject", s3_ref(bucket, v.key, v.version_id), exc) from None
    if len(data) > limit:
        raise TooLargeSource(too_large(limit, length))
    modified = _when(answer.get("LastModified")) or v.modified
    return data, answer.get("VersionId") or v.version_id, modified
