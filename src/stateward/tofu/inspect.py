"""Describe a payload without any secret: what encrypted it, and with which parameters.

Useful before a key rotation or when a read fails: it shows which ``meta`` entries a file carries
(so which provider/alias a configuration must declare) and pbkdf2's stored cost parameters.
Nothing here needs a passphrase or contacts a KMS.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from stateward.tofu import envelope
from stateward.tofu.config import EncryptionConfig
from stateward.tofu.envelope import Kind
from stateward.tofu.errors import FormatError

_ADDR = re.compile(r"^key_provider\.([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_-]*)$")


@dataclass(frozen=True)
class MetaEntry:
    key: str
    #: The provider type: from the key, from the configuration (aliases), or ``None``.
    provider_type: str | None
    #: How the type was found: ``address``, ``config alias``, ``guessed`` or ``unknown``.
    source: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Inspection:
    kind: Kind
    encrypted: bool
    encryption_version: str | None = None
    serial: int | None = None
    lineage: str | None = None
    encrypted_bytes: int = 0
    meta: list[MetaEntry] = field(default_factory=list)
    terraform_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def inspect_payload(
    payload: bytes, kind: Kind, config: EncryptionConfig | None = None
) -> Inspection:
    """Describe ``payload``; FormatError if it is neither an envelope nor a plaintext."""
    doc = envelope.try_json_object(payload) if not payload.startswith(b"PK") else None
    if not envelope.claims_encryption(doc):
        problem = envelope.plaintext_problem(payload, kind, doc)
        if problem is not None:
            raise FormatError(f"neither an encrypted nor a plaintext {kind}: {problem}")
        if kind == "plan" or doc is None:
            return Inspection(kind=kind, encrypted=False)
        clear = envelope.state_clear_fields(payload)
        return Inspection(
            kind=kind,
            encrypted=False,
            serial=clear.serial,
            lineage=clear.lineage,
            terraform_version=str(doc.get("terraform_version")),
        )
    assert doc is not None
    env = envelope.parse(doc, kind)
    aliases = _aliases(config)
    return Inspection(
        kind=kind,
        encrypted=True,
        encryption_version=env.version,
        serial=env.clear.serial if env.clear else None,
        lineage=env.clear.lineage if env.clear else None,
        encrypted_bytes=len(env.encrypted_data),
        meta=[_entry(key, env.meta[key], aliases) for key in sorted(env.meta)],
    )


def _aliases(config: EncryptionConfig | None) -> dict[str, str]:
    if config is None:
        return {}
    return {
        p.encrypted_metadata_alias: p.type
        for p in config.key_providers.values()
        if p.encrypted_metadata_alias
    }


def _entry(key: str, raw: bytes, aliases: dict[str, str]) -> MetaEntry:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict):
        return MetaEntry(key, None, "unknown", {"error": "metadata is not a JSON object"})
    match = _ADDR.match(key)
    if match:
        ptype, source = match.group(1), "address"
    elif key in aliases:
        ptype, source = aliases[key], "config alias"
    else:
        ptype, source = _guess(meta), "guessed"
        if ptype is None:
            source = "unknown"
    return MetaEntry(key, ptype, source, _details(meta))


def _guess(meta: dict[str, Any]) -> str | None:
    if {"salt", "iterations"} <= meta.keys():
        return "pbkdf2"
    if "ciphertext_blob" in meta:
        return "aws_kms"
    if "ciphertext" in meta:
        return "openbao or gcp_kms"
    return None


def _details(meta: dict[str, Any]) -> dict[str, Any]:
    """Non-secret facts: derivation parameters, wrapped-key sizes; never key material."""
    out: dict[str, Any] = {}
    if "iterations" in meta:
        for name in ("iterations", "hash_function", "key_length"):
            out[name] = meta.get(name)
        salt = meta.get("salt")
        out["salt_length"] = _b64_len(salt)
    if "ciphertext_blob" in meta:
        out["ciphertext_blob_length"] = _b64_len(meta["ciphertext_blob"])
    if "ciphertext" in meta:
        try:
            wrapped = envelope.b64decode(meta["ciphertext"], "ciphertext").decode("ascii")
        except (FormatError, UnicodeDecodeError):
            wrapped = ""
        if wrapped.startswith("vault:"):
            out["wrapped_key_version"] = ":".join(wrapped.split(":")[:2])
        else:
            out["ciphertext_length"] = _b64_len(meta["ciphertext"])
    extra = sorted(
        set(meta)
        - {"salt", "iterations", "hash_function", "key_length", "ciphertext_blob", "ciphertext"}
    )
    if extra:
        out["other_fields"] = extra
    return out


def _b64_len(value: Any) -> int | None:
    try:
        return len(envelope.b64decode(value, "field"))
    except FormatError:
        return None
