"""Request body reading with a hard size limit and Content-MD5 verification."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from starlette.requests import Request

from stateward.common.types import Body
from stateward.domain.errors import BadRequest, TooLarge


async def read_body(request: Request, limit: int) -> Body:
    """Read the whole body (plain or chunked), refusing more than ``limit`` bytes early.

    With a Content-Length the body is received into one preallocated buffer, so a 100 MB
    state costs 100 MB, not the chunks plus their joined copy.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest("invalid Content-Length header") from None
        if size > limit:
            raise TooLarge(f"body is larger than the limit of {limit} bytes")
        buf = bytearray(size)
        view = memoryview(buf)
        filled = 0
        async for chunk in request.stream():
            end = filled + len(chunk)
            if end > size:
                raise BadRequest("body is longer than its Content-Length")
            view[filled:end] = chunk
            filled = end
        view.release()
        if filled != size:
            raise BadRequest("body is shorter than its Content-Length")
        return buf
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def declared_md5(request: Request) -> bytes | None:
    """The digest the client declared in Content-MD5 (Terraform always sends one), if any."""
    header = request.headers.get("content-md5")
    if header is None:
        return None
    try:
        digest = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Content-MD5 header is not valid base64") from None
    if len(digest) != 16:
        raise BadRequest("Content-MD5 header is not an MD5 digest")
    return digest


def verify_content_md5(request: Request, body: Body) -> None:
    """If the client sent Content-MD5, it must match the body (state writes are verified by
    the service instead, which hashes the body once for both purposes)."""
    expected = declared_md5(request)
    if expected is None:
        return
    actual = hashlib.md5(body, usedforsecurity=False).digest()
    if not hmac.compare_digest(expected, actual):
        raise BadRequest("Content-MD5 does not match the body; the upload was corrupted")


def content_md5(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
