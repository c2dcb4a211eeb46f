"""HashiCorp Vault / OpenBao transit key provider (``type = "vault-transit"``).

Uses the documented transit HTTP API and nothing else (stdlib ``http.client``, no extra
dependency):

- generate: ``POST /v1/<mount>/datakey/plaintext/<key>`` ``{"bits": 256}`` -> ``data.plaintext``
  (base64 data key), ``data.ciphertext`` (``vault:vN:...``). The wrapped key is the ciphertext
  string (ASCII bytes); its key version is the ``N`` of the ``vault:vN:`` prefix.
- unwrap: ``POST /v1/<mount>/decrypt/<key>`` ``{"ciphertext": ...}`` -> ``data.plaintext``.
- rewrap: ``POST /v1/<mount>/rewrap/<key>`` ``{"ciphertext": ...}`` -> ``data.ciphertext``; the
  plaintext data key never leaves Vault.
- current_version: ``GET /v1/<mount>/keys/<key>`` -> ``data.latest_version``, cached for
  ``version_cache_seconds`` (each generate/rewrap also refreshes the cached value).

Headers: ``X-Vault-Token`` (read from ``token_file`` on every request if set, so Vault Agent can
renew it, else from the environment variable ``token_env``) and ``X-Vault-Namespace`` when
``namespace`` is set. The Vault policy the token needs::

    path "<mount>/datakey/plaintext/<key>" { capabilities = ["update"] }
    path "<mount>/decrypt/<key>"           { capabilities = ["update"] }
    path "<mount>/rewrap/<key>"            { capabilities = ["update"] }
    path "<mount>/keys/<key>"              { capabilities = ["read"] }

**Encryption context.** Transit only uses the ``context`` parameter for *derived* keys
(``derived=true`` at key creation); a non-derived key ignores it. So the context is sent (as
base64 of the canonical JSON of the context) only when ``derived = true`` is configured, and
must then be the same on every call. With a non-derived key the wrapped data key is *not* bound
to the state path by Vault; the binding is still enforced because the barrier binds the path
into the AEAD associated data of the blob itself, so a wrapped key copied onto another path's
blob unwraps but the blob does not open.

Transport: HTTPS is required unless the address is a loopback address; ``ca_file`` adds a
private CA. Proxy environment variables are not used, redirects are not followed (a standby
node's redirect is reported as unavailable: point ``address`` at the active node or a load
balancer), responses are limited to 1 MiB, and connect and read timeouts are separate.

Errors: connection failures, timeouts, 429, 412 and 5xx -> :class:`KeyUnavailable`; 401, 403,
404, "encryption key not found", a ciphertext version below ``min_decryption_version`` and
other 4xx -> :class:`KeyDenied`; on decrypt/rewrap "cipher: message authentication failed"
(returned as 400, or as 500 by some Vault versions) and "invalid ciphertext" ->
:class:`KeyInvalid`. Messages are one line and never contain the token, the data key or the
wrapped key.

Tested against: a fake transit server in the test suite (``tests/harness/fake_kms.py``: stdlib
``http.server`` on loopback implementing exactly the endpoints above with real AES-256-GCM, over
HTTP and over HTTPS with a private CA), which also checks the paths, headers and JSON bodies
this provider sends. Not tested against a live Vault or OpenBao server.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stateward.common.net import check_service_url
from stateward.common.text import one_line
from stateward.crypto.providers._http import (
    HttpKeyProvider,
    HttpReply,
    b64decode_strict,
    canonical_context,
    read_secret,
)
from stateward.crypto.providers.base import (
    DATA_KEY_BYTES,
    DataKey,
    KeyDenied,
    KeyInvalid,
    KeyUnavailable,
    WrappedKey,
)

# -- configuration ------------------------------------------------------------------------------

_KEY_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_MOUNT_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_VERSION_PREFIX = re.compile(r"^vault:v([0-9]+):")


class VaultTransitConfig(BaseModel):
    """``[key_providers.<name>]`` with ``type = "vault-transit"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["vault-transit"] = "vault-transit"
    #: Vault/OpenBao address, e.g. ``https://vault.example:8200``.
    address: str
    #: Transit key name.
    key_name: str
    #: Mount path of the transit engine.
    mount: str = "transit"
    #: Environment variable holding the token (used when ``token_file`` is not set).
    token_env: str = "VAULT_TOKEN"  # noqa: S105 -- a variable name
    #: File holding the token (e.g. written by Vault Agent); re-read on every request.
    token_file: Path | None = None
    #: Vault Enterprise / OpenBao namespace (``X-Vault-Namespace``).
    namespace: str | None = None
    #: PEM CA bundle to verify the server certificate (default: the system store).
    ca_file: Path | None = None
    #: The transit key was created with ``derived=true``: send the encryption context.
    derived: bool = False
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    read_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    #: Attempts per operation (1 = no retry); only transient failures are retried.
    max_attempts: int = Field(default=2, ge=1, le=10)
    #: How long ``current_version`` trusts its last answer.
    version_cache_seconds: float = Field(default=60.0, ge=0, le=86400)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_service_url(value, field="address")

    @field_validator("key_name")
    @classmethod
    def _key_name(cls, value: str) -> str:
        if not _KEY_NAME.match(value):
            raise ValueError("key_name must be a transit key name (letters, digits, _ . -)")
        return value

    @field_validator("mount")
    @classmethod
    def _mount(cls, value: str) -> str:
        segments = value.strip("/").split("/")
        if not all(_MOUNT_SEGMENT.match(s) and s not in (".", "..") for s in segments):
            raise ValueError("mount must be a path such as 'transit' or 'kms/transit'")
        return "/".join(segments)

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str) -> str:
        if not value or "=" in value or "\x00" in value:
            raise ValueError("token_env must be an environment variable name")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not all(33 <= ord(ch) <= 126 for ch in value):
            raise ValueError("namespace must be printable ASCII without spaces")
        return value


# -- provider -----------------------------------------------------------------------------------


class VaultTransitProvider(HttpKeyProvider[VaultTransitConfig]):
    """Data keys from a Vault/OpenBao transit key. ``calls`` counts transit operations
    (``datakey``, ``decrypt``, ``rewrap``, ``keys``)."""

    kind = "vault-transit"

    def __init__(
        self,
        name: str,
        config: VaultTransitConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(name, config, config.address, sleep=sleep)
        mount = quote(config.mount, safe="/")
        key = quote(config.key_name, safe="")
        self._paths = {
            "datakey": f"/v1/{mount}/datakey/plaintext/{key}",
            "decrypt": f"/v1/{mount}/decrypt/{key}",
            "rewrap": f"/v1/{mount}/rewrap/{key}",
            "keys": f"/v1/{mount}/keys/{key}",
        }

    # -- protocol --

    def generate(self, context: Mapping[str, str]) -> DataKey:
        data = self._call("datakey", {"bits": DATA_KEY_BYTES * 8, **self._context(context)})
        plaintext = b64decode_strict(data.get("plaintext"))
        if plaintext is None or len(plaintext) != DATA_KEY_BYTES:
            raise KeyUnavailable(f"{self._who}: datakey answer has no valid 256-bit plaintext")
        ciphertext, version = self._ciphertext(data)
        return DataKey(
            plaintext=plaintext,
            wrapped=ciphertext.encode("ascii"),
            key_id=self.config.key_name,
            key_version=version,
        )

    def unwrap(self, key: WrappedKey, context: Mapping[str, str]) -> bytes:
        ciphertext = self._stored_ciphertext(key)
        data = self._call("decrypt", {"ciphertext": ciphertext, **self._context(context)})
        plaintext = b64decode_strict(data.get("plaintext"))
        if plaintext is None or len(plaintext) != DATA_KEY_BYTES:
            raise KeyInvalid(f"{self._who}: the wrapped key does not hold a 256-bit data key")
        return plaintext

    def rewrap(self, key: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        ciphertext = self._stored_ciphertext(key)
        data = self._call("rewrap", {"ciphertext": ciphertext, **self._context(context)})
        new, version = self._ciphertext(data)
        return WrappedKey(
            wrapped=new.encode("ascii"), key_id=self.config.key_name, key_version=version
        )

    def current_version(self) -> str:
        cached = self._cached_version()
        if cached is not None:
            return cached
        data = self._call("keys", None)
        latest = data.get("latest_version")
        if not isinstance(latest, int) or isinstance(latest, bool) or latest < 1:
            raise KeyUnavailable(f"{self._who}: key read answer has no latest_version")
        self._remember_version(str(latest))
        return str(latest)

    # -- internals --

    def _context(self, context: Mapping[str, str]) -> dict[str, str]:
        if not self.config.derived:
            return {}
        return {"context": base64.b64encode(canonical_context(context)).decode("ascii")}

    def _stored_ciphertext(self, key: WrappedKey) -> str:
        if key.key_id and key.key_id != self.config.key_name:
            raise KeyInvalid(
                f"{self._who}: the data key was wrapped under transit key {key.key_id!r}, "
                f"this provider uses {self.config.key_name!r}"
            )
        try:
            ciphertext = key.wrapped.decode("ascii")
        except UnicodeDecodeError:
            ciphertext = ""
        if not _VERSION_PREFIX.match(ciphertext):
            raise KeyInvalid(f"{self._who}: the wrapped key is not a transit ciphertext")
        return ciphertext

    def _ciphertext(self, data: Mapping[str, Any]) -> tuple[str, str]:
        ciphertext = data.get("ciphertext")
        match = _VERSION_PREFIX.match(ciphertext) if isinstance(ciphertext, str) else None
        if not isinstance(ciphertext, str) or match is None or not ciphertext.isascii():
            raise KeyUnavailable(f"{self._who}: answer has no valid transit ciphertext")
        version = str(int(match.group(1)))
        self._remember_version(version)
        return ciphertext, version

    def _call(self, op: str, payload: Mapping[str, Any] | None) -> Mapping[str, Any]:
        return self._retried(op, lambda: self._once(op, payload))

    def _once(self, op: str, payload: Mapping[str, Any] | None) -> Mapping[str, Any]:
        token = read_secret(
            self._who, "Vault token", env=self.config.token_env, file=self.config.token_file
        )
        headers = {"X-Vault-Token": token}
        if self.config.namespace:
            headers["X-Vault-Namespace"] = self.config.namespace
        reply = self._http.request(
            "GET" if payload is None else "POST",
            self._paths[op],
            headers=headers,
            payload=payload,
        )
        if 200 <= reply.status < 300:
            data = reply.json.get("data") if isinstance(reply.json, dict) else None
            if not isinstance(data, dict):
                raise KeyUnavailable(f"{self._who}: {op} answer (HTTP {reply.status}) has no data")
            return data
        raise self._error(op, reply, token)

    def _error(
        self, op: str, reply: HttpReply, token: str
    ) -> KeyDenied | KeyInvalid | KeyUnavailable:
        errors = reply.json.get("errors") if isinstance(reply.json, dict) else None
        texts = [e for e in errors if isinstance(e, str)] if isinstance(errors, list) else []
        detail = one_line("; ".join(texts).replace(token, "[token]"), 200) if texts else ""
        low = detail.lower()
        status = reply.status
        what = f"{self._who}: {op} failed: HTTP {status}" + (f": {detail}" if detail else "")
        if op in ("decrypt", "rewrap") and (
            "message authentication failed" in low or "invalid ciphertext" in low
        ):
            return KeyInvalid(what)
        if "disallowed by policy" in low:
            return KeyDenied(f"{what} (the key's min_decryption_version excludes this version)")
        if "encryption key not found" in low or "no existing key named" in low:
            return KeyDenied(f"{what} (check key_name and mount)")
        if status in (401, 403):
            return KeyDenied(f"{what} (check the token and its policy)")
        if status == 404:
            return KeyDenied(f"{what} (check address, mount and key_name)")
        if status in (412, 429) or status >= 500:
            return KeyUnavailable(what)
        if 300 <= status < 400:
            return KeyUnavailable(f"{what} (redirect not followed: use the active node's address)")
        return KeyDenied(what)
