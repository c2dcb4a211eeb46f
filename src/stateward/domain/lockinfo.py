"""LockInfo parsing.

Terraform compares locks by ID only, and a normal UNLOCK re-sends the byte-identical LOCK body,
so we keep the raw bytes the holder sent (to return them verbatim on conflict) and extract the
few fields we show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from stateward.common.types import Body
from stateward.domain.errors import BadRequest

MAX_LOCK_BODY = 64 * 1024
MAX_ID_LEN = 256
_FIELDS = ("ID", "Operation", "Info", "Who", "Version", "Created", "Path")


@dataclass(frozen=True, slots=True)
class LockInfo:
    """The holder-visible part of a lock request."""

    id: str
    operation: str
    who: str
    version: str
    created: str
    raw: bytes


def parse_lock_info(body: Body) -> LockInfo:
    """Parse a LOCK (or ID-carrying UNLOCK) body; raise BadRequest if it is not LockInfo."""
    if len(body) > MAX_LOCK_BODY:
        raise BadRequest(f"lock info is larger than {MAX_LOCK_BODY} bytes")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("lock info is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest("lock info must be a JSON object")
    lock_id = doc.get("ID")
    if not isinstance(lock_id, str) or not lock_id.strip():
        raise BadRequest("lock info has no 'ID'")
    if len(lock_id) > MAX_ID_LEN:
        raise BadRequest(f"lock 'ID' is longer than {MAX_ID_LEN} characters")
    for field in _FIELDS:
        if field in doc and doc[field] is not None and not isinstance(doc[field], str):
            raise BadRequest(f"lock info field '{field}' must be a string")

    def s(field: str) -> str:
        v = doc.get(field)
        return v[:256] if isinstance(v, str) else ""

    return LockInfo(lock_id, s("Operation"), s("Who"), s("Version"), s("Created"), bytes(body))
