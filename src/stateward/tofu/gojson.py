"""The few pieces of Go's ``encoding/json`` output that the envelope needs, byte for byte.

OpenTofu writes the envelope with ``json.Marshal``: compact, struct fields in declaration order,
map keys sorted, and strings HTML-escaped (``<`` ``>`` ``&`` as ``\\u003c`` …, plus U+2028/2029).
Python's ``json.dumps`` differs on exactly those escapes, so strings go through :func:`string`.
"""

from __future__ import annotations

import json
import re

_HTML_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_HTML_RE = re.compile("[<>&\u2028\u2029]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def go_text(value: str) -> str:
    """The string as Go holds it after decoding JSON: lone surrogates become U+FFFD.

    Used on both sides of the serial/lineage comparison so a lineage that Python decodes
    differently from Go still compares equal to what OpenTofu would have written.
    """
    return _SURROGATE_RE.sub("\ufffd", value)


def string(value: str) -> str:
    """``value`` encoded as Go's ``json.Marshal`` encodes a string (quotes included)."""
    dumped = json.dumps(go_text(value), ensure_ascii=False)
    return _HTML_RE.sub(lambda m: _HTML_ESCAPES[m.group(0)], dumped)


def obj(fields: list[tuple[str, str]]) -> str:
    """A compact JSON object from (key, already-encoded value) pairs, in the given order."""
    return "{" + ",".join(f"{string(k)}:{v}" for k, v in fields) + "}"
