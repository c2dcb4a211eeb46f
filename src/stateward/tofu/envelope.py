"""The ``v0`` envelope that OpenTofu writes around encrypted states and plans.

A state envelope is ``{"serial":…,"lineage":…,"meta":{…},"encrypted_data":…,
"encryption_version":"v0"}`` (compact, in that order); a plan envelope is the same without
``serial``/``lineage``. ``serial`` and ``lineage`` are copies of the plaintext's, kept in clear so
a backend can apply its lineage/serial guards without the key; a reader checks them against the
decrypted plaintext so that a swapped or edited clear header cannot go unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from stateward.tofu import gojson
from stateward.tofu.errors import FormatError

Kind = Literal["state", "plan"]

VERSION = "v0"


@dataclass(frozen=True)
class ClearFields:
    """The plaintext state's ``serial`` (``None`` when absent) and ``lineage`` (``""``)."""

    serial: int | None
    lineage: str


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope. ``meta`` maps each meta key to the provider's raw metadata JSON."""

    meta: dict[str, bytes]
    encrypted_data: bytes = field(repr=False)
    version: str = VERSION
    #: The clear header of a state envelope; ``None`` for plans and for state envelopes
    #: written without one (then there is nothing to check on decrypt).
    clear: ClearFields | None = None

    def serialize(self, kind: Kind) -> bytes:
        """The envelope exactly as OpenTofu's ``json.Marshal`` writes it (no newline)."""
        fields: list[tuple[str, str]] = []
        if kind == "state":
            clear = self.clear or ClearFields(None, "")
            serial = "null" if clear.serial is None else str(clear.serial)
            fields += [("serial", serial), ("lineage", gojson.string(clear.lineage))]
        meta = gojson.obj([(k, _b64(self.meta[k])) for k in sorted(self.meta)])
        fields += [
            ("meta", meta),
            ("encrypted_data", _b64(self.encrypted_data)),
            ("encryption_version", gojson.string(self.version)),
        ]
        return gojson.obj(fields).encode("utf-8")


def _b64(data: bytes) -> str:
    return '"' + base64.b64encode(data).decode("ascii") + '"'


def b64decode(text: Any, what: str) -> bytes:
    """Strict standard base64 with padding, as Go decodes ``[]byte`` JSON fields."""
    if not isinstance(text, str):
        raise FormatError(f"{what} is not a base64 string (got {_json_type(text)})")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{what} is not valid base64") from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "a string"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def load_json(data: bytes) -> Any:
    """Strict JSON (UTF-8, no NaN/Infinity), or raise ValueError."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    return json.loads(text, parse_constant=_reject_constant)


def try_json_object(data: bytes) -> dict[str, Any] | None:
    """``data`` as a JSON object, or ``None`` if it is not one."""
    try:
        doc = load_json(data)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def claims_encryption(doc: dict[str, Any] | None) -> bool:
    """OpenTofu's test: the payload parses and has a non-empty ``encryption_version``."""
    if doc is None:
        return False
    version = doc.get("encryption_version")
    return isinstance(version, str) and version != ""


def parse(doc: dict[str, Any], kind: Kind) -> Envelope:
    """Validate an object that claims to be encrypted and return its envelope.

    Stricter than OpenTofu on purpose: a payload that says it is encrypted but whose fields are
    malformed (``fake_encrypted_must_reject.tfstate`` has objects as ``meta`` values) is refused
    with the reason, instead of being tried as plaintext.
    """
    version = doc["encryption_version"]
    if version != VERSION:
        raise FormatError(f"unsupported encryption_version {version[:20]!r} (only 'v0' is known)")
    raw_meta = doc.get("meta")
    if raw_meta is None:
        raw_meta = {}
    if not isinstance(raw_meta, dict):
        raise FormatError(
            f"invalid encrypted payload: 'meta' is {_json_type(raw_meta)}, not an object"
        )
    meta = {
        str(key): b64decode(value, f"invalid encrypted payload: meta entry {str(key)[:80]!r}")
        for key, value in raw_meta.items()
    }
    data = doc.get("encrypted_data")
    encrypted = (
        b"" if data is None else b64decode(data, "invalid encrypted payload: 'encrypted_data'")
    )
    clear = None
    if kind == "state" and ("serial" in doc or "lineage" in doc):
        clear = _clear_from(doc, "the envelope")
    return Envelope(meta=meta, encrypted_data=encrypted, version=version, clear=clear)


def _clear_from(doc: dict[str, Any], where: str) -> ClearFields:
    serial = doc.get("serial")
    if serial is not None and (not isinstance(serial, int) or isinstance(serial, bool)):
        raise FormatError(f"{where}: 'serial' is {_json_type(serial)}, not an integer")
    lineage = doc.get("lineage")
    if lineage is None:
        lineage = ""
    if not isinstance(lineage, str):
        raise FormatError(f"{where}: 'lineage' is {_json_type(lineage)}, not a string")
    return ClearFields(serial, gojson.go_text(lineage))


def state_clear_fields(plaintext: bytes) -> ClearFields:
    """The serial and lineage of a plaintext state (which must be a JSON object)."""
    doc = try_json_object(plaintext)
    if doc is None:
        raise FormatError("the state plaintext is not a JSON object")
    return _clear_from(doc, "the state plaintext")


def plaintext_problem(data: bytes, kind: Kind, doc: dict[str, Any] | None) -> str | None:
    """Why ``data`` is not an acceptable plaintext ``kind``, or ``None`` if it is one.

    OpenTofu's validators: a state needs a non-empty ``terraform_version``; a plan is a zip.
    """
    if kind == "plan":
        return None if data.startswith(b"PK") else "a plan file is a zip starting with 'PK'"
    if doc is None:
        return "it is not a JSON object"
    tf_version = doc.get("terraform_version")
    if not isinstance(tf_version, str) or not tf_version:
        return "it has no 'terraform_version' and no 'encryption_version'"
    return None
