"""State path validation.

Paths name states (``team/app/env``) and are the unit of grants, keys and retention, so two
spellings must never reach the same state: anything outside the safe alphabet is refused,
never normalised (no percent-decoding, no collapsing of ``//`` or ``.``).
"""

from __future__ import annotations

import re

from stateward.domain.errors import BadRequest

SEGMENT_RE = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_SEGMENT_LEN = 64
MAX_DEPTH = 8
MAX_PATH_LEN = 256
#: Trailing segments that name a lock URL (``/state/<path>/lock``), so no state may end in them.
RESERVED_LAST_SEGMENTS = frozenset({"lock"})


def validate_path(path: str) -> str:
    """Return ``path`` unchanged if it is a valid state path, else raise :class:`BadRequest`."""
    if not path:
        raise BadRequest("state path is empty: use /state/<team>/<app>/<env>")
    if len(path) > MAX_PATH_LEN:
        raise BadRequest(f"state path is longer than {MAX_PATH_LEN} characters")
    segments = path.split("/")
    if len(segments) > MAX_DEPTH:
        raise BadRequest(f"state path has more than {MAX_DEPTH} segments")
    for seg in segments:
        if not seg:
            raise BadRequest("state path has an empty segment (leading, trailing or double '/')")
        if seg in (".", ".."):
            raise BadRequest("state path segments '.' and '..' are not allowed")
        if len(seg) > MAX_SEGMENT_LEN:
            raise BadRequest(f"state path segment longer than {MAX_SEGMENT_LEN} characters")
        if not SEGMENT_RE.match(seg):
            raise BadRequest("state path segments may only contain A-Z a-z 0-9 . _ -")
    if segments[-1] in RESERVED_LAST_SEGMENTS:
        raise BadRequest("a state path may not end in 'lock' (reserved for lock URLs)")
    return path


class StatePath(str):
    """A state path that passed :func:`validate_path`: made once where a path enters (a
    transport, the service's authorization), then passed on as the plain string it is, so
    nothing downstream validates it again."""

    __slots__ = ()

    def __new__(cls, value: str) -> StatePath:
        if type(value) is cls:
            return value
        return super().__new__(cls, validate_path(value))


def as_path(value: str) -> StatePath:
    """``value`` as a :class:`StatePath` (validated unless it already is one)."""
    return value if type(value) is StatePath else StatePath(value)
