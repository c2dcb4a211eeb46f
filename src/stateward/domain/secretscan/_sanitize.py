"""Replacing what ``scan`` found with ``REDACTED(<kind>)`` markers (pure: no I/O)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import msgspec

from stateward.domain.secretscan import _detect as d
from stateward.domain.secretscan._scan import Finding

Fragment = bytes | memoryview


def sanitize(state: bytes, findings: Iterable[Finding]) -> bytes:
    """``state`` with every finding's value replaced by ``"REDACTED(<kind>)"``.

    - a string: the marker (for an ``embedded`` finding, only the credentials inside the text
      are replaced, so a script or a policy stays readable);
    - an object or a list (a sensitive block): every string in it becomes the marker and every
      number 0, so the shape, and the provider's schema, still fit;
    - a number: 0 (a marker would break the attribute's type);
    - a sensitive output: its ``value`` becomes the marker and its ``type`` ``"string"``.

    Everything else (serial, lineage, resources, key order) is kept, and the top-level values
    and resources without findings are copied byte for byte: on a state Terraform wrote
    (2-space indented), only the redacted lines differ. Only the resources with findings are
    decoded. Pointers that do not resolve are skipped; with no findings the input is returned
    as it is. Raises ``ValueError`` if findings are given for a body that is not JSON.
    """
    todo = list(findings)
    if not todo:
        return bytes(state)
    # deepest first: a marker set inside a block survives the block's own redaction
    todo.sort(key=lambda f: f.json_pointer.count("/"), reverse=True)
    try:
        top = msgspec.json.decode(state, type=dict[str, msgspec.Raw])
    except msgspec.ValidationError:
        return _sanitize_other(state, todo)  # JSON, but not an object at the top
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise ValueError("state is not JSON") from None
    except RecursionError:
        raise ValueError("state is nested too deeply") from None

    by_key: dict[str, list[Finding]] = defaultdict(list)
    for f in todo:
        tokens = _tokens(f.json_pointer)
        if tokens and tokens[0] in top:
            by_key[tokens[0]].append(f)
    # Terraform writes 2-space indented JSON: rebuild in that layout around the original
    # bytes of every untouched part, else compactly
    pretty = bytes(state[:2]) == b"{\n"
    frags: list[Fragment] = [b"{\n" if pretty else b"{"]
    for i, (key, raw) in enumerate(top.items()):
        if i:
            frags.append(b",\n" if pretty else b",")
        frags.append(b"  " if pretty else b"")
        frags.append(msgspec.json.encode(key))
        frags.append(b": " if pretty else b":")
        group = by_key.get(key)
        if group is None:
            frags.append(memoryview(raw))
        elif key == "resources":
            frags.extend(_sanitize_resources(raw, group, pretty))
        else:
            value = _decode(raw)
            for f in group:
                value = _apply({key: value}, _tokens(f.json_pointer), f)[key]
            frags.append(_dump(value, pretty, depth=1))
    frags.append(b"\n}\n" if pretty else b"}")
    return b"".join(frags)


def _sanitize_other(state: bytes, todo: list[Finding]) -> bytes:
    try:
        doc = _decode(state)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise ValueError("state is not JSON") from None
    except RecursionError:
        raise ValueError("state is nested too deeply") from None
    for f in todo:
        doc = _apply(doc, _tokens(f.json_pointer), f)
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"


def _sanitize_resources(raw: msgspec.Raw, group: list[Finding], pretty: bool) -> list[Fragment]:
    """Only the resources with findings are decoded and re-encoded; the rest are copied."""
    try:
        resources = msgspec.json.decode(raw, type=list[msgspec.Raw])
    except msgspec.ValidationError:
        value = _decode(raw)
        for f in group:
            value = _apply({"resources": value}, _tokens(f.json_pointer), f)["resources"]
        return [_dump(value, pretty, depth=1)]
    by_index: dict[int, list[Finding]] = defaultdict(list)
    for f in group:
        tokens = _tokens(f.json_pointer)
        if len(tokens) > 1 and tokens[1].isdigit() and int(tokens[1]) < len(resources):
            by_index[int(tokens[1])].append(f)
    if not by_index:
        return [memoryview(raw)]
    frags: list[Fragment] = [b"[\n" if pretty else b"["]
    for index, res_raw in enumerate(resources):
        if index:
            frags.append(b",\n" if pretty else b",")
        if pretty:
            frags.append(b"    ")
        fs = by_index.get(index)
        if fs is None:
            frags.append(memoryview(res_raw))
            continue
        res = _decode(res_raw)
        for f in fs:
            res = _apply(res, _tokens(f.json_pointer)[2:], f)
        frags.append(_dump(res, pretty, depth=2))
    frags.append(b"\n  ]" if pretty else b"]")
    return frags


def _dump(value: Any, pretty: bool, depth: int) -> bytes:
    """``value`` as JSON, laid out for its nesting ``depth`` in a Terraform-style document
    (raw newlines only occur between tokens: inside strings they are escaped)."""
    compact = msgspec.json.encode(value)
    if not pretty:
        return compact
    return msgspec.json.format(compact, indent=2).replace(b"\n", b"\n" + b"  " * depth)


def _decode(raw: msgspec.Raw | bytes) -> Any:
    return msgspec.json.decode(raw)


def _tokens(pointer: str) -> list[str]:
    if not pointer.startswith("/"):
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _apply(doc: Any, tokens: list[str], f: Finding) -> Any:
    """Redact the value at ``tokens`` in ``doc`` (in place); returns the (possibly new) doc."""
    if not tokens:
        return _redacted(doc, f)
    parent = doc
    for t in tokens[:-1]:
        parent = _child(parent, t)
        if parent is _MISSING:
            return doc
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            return doc
        if last == "value" and "type" in parent and len(tokens) == 3 and tokens[0] == "outputs":
            _redact_output(parent, f)  # /outputs/<name>/value
        else:
            parent[last] = _redacted(parent[last], f)
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        parent[int(last)] = _redacted(parent[int(last)], f)
    return doc


_MISSING = object()


def _child(node: Any, token: str) -> Any:
    if isinstance(node, dict):
        return node.get(token, _MISSING)
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    return _MISSING


def _redact_output(output: dict[str, Any], f: Finding) -> None:
    value = output["value"]
    if isinstance(value, str):
        output["value"] = _redacted(value, f)
    elif output.get("sensitive") is True or f.kind == "sensitive-output":
        output["value"] = d.marker(f.kind)
        output["type"] = "string"
    else:
        output["value"] = _redacted(value, f)


def _redacted(value: Any, f: Finding) -> Any:
    if isinstance(value, str):
        if d.is_marker(value):
            return value
        if f.embedded:
            return d.redact_text(value, f.kind)
        return d.marker(f.kind)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return 0
    if isinstance(value, dict | list):
        return _redact_tree(value, f.kind)
    return value


def _redact_tree(root: dict[str, Any] | list[Any], kind: str) -> dict[str, Any] | list[Any]:
    """Every string in ``root`` becomes a marker (existing markers stay), every number 0.
    A dynamically-typed ``{"value": …, "type": …}`` keeps its ``type``."""
    stack: list[dict[str, Any] | list[Any]] = [root]
    while stack:
        node = stack.pop()
        items: Iterable[tuple[Any, Any]]
        if isinstance(node, dict):
            wrapper = set(node) == {"value", "type"}
            items = [(k, v) for k, v in node.items() if not (wrapper and k == "type")]
        else:
            items = list(enumerate(node))
        for k, v in items:
            if isinstance(v, str):
                if not d.is_marker(v):
                    node[k] = d.marker(kind)
            elif isinstance(v, bool) or v is None:
                continue
            elif isinstance(v, int | float):
                node[k] = 0
            elif isinstance(v, dict | list):
                stack.append(v)
    return root
