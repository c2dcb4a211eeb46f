"""Parsing, summarising and diffing state documents (pure: no I/O).

Two shapes reach the server: Terraform/OpenTofu plaintext state v4, and OpenTofu's
client-encrypted envelope (no ``version``, ``encryption_version: "v0"``) whose ``serial`` and
``lineage`` stay in clear. Both feed the same lineage/serial guards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec

from stateward.common.types import Body
from stateward.domain.errors import BadRequest

SUPPORTED_VERSIONS = frozenset({4})


@dataclass(frozen=True, slots=True)
class StateSummary:
    """What the server needs to know about a state body, without keeping the body parsed."""

    serial: int
    lineage: str
    terraform_version: str
    resource_count: int
    output_count: int
    client_encrypted: bool
    #: OpenTofu key provider types named by an encrypted state's ``meta`` keys
    #: (``key_provider.<type>.<name>``); an ``encrypted_metadata_alias`` hides the type and
    #: shows as ``alias``. Empty for plaintext states.
    client_key_providers: tuple[str, ...] = ()


class _Output(msgspec.Struct):
    sensitive: Any = False


class _Resource(msgspec.Struct):
    mode: Any = "managed"


class _Envelope(msgspec.Struct):
    """Only what the server needs; msgspec validates the rest of the JSON while skipping it,
    so a 100 MB state is checked in milliseconds without building its object tree."""

    serial: Any = None
    lineage: Any = None
    version: Any = msgspec.UNSET
    terraform_version: Any = None
    encryption_version: Any = msgspec.UNSET
    encrypted_data: Any = None
    meta: Any = None
    outputs: dict[str, _Output] = {}
    resources: list[_Resource] = []


_DECODER = msgspec.json.Decoder(_Envelope)


def parse_state(body: Body) -> StateSummary:
    """Validate ``body`` as a state document and summarise it; raise BadRequest otherwise."""
    try:
        env = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"body is JSON but not a state: {_field_error(exc)}") from None
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec raises the latter on bad UTF-8
        raise BadRequest("body is not valid JSON") from None
    serial = env.serial
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
        raise BadRequest("state has no valid 'serial' (a non-negative integer)")
    lineage = env.lineage
    if not isinstance(lineage, str) or not lineage or len(lineage) > 128:
        raise BadRequest("state has no valid 'lineage' (a non-empty string)")
    if env.encryption_version is not msgspec.UNSET and env.version is msgspec.UNSET:
        if env.encryption_version != "v0":
            raise BadRequest("client-encrypted state has an unsupported 'encryption_version'")
        if not isinstance(env.encrypted_data, str) or not isinstance(env.meta, dict):
            raise BadRequest("client-encrypted state needs 'encrypted_data' and 'meta'")
        return StateSummary(
            serial, lineage, "", 0, 0, client_encrypted=True,
            client_key_providers=_meta_providers(env.meta),
        )  # fmt: skip
    if env.version not in SUPPORTED_VERSIONS or isinstance(env.version, bool):
        raise BadRequest("state 'version' must be 4 (Terraform >= 0.12, OpenTofu)")
    tf_version = env.terraform_version
    if not isinstance(tf_version, str) or not tf_version:
        raise BadRequest("state has no 'terraform_version'")
    return StateSummary(
        serial=serial,
        lineage=lineage,
        terraform_version=tf_version[:64],
        resource_count=sum(1 for r in env.resources if r.mode == "managed"),
        output_count=len(env.outputs),
        client_encrypted=False,
    )


def _meta_providers(meta: dict[Any, Any]) -> tuple[str, ...]:
    kinds = set()
    for key in list(meta)[:64]:
        parts = key.split(".") if isinstance(key, str) else []
        kinds.add(parts[1] if len(parts) == 3 and parts[0] == "key_provider" else "alias")
    return tuple(sorted(kinds))


def _field_error(exc: msgspec.ValidationError) -> str:
    """msgspec's message names the JSON path (``at `$.resources[0]```), never a value."""
    text = str(exc)
    if "got `array`" in text and "at `$" not in text:
        return "expected an object"
    return " ".join(text.split())[:200]


def resource_address(resource: dict[str, Any], index_key: Any) -> str:
    """The instance address Terraform prints, e.g. ``module.net.aws_vpc.main["a"]``."""
    parts = []
    module = resource.get("module")
    if module:
        parts.append(str(module))
    if resource.get("mode") == "data":
        parts.append("data")
    parts.append(f"{resource.get('type', '?')}.{resource.get('name', '?')}")
    addr = ".".join(parts)
    if isinstance(index_key, bool) or index_key is None:
        return addr
    if isinstance(index_key, int):
        return f"{addr}[{index_key}]"
    return f"{addr}[{json.dumps(str(index_key))}]"


def instances_by_address(doc: dict[str, Any]) -> dict[str, Any]:
    """Map each resource instance address to its (attributes, dependencies) for comparison."""
    out: dict[str, Any] = {}
    for res in doc.get("resources", []) or []:
        if not isinstance(res, dict):
            continue
        for inst in res.get("instances", []) or []:
            if isinstance(inst, dict):
                out[resource_address(res, inst.get("index_key"))] = inst
    return out


def _changed_attribute_names(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a = old.get("attributes") or {}
    b = new.get("attributes") or {}
    if not isinstance(a, dict) or not isinstance(b, dict):
        return ["attributes"] if a != b else []
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def diff_states(old: Any, new: Any) -> dict[str, Any]:
    """Resources added/removed/changed by address, outputs changed; sensitive values never shown.

    For resources only attribute *names* are reported (attribute values may be secrets even when
    not marked sensitive); for outputs, values are shown only when neither side is sensitive.
    """
    if (
        not isinstance(old, dict)
        or not isinstance(new, dict)
        or "version" not in old
        or ("version" not in new)
    ):
        return {"client_encrypted": True, "content_changed": old != new}
    ra, rb = instances_by_address(old), instances_by_address(new)
    changed = []
    for addr in sorted(set(ra) & set(rb)):
        if ra[addr] != rb[addr]:
            names = _changed_attribute_names(ra[addr], rb[addr])
            changed.append({"address": addr, "attributes": names})
    oa = old.get("outputs") or {}
    ob = new.get("outputs") or {}
    outputs = []
    for name in sorted(set(oa) | set(ob)):
        a, b = oa.get(name), ob.get(name)
        if a == b:
            continue
        entry: dict[str, Any] = {"name": name}
        entry["change"] = "added" if a is None else "removed" if b is None else "changed"
        sensitive = bool((a or {}).get("sensitive")) or bool((b or {}).get("sensitive"))
        entry["sensitive"] = sensitive
        if not sensitive:
            if a is not None:
                entry["old"] = a.get("value")
            if b is not None:
                entry["new"] = b.get("value")
        outputs.append(entry)
    return {
        "client_encrypted": False,
        "resources_added": sorted(set(rb) - set(ra)),
        "resources_removed": sorted(set(ra) - set(rb)),
        "resources_changed": changed,
        "outputs": outputs,
    }
