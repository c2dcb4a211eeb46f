"""Path globs: ``*`` matches one segment, ``**`` any number of segments (including none).

Used for protection, leases and retention rules (and later grants and key selection), so the
semantics must stay simple enough to reason about in a security review.
"""

from __future__ import annotations

import fnmatch
from functools import lru_cache
from typing import TypeVar

T = TypeVar("T")


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
