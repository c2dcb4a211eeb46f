"""The ``openbao`` key provider: a data key from an OpenBao/Vault transit engine.

Encryption: ``POST <address>/v1/<transit_engine_path>/datakey/plaintext/<key_name>`` with
``{"bits": 8*key_length}`` returns the key (``data.plaintext``, base64) and its wrapped form
(``data.ciphertext``, ``vault:v1:…``); the wrapped form is stored as
``{"ciphertext":"<b64 of that string>"}``. Decryption posts it to ``…/decrypt/<key_name>``.
Plain stdlib HTTP, so no client library is needed; TLS verification uses the system store
(``SSL_CERT_FILE`` to override).
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from stateward.tofu import gojson
from stateward.tofu.envelope import b64decode
from stateward.tofu.errors import ConfigError, FormatError, KeyProviderError
from stateward.tofu.providers.base import KeyProvider
from stateward.tofu.rand import RandomSource
from stateward.tofu.secret import Secret

KEY_LENGTHS = (16, 32, 64)
DEFAULT_ADDRESS = "https://127.0.0.1:8200"  # the OpenBao client's default, as in OpenTofu
DEFAULT_TRANSIT_PATH = "/transit"


class OpenBaoProvider(KeyProvider):
    """``key_provider "openbao" "<name>" { key_name = …, address = …, token = … }``."""

    type_name = "openbao"

    def __init__(
        self,
        name: str,
        *,
        key_name: str,
        token: Secret | None,
        address: str | None = None,
        key_length: int = 32,
        transit_engine_path: str | None = None,
        alias: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(name, alias)
        if not key_name:
            raise ConfigError(f"{self.address}: key_name is required")
        if key_length not in KEY_LENGTHS:
            raise ConfigError(f"{self.address}: key_length must be one of 16, 32 or 64")
        base = address or DEFAULT_ADDRESS
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise ConfigError(f"{self.address}: address must be an http:// or https:// URL")
        self.key_name = key_name
        self.key_length = key_length
        self.base_url = base.rstrip("/")
        self.transit_path = (transit_engine_path or DEFAULT_TRANSIT_PATH).strip("/")
        self._token = token
        self.timeout = timeout

    def _url(self, operation: str) -> str:
        key = urllib.parse.quote(self.key_name, safe="")
        return f"{self.base_url}/v1/{self.transit_path}/{operation}/{key}"

    def _post(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the transit engine; returns the response's ``data`` object."""
        headers = {"Content-Type": "application/json"}
        if self._token is not None:
            headers["X-Vault-Token"] = self._token.reveal().decode("utf-8", "replace")
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            self._url(operation), data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        what = f"{self.address}: OpenBao {operation.split('/')[0]}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310
                payload = resp.read(1 << 20)
        except urllib.error.HTTPError as exc:
            with exc:  # closes the error response
                detail = _errors(exc)
            raise KeyProviderError(f"{what} failed: HTTP {exc.code}{detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise KeyProviderError(f"{what}: cannot reach {self.base_url}: {reason}") from None
        try:
            data = json.loads(payload)["data"]
        except (ValueError, KeyError, TypeError):
            raise KeyProviderError(f"{what}: response has no 'data' object") from None
        if not isinstance(data, dict):
            raise KeyProviderError(f"{what}: response has no 'data' object")
        return data

    def _plaintext(self, data: dict[str, Any], operation: str) -> bytes:
        value = data.get("plaintext")
        try:
            return base64.b64decode(value, validate=True) if isinstance(value, str) else b""
        except (binascii.Error, ValueError):
            raise KeyProviderError(
                f"{self.address}: OpenBao {operation} returned bad base64"
            ) from None

    def encryption_key(self, rng: RandomSource) -> tuple[bytes, bytes]:
        data = self._post("datakey/plaintext", {"bits": self.key_length * 8})
        key = self._plaintext(data, "datakey")
        ciphertext = data.get("ciphertext")
        if not key or not isinstance(ciphertext, str) or not ciphertext:
            raise KeyProviderError(f"{self.address}: OpenBao datakey returned no key")
        wrapped = '"' + base64.b64encode(ciphertext.encode("utf-8")).decode("ascii") + '"'
        return key, gojson.obj([("ciphertext", wrapped)]).encode("utf-8")

    def decryption_key(self, metadata: bytes) -> bytes:
        doc = self.parse_metadata(metadata)
        try:
            wrapped = b64decode(doc.get("ciphertext", ""), f"{self.address}: 'ciphertext'")
        except FormatError as exc:
            raise KeyProviderError(str(exc)) from None
        if not wrapped:
            raise KeyProviderError(f"{self.address}: stored metadata has no ciphertext")
        data = self._post("decrypt", {"ciphertext": wrapped.decode("utf-8", "replace")})
        key = self._plaintext(data, "decrypt")
        if not key:
            raise KeyProviderError(f"{self.address}: OpenBao decrypt returned no key")
        return key


def _errors(exc: urllib.error.HTTPError) -> str:
    """OpenBao's ``{"errors": [...]}`` text, if any (it never echoes the token)."""
    try:
        errors = json.loads(exc.read(4096)).get("errors")
    except (ValueError, AttributeError, OSError):
        return ""
    if isinstance(errors, list) and errors:
        return ": " + "; ".join(str(e) for e in errors)[:200]
    return ""
