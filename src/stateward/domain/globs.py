"""Path globs: ``*`` matches one segment, ``**`` any number of segments (including none).

Used for protection, leases and retention rules (and later grants and key selection), so the
semantics must stay simple enough to reason about in a security review.
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache
from typing import TypeVar

from stateward.domain.paths import MAX_DEPTH, MAX_PATH_LEN, MAX_SEGMENT_LEN

T = TypeVar("T")
_GLOB_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._*-]+$")


@lru_cache(maxsize=4096)
def _parts(glob: str) -> tuple[str, ...]:
    return tuple(glob.strip("/").split("/"))


def _match(pat: tuple[str, ...], segs: tuple[str, ...]) -> bool:
    if not pat:
        return not segs
    head, rest = pat[0], pat[1:]
    if head == "**":
        return any(_match(rest, segs[i:]) for i in range(len(segs) + 1))
    if not segs:
        return False
    return fnmatch.fnmatchcase(segs[0], head) and _match(rest, segs[1:])


def glob_match(glob: str, path: str) -> bool:
    """True if ``path`` (already validated) matches ``glob``."""
    return _match(_parts(glob), tuple(path.split("/")))


def first_match(rules: list[tuple[str, T]], path: str) -> T | None:
    """The value of the first ``(glob, value)`` rule whose glob matches ``path``."""
    for glob, value in rules:
        if glob_match(glob, path):
            return value
    return None


def validate_glob(glob: str) -> str:
    """Check a configured glob (grants, token limits), raising ValueError with a one-line
    reason: state-path segments (the alphabet of ``paths``) plus ``*`` and whole-segment ``**``.

    ``?`` and ``[...]`` are refused although fnmatch would accept them: fewer wildcard forms
    mean fewer surprises when a reviewer reads a grant.
    """
    if not glob:
        raise ValueError("empty path glob")
    if len(glob) > MAX_PATH_LEN:
        raise ValueError(f"path glob longer than {MAX_PATH_LEN} characters")
    segments = glob.split("/")
    if len(segments) > MAX_DEPTH:
        raise ValueError(f"path glob has more than {MAX_DEPTH} segments")
    for seg in segments:
        if not seg:
            raise ValueError(f"path glob {glob!r} has an empty segment (leading, trailing or //)")
        if seg in (".", ".."):
            raise ValueError(f"path glob {glob!r}: segments '.' and '..' are not allowed")
        if len(seg) > MAX_SEGMENT_LEN:
            raise ValueError(f"path glob segment longer than {MAX_SEGMENT_LEN} characters")
        if "**" in seg and seg != "**":
            raise ValueError(f"path glob {glob!r}: '**' must be a whole segment")
        if not _GLOB_SEGMENT_RE.match(seg):
            raise ValueError(
                f"path glob {glob!r}: segments may only contain A-Z a-z 0-9 . _ - and '*'"
            )
    return glob
