"""Read an encryption description from TOML or JSON.

The shape is OpenTofu's ``encryption {}`` block (and its JSON form, e.g. ``TF_ENCRYPTION``)::

    [key_provider.pbkdf2.main]            # or [key_providers.pbkdf2.main]
    passphrase_env = "TOFU_PASSPHRASE"    # or passphrase_file / passphrase (discouraged)
    [method.aes_gcm.m]                    # or [methods.aes_gcm.m]
    keys = "key_provider.pbkdf2.main"     # "${key_provider.pbkdf2.main}" also accepted
    [method.unencrypted.migrate]
    [state]
    method = "method.aes_gcm.m"
    fallback = ["method.unencrypted.migrate"]   # or [state.fallback] method = … (nested, as HCL)

Unknown settings are errors (a typo must not silently weaken encryption); every error is one
line naming the offending address.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from stateward.tofu.config import (
    AesGcmConfig,
    AwsKmsConfig,
    EncryptionConfig,
    KeyProviderConfig,
    MethodConfig,
    OpenBaoConfig,
    Pbkdf2Config,
    RawKey,
    RawKeys,
    Ref,
    TargetConfig,
    UnencryptedConfig,
)
from stateward.tofu.errors import ConfigError
from stateward.tofu.providers.pbkdf2 import Pbkdf2Params
from stateward.tofu.secret import Secret, SecretSource

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_REF = re.compile(r"^(key_provider|method)\.([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_-]*)$")
_NOT_SUPPORTED = {
    "gcp_kms": "key_provider",
    "azure_vault": "key_provider",
    "external": "key_provider or method",
    "xor": "key_provider",
}


def load_config(path: Path) -> EncryptionConfig:
    """Load ``path``: JSON if it ends in ``.json`` or starts with ``{``, TOML otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8")
        if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
            doc = json.loads(text)
        else:
            doc = tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML/JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level must be a table/object")
    return parse_config(doc, base_dir=path.parent)


def parse_config(doc: Mapping[str, Any], base_dir: Path | None = None) -> EncryptionConfig:
    """Build and cross-check the configuration from an already-parsed document."""
    if set(doc) == {"encryption"}:  # a pasted `encryption` wrapper
        doc = _table(doc["encryption"], "encryption")
    loader = _Loader(base_dir)
    known = {"key_provider", "key_providers", "method", "methods", "state", "plan"}
    for key in doc:
        if key == "remote_state_data_sources":
            raise ConfigError("remote_state_data_sources is not supported by stateward")
        if key not in known:
            raise ConfigError(f"unknown top-level setting {key!r}")
    providers: dict[str, KeyProviderConfig] = {}
    for type_, name, body in _blocks(doc, "key_provider"):
        cfg = loader.key_provider(type_, name, body)
        providers[f"key_provider.{type_}.{name}"] = cfg
    methods: dict[str, MethodConfig] = {}
    for type_, name, body in _blocks(doc, "method"):
        methods[f"method.{type_}.{name}"] = loader.method(type_, name, body)
    config = EncryptionConfig(
        key_providers=providers,
        methods=methods,
        state=_target(doc["state"], "state") if "state" in doc else None,
        plan=_target(doc["plan"], "plan") if "plan" in doc else None,
    )
    _cross_check(config)
    return config


def _table(value: Any, where: str) -> dict[str, Any]:
    # HCL's JSON syntax may write a block as a one-element array.
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table/object")
    return value


def _blocks(doc: Mapping[str, Any], kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``kind.<type>.<name>`` blocks, from the singular (HCL) or plural spelling."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for key in (kind, kind + "s"):
        if key not in doc:
            continue
        for type_, names in _table(doc[key], key).items():
            for name, body in _table(names, f"{kind}.{type_}").items():
                where = f"{kind}.{type_}.{name}"
                if not _IDENT.match(type_) or not _IDENT.match(name):
                    raise ConfigError(f"{where}: type and name must be identifiers")
                out.append((type_, name, _table(body, where)))
    return out


def parse_ref(value: Any, kind: Literal["key_provider", "method"], where: str) -> Ref:
    """``key_provider.t.n`` / ``method.t.n``, optionally wrapped in ``${…}`` (HCL JSON)."""
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a reference string like '{kind}.<type>.<name>'")
    text = value.strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1].strip()
    match = _REF.match(text)
    if not match or match.group(1) != kind:
        raise ConfigError(f"{where} must be a reference like '{kind}.<type>.<name>'")
    return Ref(kind, match.group(2), match.group(3))


def _target(value: Any, where: str) -> TargetConfig:
    body = _table(value, where)
    _only(body, {"method", "fallback", "enforced"}, where)
    if "method" not in body:
        raise ConfigError(f"{where}: 'method' is required")
    method = parse_ref(body["method"], "method", f"{where}.method")
    fallback: list[Ref] = []
    node = body.get("fallback")
    if isinstance(node, list) and all(isinstance(x, str) for x in node):
        fallback = [parse_ref(x, "method", f"{where}.fallback") for x in node]
    else:
        depth = 0
        while node is not None:  # nested HCL form: fallback { method = …  fallback { … } }
            inner = _table(node, f"{where}.fallback")
            _only(inner, {"method", "fallback"}, f"{where}.fallback")
            fallback.append(parse_ref(inner.get("method"), "method", f"{where}.fallback.method"))
            node, depth = inner.get("fallback"), depth + 1
            if depth > 32:
                raise ConfigError(f"{where}: fallback chain is too deep")
    enforced = body.get("enforced", False)
    if not isinstance(enforced, bool):
        raise ConfigError(f"{where}.enforced must be true or false")
    return TargetConfig(method=method, fallback=tuple(fallback), enforced=enforced)


def _only(body: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in body:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown setting {key!r}")


def _str(body: Mapping[str, Any], key: str, where: str, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: {key} is required")
        return None
    if not isinstance(value, str) or (required and not value):
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    if value.startswith("${"):
        raise ConfigError(f"{where}: {key} cannot reference variables here; use a literal value")
    return value


def _int(body: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be an integer")
    return value


class _Loader:
    def __init__(self, base_dir: Path | None) -> None:
        self.base_dir = base_dir

    def secret(
        self, body: Mapping[str, Any], key: str, where: str, required: bool
    ) -> SecretSource | None:
        """Exactly one of ``key`` (inline), ``key_env``, ``key_file``."""
        given = [k for k in (key, f"{key}_env", f"{key}_file") if body.get(k) is not None]
        if len(given) > 1:
            raise ConfigError(f"{where}: set only one of {', '.join(given)}")
        if not given:
            if required:
                raise ConfigError(f"{where}: one of {key}, {key}_env, {key}_file is required")
            return None
        what = f"{where} {key}"
        if given[0] == key:
            value = body[key]
            if not isinstance(value, str):
                raise ConfigError(f"{where}: {key} must be a string")
            if value.startswith("${"):
                raise ConfigError(
                    f"{where}: {key} cannot reference variables; use {key}_env or {key}_file"
                )
            return SecretSource("inline", value, what)
        value = _str(body, given[0], where, required=True)
        assert value is not None
        if given[0].endswith("_file"):
            path = Path(value).expanduser()
            if not path.is_absolute() and self.base_dir is not None:
                path = self.base_dir / path
            return SecretSource("file", str(path), what)
        return SecretSource("env", value, what)

    def key_provider(self, type_: str, name: str, body: dict[str, Any]) -> KeyProviderConfig:
        where = f"key_provider.{type_}.{name}"
        alias = _str(body, "encrypted_metadata_alias", where)
        if type_ == "pbkdf2":
            _only(
                body,
                {
                    "passphrase",
                    "passphrase_env",
                    "passphrase_file",
                    "key_length",
                    "iterations",
                    "hash_function",
                    "salt_length",
                    "encrypted_metadata_alias",
                },
                where,
            )
            passphrase = self.secret(body, "passphrase", where, required=True)
            assert passphrase is not None
            params = Pbkdf2Params(
                key_length=_int(body, "key_length", where, Pbkdf2Params.key_length),
                iterations=_int(body, "iterations", where, Pbkdf2Params.iterations),
                hash_function=_str(body, "hash_function", where) or Pbkdf2Params.hash_function,
                salt_length=_int(body, "salt_length", where, Pbkdf2Params.salt_length),
            )
            params.validate(where)
            return Pbkdf2Config(name, passphrase, params, alias)
        if type_ == "aws_kms":
            _only(
                body,
                {
                    "kms_key_id",
                    "key_spec",
                    "region",
                    "profile",
                    "endpoint_url",
                    "endpoints",
                    "encrypted_metadata_alias",
                },
                where,
            )
            endpoint = _str(body, "endpoint_url", where)
            if "endpoints" in body:
                endpoints = _table(body["endpoints"], f"{where}.endpoints")
                _only(endpoints, {"kms"}, f"{where}.endpoints")
                endpoint = _str(endpoints, "kms", f"{where}.endpoints") or endpoint
            return AwsKmsConfig(
                name=name,
                kms_key_id=_str(body, "kms_key_id", where, required=True) or "",
                key_spec=_str(body, "key_spec", where, required=True) or "",
                region=_str(body, "region", where),
                endpoint_url=endpoint,
                profile=_str(body, "profile", where),
                encrypted_metadata_alias=alias,
            )
        if type_ == "openbao":
            _only(
                body,
                {
                    "key_name",
                    "address",
                    "token",
                    "token_env",
                    "token_file",
                    "key_length",
                    "transit_engine_path",
                    "encrypted_metadata_alias",
                },
                where,
            )
            return OpenBaoConfig(
                name=name,
                key_name=_str(body, "key_name", where, required=True) or "",
                token=self.secret(body, "token", where, required=False),
                address=_str(body, "address", where),
                key_length=_int(body, "key_length", where, 32),
                transit_engine_path=_str(body, "transit_engine_path", where),
                encrypted_metadata_alias=alias,
            )
        if type_ in _NOT_SUPPORTED:
            raise ConfigError(f"{where}: key provider type {type_!r} is not supported by stateward")
        raise ConfigError(f"{where}: unknown key provider type {type_!r}")

    def method(self, type_: str, name: str, body: dict[str, Any]) -> MethodConfig:
        where = f"method.{type_}.{name}"
        if type_ == "unencrypted":
            _only(body, set(), where)
            return UnencryptedConfig(name)
        if type_ != "aes_gcm":
            if type_ in _NOT_SUPPORTED:
                raise ConfigError(f"{where}: method type {type_!r} is not supported by stateward")
            raise ConfigError(f"{where}: unknown method type {type_!r}")
        _only(body, {"keys", "aad"}, where)
        if "keys" not in body:
            raise ConfigError(f"{where}: keys is required")
        keys_value = body["keys"]
        keys: Ref | RawKeys
        if isinstance(keys_value, str):
            keys = parse_ref(keys_value, "key_provider", f"{where}.keys")
        else:
            keys = self.raw_keys(_table(keys_value, f"{where}.keys"), f"{where}.keys")
        return AesGcmConfig(name, keys, _bytes_value(body.get("aad"), f"{where}.aad"))

    def raw_keys(self, body: Mapping[str, Any], where: str) -> RawKeys:
        _only(
            body,
            {"encryption_key", "decryption_key", "encryption_key_env", "decryption_key_env"},
            where,
        )
        found: dict[str, RawKey | None] = {}
        for role in ("encryption_key", "decryption_key"):
            if body.get(role) is not None and body.get(f"{role}_env") is not None:
                raise ConfigError(f"{where}: set only one of {role}, {role}_env")
            if body.get(role) is not None:
                raw = _bytes_value(body[role], f"{where}.{role}", allow_str=False)
                found[role] = Secret(raw or b"")
            elif body.get(f"{role}_env") is not None:
                env = _str(body, f"{role}_env", where, required=True) or ""
                found[role] = SecretSource("env", env, f"{where}.{role}")
            else:
                found[role] = None
        if found["encryption_key"] is None and found["decryption_key"] is None:
            raise ConfigError(f"{where}: needs encryption_key and/or decryption_key")
        return RawKeys(found["encryption_key"], found["decryption_key"])


def _bytes_value(value: Any, where: str, allow_str: bool = True) -> bytes | None:
    """A list of byte values (HCL's form), or a string taken as its UTF-8 bytes."""
    if value is None:
        return None
    if isinstance(value, str) and allow_str:
        return value.encode("utf-8")
    if isinstance(value, list) and all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value
    ):
        return bytes(value)
    kind = "a list of numbers 0-255" + (" or a string" if allow_str else "")
    raise ConfigError(f"{where} must be {kind}")


def _cross_check(config: EncryptionConfig) -> None:
    """Every reference resolves; enforced targets really encrypt; meta keys are unique."""
    for addr, method in config.methods.items():
        keys = method.keys if isinstance(method, AesGcmConfig) else None
        if isinstance(keys, Ref) and str(keys) not in config.key_providers:
            raise ConfigError(f"{addr}.keys: {keys} is not declared")
    for kind in ("state", "plan"):
        target = config.target(kind)
        if target is None:
            continue
        seen: set[str] = set()
        for ref in target.chain:
            if str(ref) not in config.methods:
                raise ConfigError(f"{kind}: {ref} is not declared")
            if str(ref) in seen:
                raise ConfigError(f"{kind}: {ref} appears twice in the method chain")
            seen.add(str(ref))
        if target.enforced and target.method.type == "unencrypted":
            raise ConfigError(f"{kind}: enforced is set but the method is unencrypted")
    meta_keys: dict[str, str] = {}
    for addr, provider in config.key_providers.items():
        key = provider.encrypted_metadata_alias or addr
        if key in meta_keys:
            raise ConfigError(f"{addr}: metadata key {key!r} is also used by {meta_keys[key]}")
        meta_keys[key] = addr
