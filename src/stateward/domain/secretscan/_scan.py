"""Walking a state document and deciding one finding per location (pure: no I/O)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from stateward.domain.secretscan import _detect as d
from stateward.domain.statefile import resource_address

#: Stands in a JSON path for the ``value`` member of a dynamically-typed attribute's
#: ``{"value": …, "type": …}`` wrapper: the pointer has it, the location skips it.
_WRAP: Final = "\x00value"

Path = tuple[str | int, ...]

#: Free-text attributes: ``password: …`` there is prose, not an assignment.
_PROSE_NAMES: Final = frozenset(
    {
        "description", "desc", "comment", "comments", "message", "summary", "help", "title",
        "display_name", "documentation", "notes", "note", "reason", "failure_messages",
    }
)  # fmt: skip
_TOO_DEEP: Final = "the JSON is nested too deeply to scan"
_CTY_PRIMITIVES: Final = frozenset({"string", "number", "bool", "dynamic"})
_CTY_COLLECTIONS: Final = frozenset({"object", "tuple", "list", "map", "set"})
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_PAIR_NAME_KEYS: Final = ("name", "Name", "key", "Key")
_PAIR_VALUE_KEYS: Final = ("value", "Value")


@dataclass(frozen=True, slots=True)
class Finding:
    """One location in a state that holds a secret. Never carries the value, nor any part,
    length or hash of it: only where it is and why it was flagged."""

    #: Human-readable and stable, e.g.
    #: ``resources[module.db.aws_db_instance.main].instances[0].attributes.password``,
    #: ``resources[aws_iam_access_key.ci].instances["deploy"].attributes.secret``,
    #: ``outputs.db_password``.
    location: str
    #: What was found: one of ``KINDS`` (e.g. ``aws-access-key``, ``sensitive-output``).
    kind: str
    #: The rule that decided the kind (e.g. ``aws-akid``, ``name-keyword``, ``entropy-base64``).
    rule: str
    #: RFC 6901 pointer to the JSON value, for the sanitizer.
    json_pointer: str
    #: True when the secret is part of a longer text (a script, a policy, a URL): the sanitizer
    #: then redacts only the matched parts of that text instead of the whole value.
    embedded: bool = False


@dataclass(frozen=True, slots=True)
class ScanReport:
    findings: tuple[Finding, ...]
    #: ``terraform-v4``, ``opentofu-encrypted``, ``json`` (another JSON shape, scanned
    #: generically) or ``not-json``.
    format: str
    #: False when nothing could be looked at (encrypted or unreadable body).
    scanned: bool
    note: str = ""


@dataclass(slots=True)
class _Ctx:
    """Where a subtree sits: how to name its locations and which rules apply to it."""

    loc_prefix: str
    ptr_prefix: str
    rtype: str | None = None
    attributes: dict[str, Any] | None = None
    #: paths (relative to the walked root) that Terraform marks sensitive → the kind to report
    sensitive: dict[Path, str] = field(default_factory=dict)
    out: list[Finding] = field(default_factory=list)
    #: False when the raw JSON of this part has no credential anchor at all (a fast path)
    patterns: bool = True


# -- entry point ----------------------------------------------------------------------------


def scan_report(state: bytes) -> ScanReport:
    try:
        top = msgspec.json.decode(state, type=dict[str, msgspec.Raw])
    except msgspec.ValidationError:
        return _scan_generic(state)  # JSON, but not an object at the top
    except (msgspec.DecodeError, UnicodeDecodeError):
        return ScanReport((), "not-json", scanned=False, note="the body is not JSON")
    except RecursionError:
        return ScanReport((), "json", scanned=False, note=_TOO_DEEP)
    if "encryption_version" in top and "version" not in top:
        return ScanReport(
            (), "opentofu-encrypted", scanned=False,
            note="client-encrypted (OpenTofu state encryption): nothing can be scanned",
        )  # fmt: skip
    if "version" not in top or _decode_any(top["version"]) != 4:
        return _scan_generic(state)
    out: list[Finding] = []
    skipped: list[str] = []
    for key, raw in top.items():
        if key in ("version", "terraform_version", "serial", "lineage"):
            continue
        try:
            if key == "outputs":
                _scan_outputs(_decode_any(raw), out)
            elif key == "resources":
                _scan_resources(raw, out, skipped)
            else:
                ctx = _Ctx(loc_prefix=_join("", key), ptr_prefix="/" + _escape(key), out=out)
                _walk(_decode_any(raw), ctx, name=key)
        except RecursionError:
            skipped.append(key)
    note = f"not scanned, nested too deeply: {', '.join(skipped)}" if skipped else ""
    return ScanReport(tuple(out), "terraform-v4", scanned=True, note=note)


def _decode_any(raw: msgspec.Raw | bytes) -> Any:
    return msgspec.json.decode(raw)


def _scan_generic(state: bytes) -> ScanReport:
    try:
        doc = msgspec.json.decode(state)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return ScanReport((), "not-json", scanned=False, note="the body is not JSON")
    except RecursionError:
        return ScanReport((), "json", scanned=False, note=_TOO_DEEP)
    out: list[Finding] = []
    _walk(doc, _Ctx(loc_prefix="", ptr_prefix="", out=out), name=None)
    return ScanReport(
        tuple(out), "json", scanned=True,
        note="not a Terraform/OpenTofu v4 state: scanned as generic JSON",
    )  # fmt: skip


# -- state parts ----------------------------------------------------------------------------


def _scan_outputs(outputs: Any, out: list[Finding]) -> None:
    if not isinstance(outputs, dict):
        return
    for name, output in outputs.items():
        if not isinstance(output, dict) or "value" not in output:
            continue
        ctx = _Ctx(
            loc_prefix=_join("outputs", name),
            ptr_prefix=f"/outputs/{_escape(name)}/value",
            out=out,
        )
        if output.get("sensitive") is True:
            ctx.sensitive[()] = "sensitive-output"
        _walk(output["value"], ctx, name=name)


def _scan_resources(raw: msgspec.Raw, out: list[Finding], skipped: list[str]) -> None:
    try:
        resources = msgspec.json.decode(raw, type=list[msgspec.Raw])
    except msgspec.ValidationError:
        ctx = _Ctx(loc_prefix="resources", ptr_prefix="/resources", out=out)
        _walk(_decode_any(raw), ctx, name=None)
        return
    for r_index, r_raw in enumerate(resources):
        # one resource object at a time: a 100 MB state never becomes one Python tree
        try:
            res = _decode_any(r_raw)
        except RecursionError:
            skipped.append(f"resources[{r_index}]")
            continue
        if not isinstance(res, dict):
            continue
        patterns = d.raw_may_hold_credentials(memoryview(r_raw))
        address = resource_address(res, None)  # the instance key goes in ``instances[…]``
        instances = res.get("instances")
        if not isinstance(instances, list):
            continue
        rtype = res.get("type") if isinstance(res.get("type"), str) else None
        for i_index, inst in enumerate(instances):
            if isinstance(inst, dict):
                label = _instance_label(inst, i_index)
                base_loc = f"resources[{address}].instances{label}"
                base_ptr = f"/resources/{r_index}/instances/{i_index}"
                _scan_instance(inst, rtype, base_loc, base_ptr, out, patterns)


def _scan_instance(
    inst: dict[str, Any],
    rtype: str | None,
    base_loc: str,
    base_ptr: str,
    out: list[Finding],
    patterns: bool = True,
) -> None:
    attrs = inst.get("attributes")
    if isinstance(attrs, dict):
        ctx = _Ctx(
            loc_prefix=base_loc + ".attributes",
            ptr_prefix=base_ptr + "/attributes",
            rtype=rtype,
            attributes=attrs,
            out=out,
            patterns=patterns,
        )
        for path in _sensitive_paths(inst.get("sensitive_attributes"), attrs, rtype):
            ctx.sensitive[path] = "sensitive-attribute"
        _walk(attrs, ctx, name=None)
    flat = inst.get("attributes_flat")
    if isinstance(flat, dict):
        ctx = _Ctx(
            loc_prefix=base_loc + ".attributes_flat",
            ptr_prefix=base_ptr + "/attributes_flat",
            rtype=rtype,
            attributes=flat,
            out=out,
            patterns=patterns,
        )
        for key, value in flat.items():
            if isinstance(key, str) and isinstance(value, str):
                parts = [p for p in key.split(".") if p and not p.isdigit() and p != "%"]
                name = parts[-1] if parts else key
                _judge_string(value, (key,), name, flat, ctx, key.split(".", 1)[0], False, None)


def _instance_label(inst: dict[str, Any], position: int) -> str:
    key = inst.get("index_key")
    if isinstance(key, bool) or key is None:
        label = f"[{position}]"
    elif isinstance(key, int):
        label = f"[{key}]"
    else:
        label = f"[{json.dumps(str(key))}]"
    deposed = inst.get("deposed")
    if isinstance(deposed, str) and deposed:
        label += f".deposed[{json.dumps(deposed)}]"
    return label


# -- sensitive_attributes -------------------------------------------------------------------


def _sensitive_paths(raw: Any, attrs: dict[str, Any], rtype: str | None) -> Iterator[Path]:
    """Resolve ``sensitive_attributes`` to JSON paths in ``attrs``.

    Terraform 0.15+ and OpenTofu write a list of cty paths, each a list of steps
    (``[[{"type": "get_attr", "value": "password"}]]``; index steps carry a typed key:
    ``{"type": "index", "value": {"value": 0, "type": "number"}}``). Also accepted: a flat
    list of steps (one path, or failing that one path per step) and dotted strings.
    Paths that do not resolve are ignored."""
    if not isinstance(raw, list) or not raw:
        return
    paths: list[list[Any]] = []
    if all(isinstance(p, dict) for p in raw):
        if _resolve(attrs, raw) is not None:
            paths.append(raw)
        else:
            paths.extend([step] for step in raw)
    else:
        for p in raw:
            if isinstance(p, list):
                paths.append(p)
            elif isinstance(p, dict):
                paths.append([p])
            elif isinstance(p, str) and p:
                paths.append([_str_step(s) for s in p.split(".") if s != "%"])
    if rtype == "terraform_data":
        # terraform_data's ``output`` mirrors ``input`` but Terraform marks only ``input``
        mirrored = []
        for p in paths:
            if p and isinstance(p[0], dict) and p[0].get("value") == "input":
                mirrored.append([{"type": "get_attr", "value": "output"}, *p[1:]])
        paths.extend(mirrored)
    for p in paths:
        resolved = _resolve(attrs, p)
        if resolved is not None:
            yield resolved


def _str_step(s: str) -> dict[str, Any]:
    if s.isdigit():
        return {"type": "index", "value": {"value": int(s), "type": "number"}}
    return {"type": "get_attr", "value": s}


def _is_wrapper(node: Any) -> bool:
    """A dynamically-typed value as Terraform stores it: ``{"value": …, "type": …}``."""
    if not isinstance(node, dict) or len(node) != 2 or "value" not in node or "type" not in node:
        return False
    t = node["type"]
    if isinstance(t, str):
        return t in _CTY_PRIMITIVES
    return isinstance(t, list) and bool(t) and t[0] in _CTY_COLLECTIONS


def _resolve(node: Any, steps: list[Any]) -> Path | None:
    path: list[str | int] = []
    for step in steps:
        if _is_wrapper(node):
            node = node["value"]
            path.append(_WRAP)
        if not isinstance(step, dict):
            return None
        kind, val = step.get("type"), step.get("value")
        if kind == "get_attr" and isinstance(val, str) and isinstance(node, dict):
            if val not in node:
                return None
            node = node[val]
            path.append(val)
        elif kind == "index":
            key = val.get("value") if isinstance(val, dict) else val
            if isinstance(node, list):
                idx = _list_index(node, key)
                if idx is None:
                    return None
                node = node[idx]
                path.append(idx)
            elif isinstance(node, dict) and isinstance(key, str) and key in node:
                node = node[key]
                path.append(key)
            else:
                return None
        else:
            return None
    if _is_wrapper(node):
        path.append(_WRAP)
    return tuple(path)


def _list_index(node: list[Any], key: Any) -> int | None:
    if isinstance(key, float) and key.is_integer():
        key = int(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return key if 0 <= key < len(node) else None
    for i, item in enumerate(node):  # a set element is addressed by its value
        if item == key:
            return i
    return None


# -- the walk -------------------------------------------------------------------------------


def _walk(root: Any, ctx: _Ctx, name: str | None) -> None:
    """Depth-first over ``root`` without recursion (a deep document cannot overflow)."""
    sensitive = ctx.sensitive
    # (node, path, name, parent object, top-level attribute, inside a sensitive subtree)
    stack: list[tuple[Any, Path, str | None, Any, str | None, bool]] = [
        (root, (), name, None, None, False)
    ]
    in_attributes = ctx.attributes is not None
    while stack:
        node, path, nm, parent, top, under = stack.pop()
        if sensitive and path in sensitive:
            kind = sensitive[path]
            if isinstance(node, str):
                _judge_string(node, path, nm, parent, ctx, top, False, kind)
                continue
            if _has_material(node):
                _emit(ctx, path, kind, "tf-" + kind, embedded=False)
            under = True
        if isinstance(node, str):
            if not under or len(node) >= 20:
                _judge_string(node, path, nm, parent, ctx, top, under, None)
        elif isinstance(node, dict):
            if _is_wrapper(node):
                stack.append((node["value"], (*path, _WRAP), nm, parent, top, under))
                continue
            if "values" in node and "sensitive_values" in node and not under:
                _walk_show_json(node, path, ctx)
                continue
            if not (under or in_attributes) and node.get("sensitive") is True and "value" in node:
                # ``terraform show -json`` outputs, and any {"sensitive": true, "value": …}
                # outside resource attributes (there, ``tfe_variable`` has such keys)
                sensitive[(*path, "value")] = "sensitive-output"
            pair_name = _pair_name(node)
            for key, child in reversed(node.items()):
                if not isinstance(key, str):
                    continue
                if isinstance(child, str | dict | list) or (sensitive and not under):
                    child_name = pair_name if pair_name and key in _PAIR_VALUE_KEYS else key
                    child_top = top if top is not None or not in_attributes else key
                    stack.append((child, (*path, key), child_name, node, child_top, under))
        elif isinstance(node, list):
            for i in range(len(node) - 1, -1, -1):
                child = node[i]
                if isinstance(child, str | dict | list) or (sensitive and not under):
                    stack.append((child, (*path, i), nm, parent, top, under))


def _walk_show_json(node: dict[str, Any], path: Path, ctx: _Ctx) -> None:
    """``terraform show -json`` resources: ``values`` with a ``sensitive_values`` mirror."""
    sub = _Ctx(
        loc_prefix=_location(ctx.loc_prefix, (*path, "values")),
        ptr_prefix=_pointer(ctx.ptr_prefix, (*path, "values")),
        rtype=node.get("type") if isinstance(node.get("type"), str) else None,
        attributes=node["values"] if isinstance(node["values"], dict) else None,
        out=ctx.out,
    )
    for p in _mirror_paths(node["sensitive_values"], ()):
        sub.sensitive[p] = "sensitive-attribute"
        if sub.rtype == "terraform_data" and p[:1] == ("input",):
            sub.sensitive[("output", *p[1:])] = "sensitive-attribute"
    _walk(node["values"], sub, name=None)
    for key, child in node.items():
        if key not in ("values", "sensitive_values") and isinstance(child, dict | list):
            where = (*path, key)
            sub_ctx = _Ctx(_location(ctx.loc_prefix, where), _pointer(ctx.ptr_prefix, where))
            sub_ctx.out = ctx.out
            _walk(child, sub_ctx, key)


def _mirror_paths(mirror: Any, path: Path) -> Iterator[Path]:
    if mirror is True:
        yield path
    elif isinstance(mirror, dict):
        for k, v in mirror.items():
            yield from _mirror_paths(v, (*path, k))
    elif isinstance(mirror, list):
        for i, v in enumerate(mirror):
            yield from _mirror_paths(v, (*path, i))


def _pair_name(node: dict[str, Any]) -> str | None:
    """``{"name": "DB_PASSWORD", "value": "…"}`` (container env, Helm ``set``): the value's
    name is the pair's ``name``."""
    for k in _PAIR_NAME_KEYS:
        n = node.get(k)
        if isinstance(n, str) and any(v in node for v in _PAIR_VALUE_KEYS):
            return n
    return None


def _has_material(node: Any) -> bool:
    """Is there anything to hide (a non-empty string, a non-zero number)?"""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, str):
            if n and not d.is_marker(n):
                return True
        elif isinstance(n, bool) or n is None:
            continue
        elif isinstance(n, int | float):
            if n != 0:
                return True
        elif isinstance(n, dict):
            if _is_wrapper(n):
                stack.append(n["value"])
            else:
                stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)
    return False


# -- verdicts -------------------------------------------------------------------------------


def _judge_string(
    value: str,
    path: Path,
    name: str | None,
    parent: Any,
    ctx: _Ctx,
    top: str | None,
    under: bool,
    sensitive_kind: str | None,
) -> None:
    """Decide one string: the most specific kind among every rule that fires, if any.

    ``sensitive_kind``: Terraform marks this very value sensitive. ``under``: it sits inside a
    value Terraform marks sensitive (already reported): only a credential's kind is added."""
    if not value or d.is_marker(value):
        return
    n = len(value)
    best_kind: str | None = sensitive_kind
    best_rule = "tf-" + sensitive_kind if sensitive_kind else ""
    whole = sensitive_kind is not None  # does a reason cover the whole value?

    def consider(kind: str, rule: str, covers: bool) -> None:
        nonlocal best_kind, best_rule, whole
        whole = whole or covers
        if best_kind is None or d.RANK[kind] < d.RANK[best_kind]:
            best_kind, best_rule = kind, rule

    if n >= 8:
        matches = d.find_credentials(value) if ctx.patterns else []
        if matches and name is not None and name.lower() in _PROSE_NAMES:
            matches = [m for m in matches if m.kind in d.CREDENTIAL_KINDS]
        if matches:
            lead = n - len(value.lstrip())
            tail = len(value.rstrip())
            for m in matches:
                consider(m.kind, m.rule, m.start <= lead and m.end >= tail)
        elif n >= 24:
            decoded = d.decode_base64_text(value)
            if decoded is not None:
                for m in d.find_credentials(decoded):
                    consider(m.kind, m.rule + "+base64", True)
        if n == 40 and isinstance(parent, dict) and _akid_sibling(value, parent):
            consider("aws-secret-key", "aws-secret-sibling", True)
    if under:
        if best_kind is not None and best_kind in d.CREDENTIAL_KINDS:
            _emit(ctx, path, best_kind, best_rule, embedded=not whole)
        return
    named = _named_secret(value, name, ctx, top)
    if named is not None:
        consider(named[0], named[1], True)
    if best_kind is None and n >= 16 and not _entropy_exempt(name, ctx, top):
        rule = d.high_entropy_rule(value)
        if rule is not None:
            consider("high-entropy", rule, True)
    if best_kind is not None:
        _emit(ctx, path, best_kind, best_rule, embedded=not whole)


def _akid_sibling(value: str, parent: dict[str, Any]) -> bool:
    """A 40-character secret-shaped string beside an AWS access key ID is its secret key."""
    if len(parent) > 64 or not d.aws_secret_shaped(value):
        return False
    return any(
        isinstance(v, str) and len(v) == 20 and d.aws_akid_shaped(v) for v in parent.values()
    )


def _named_secret(
    value: str, name: str | None, ctx: _Ctx, top: str | None
) -> tuple[str, str] | None:
    stripped = value.strip()
    if not stripped:
        return None
    type_hit = (
        ctx.rtype is not None
        and top is not None
        and ctx.attributes is not None
        and d.type_secret_attr(ctx.rtype, top, ctx.attributes)
    )
    name_hit = name is not None and d.secret_name(name)
    if not (type_hit or name_hit) or d.is_placeholder(stripped):
        return None
    if _describes_not_holds(stripped):
        return None
    if name_hit and name is not None:
        tokens = d.name_tokens(name)
        if "secret" in tokens and d.aws_secret_shaped(stripped):
            return "aws-secret-key", "aws-secret-named"
        if "key" in tokens and d.azure_key_shaped(stripped):
            return "azure-storage-key", "azure-key-named"
        return "secret-name", "name-keyword"
    return "secret-name", "type-attr"


_URL_NO_CREDS: Final = re.compile(r"[a-z][a-z0-9+.-]*://[^\s@]*", re.IGNORECASE)


_PATH: Final = re.compile(r"(?:/[\w.@-]+)+/?")


def _describes_not_holds(value: str) -> bool:
    """A URL without credentials, an ARN, a path made of words: where a secret is, not the
    secret (a random base64 secret may start with ``/`` too)."""
    if _URL_NO_CREDS.fullmatch(value):
        return True
    if value.startswith(("arn:", "projects/")) and " " not in value:
        return True
    return _PATH.fullmatch(value) is not None and d.wordy(value)


def _entropy_exempt(name: str | None, ctx: _Ctx, top: str | None) -> bool:
    if ctx.rtype is not None and ctx.rtype in d.ENTROPY_EXEMPT_TYPES:
        return True
    if name is not None and d.entropy_exempt_name(name):
        return True
    return top is not None and top != name and d.entropy_exempt_name(top)


# -- output ---------------------------------------------------------------------------------


def _emit(ctx: _Ctx, path: Path, kind: str, rule: str, embedded: bool) -> None:
    # the walk reaches each path once, and decides each path once: one finding per location
    location = _location(ctx.loc_prefix, path)
    ctx.out.append(Finding(location, kind, rule, _pointer(ctx.ptr_prefix, path), embedded))


def _location(prefix: str, path: Path) -> str:
    loc = prefix
    for step in path:
        if step == _WRAP:
            continue
        loc = _join(loc, step)
    return loc or "$"


def _join(loc: str, step: str | int) -> str:
    if isinstance(step, int):
        return f"{loc}[{step}]"
    if _IDENT.fullmatch(step):
        return f"{loc}.{step}" if loc else step
    return f"{loc}[{json.dumps(step)}]"


def _pointer(prefix: str, path: Path) -> str:
    parts = [prefix]
    for step in path:
        parts.append("/" + ("value" if step == _WRAP else _escape(str(step))))
    return "".join(parts)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")
