"""Text from outside (a client, a key service, a state) made safe for one line of a message.

One helper, so a response, a log line and an alert summary flatten text the same way: control
characters and runs of whitespace become one space (a client-chosen lock ``Who`` or ``?ID=``
cannot forge another line), optionally cut to ``limit`` characters.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def one_line(text: str, limit: int | None = None, ellipsis: str = "…") -> str:
    """``text`` on one line of at most ``limit`` characters (no limit: ``None``)."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    if limit is None or len(flat) <= limit:
        return flat
    return flat[: limit - len(ellipsis)] + ellipsis

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
REF_CHARS = 400

def source_ref(text: str) -> str:
    """Where a version came from (``s3://bucket/key?versionId=…``, ``file:///…``) as one
    printable line of bounded length: object keys may hold anything."""
    line = _UNPRINTABLE.sub("?", text)
    return line if len(line) <= REF_CHARS else line[: REF_CHARS - 1] + "…"
