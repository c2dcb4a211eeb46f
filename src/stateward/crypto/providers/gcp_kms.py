"""Google Cloud KMS key provider (``type = "gcp-kms"``), on the Cloud KMS REST API v1.

No Google SDK: plain JSON over HTTPS (stdlib ``http.client``, shared with the Vault provider).

- generate: 32 random bytes from ``os.urandom``, then
  ``POST {endpoint}/v1/{key_name}:encrypt`` ``{"plaintext", "additionalAuthenticatedData",
  "plaintextCrc32c", "additionalAuthenticatedDataCrc32c"}`` -> ``ciphertext`` and ``name``
  (``.../cryptoKeyVersions/N``: the key version is ``N``).
- unwrap: ``POST {endpoint}/v1/{key_name}:decrypt`` ``{"ciphertext",
  "additionalAuthenticatedData", "ciphertextCrc32c", "additionalAuthenticatedDataCrc32c"}`` ->
  ``plaintext``.
- rewrap: decrypt, then encrypt under the primary version (Cloud KMS has no re-encrypt call, so
  the data key passes through this process, as it does on generate).
- current_version: ``GET {endpoint}/v1/{key_name}`` -> ``primary.name``, cached for
  ``version_cache_seconds`` (each generate/rewrap also refreshes the cached value).

The encryption context is bound as additional authenticated data: the canonical JSON of the
context (sorted keys, compact, ASCII with ``\\u`` escapes). CRC32C checksums are sent and the
response checks (``verifiedPlaintextCrc32c``, ``verifiedAdditionalAuthenticatedDataCrc32c``,
``ciphertextCrc32c``, ``plaintextCrc32c``) are verified, as Google recommends; a failed check is
reported as unavailable (retry) so a corrupted ciphertext is never stored.

**Credentials** are kept deliberately simple: an OAuth 2.0 access token obtained outside
stateward (``gcloud auth print-access-token``, a workload-identity sidecar, a metadata-server
refresher), read from ``access_token_file`` on every request if set (so it can be refreshed in
place), else from the environment variable ``access_token_env`` (default
``GOOGLE_OAUTH_ACCESS_TOKEN``). Tokens expire (typically after an hour): an expired token gives
401 -> :class:`KeyDenied`. Required IAM: ``roles/cloudkms.cryptoKeyEncrypterDecrypter`` on the
key, plus ``cloudkms.cryptoKeys.get`` (e.g. ``roles/cloudkms.viewer``) for
``current_version``. ``quota_project`` sets ``x-goog-user-project``.

Errors: connection failures, timeouts, 429 and 5xx -> :class:`KeyUnavailable`; 401, 403, 404,
``FAILED_PRECONDITION`` (key version disabled or destroyed) and other 4xx ->
:class:`KeyDenied`; on decrypt ``INVALID_ARGUMENT`` ("Decryption failed") ->
:class:`KeyInvalid`. Messages are one line and never contain the token or key material.

Tested against: a fake Cloud KMS server in the test suite (``tests/harness/fake_kms.py``: stdlib
``http.server`` on loopback implementing exactly the endpoints above with real AES-256-GCM and
CRC32C checks), which also checks the paths, headers and JSON bodies this provider sends. Not
tested against the live Cloud KMS service.
"""

from __future__ import annotations

import base64
import os
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

_KEY_NAME = re.compile(
    r"^projects/[A-Za-z0-9_.:-]+/locations/[A-Za-z0-9_-]+/keyRings/[A-Za-z0-9_-]+"
    r"/cryptoKeys/[A-Za-z0-9_-]+$"
)
_VERSION_SUFFIX = re.compile(r"/cryptoKeyVersions/([0-9]+)$")
_TRANSIENT_STATUSES = frozenset(
    {"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "ABORTED"}
)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as Cloud KMS uses for its integrity fields."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class GcpKmsConfig(BaseModel):
    """``[key_providers.<name>]`` with ``type = "gcp-kms"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["gcp-kms"] = "gcp-kms"
    #: ``projects/P/locations/L/keyRings/R/cryptoKeys/K`` (a symmetric ENCRYPT_DECRYPT key).
    key_name: str
    #: Cloud KMS endpoint (e.g. a regional or private endpoint).
    endpoint: str = "https://cloudkms.googleapis.com"
    #: Environment variable holding the access token (used when ``access_token_file`` is unset).
    access_token_env: str = "GOOGLE_OAUTH_ACCESS_TOKEN"  # noqa: S105 -- a variable name
    #: File holding the access token; re-read on every request.
    access_token_file: Path | None = None
    #: Project billed for quota (``x-goog-user-project``), for user credentials.
    quota_project: str | None = None
    #: PEM CA bundle to verify the endpoint's certificate (default: the system store).
    ca_file: Path | None = None
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    read_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    #: Attempts per operation (1 = no retry); only transient failures are retried.
    max_attempts: int = Field(default=2, ge=1, le=10)
    #: How long ``current_version`` trusts its last answer.
    version_cache_seconds: float = Field(default=60.0, ge=0, le=86400)

    @field_validator("key_name")
    @classmethod
    def _key_name(cls, value: str) -> str:
        if not _KEY_NAME.match(value):
            raise ValueError("key_name must be projects/P/locations/L/keyRings/R/cryptoKeys/K")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return check_service_url(value, field="endpoint")

    @field_validator("access_token_env")
    @classmethod
    def _token_env(cls, value: str) -> str:
        if not value or "=" in value or "\x00" in value:
            raise ValueError("access_token_env must be an environment variable name")
        return value

    @field_validator("quota_project")
    @classmethod
    def _quota_project(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9_.:-]+$", value):
            raise ValueError("quota_project must be a project id")
        return value


class GcpKmsProvider(HttpKeyProvider[GcpKmsConfig]):
    """Data keys wrapped by a Cloud KMS symmetric key. ``calls`` counts Cloud KMS methods
    (``encrypt``, ``decrypt``, ``get``)."""

    kind = "gcp-kms"

    def __init__(
        self,
        name: str,
        config: GcpKmsConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(name, config, config.endpoint, sleep=sleep)
        key = quote(config.key_name, safe="/:")
        self._paths = {
            "encrypt": f"/v1/{key}:encrypt",
            "decrypt": f"/v1/{key}:decrypt",
            "get": f"/v1/{key}",
        }

    # -- protocol --

    def generate(self, context: Mapping[str, str]) -> DataKey:
        plaintext = os.urandom(DATA_KEY_BYTES)
        wrapped, version = self._encrypt(plaintext, context)
        return DataKey(
            plaintext=plaintext, wrapped=wrapped, key_id=self.config.key_name, key_version=version
        )

    def unwrap(self, key: WrappedKey, context: Mapping[str, str]) -> bytes:
        if key.key_id and key.key_id != self.config.key_name:
            raise KeyInvalid(
                f"{self._who}: the data key was wrapped under {key.key_id!r}, "
                f"this provider uses {self.config.key_name!r}"
            )
        if not key.wrapped:
            raise KeyInvalid(f"{self._who}: the wrapped key is empty")
        aad = canonical_context(context)
        data = self._call(
            "decrypt",
            {
                "ciphertext": _b64(key.wrapped),
                "additionalAuthenticatedData": _b64(aad),
                "ciphertextCrc32c": str(crc32c(key.wrapped)),
                "additionalAuthenticatedDataCrc32c": str(crc32c(aad)),
            },
            self._check_decrypt,
        )
        plaintext = b64decode_strict(data.get("plaintext"))
        if plaintext is None or len(plaintext) != DATA_KEY_BYTES:
            raise KeyInvalid(f"{self._who}: the wrapped key does not hold a 256-bit data key")
        return plaintext

    def rewrap(self, key: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        plaintext = self.unwrap(key, context)
        wrapped, version = self._encrypt(plaintext, context)
        return WrappedKey(wrapped=wrapped, key_id=self.config.key_name, key_version=version)

    def current_version(self) -> str:
        cached = self._cached_version()
        if cached is not None:
            return cached
        data = self._call("get", None, None)
        primary = data.get("primary")
        name = primary.get("name") if isinstance(primary, dict) else None
        version = self._version_of(name)
        if version is None:
            raise KeyDenied(f"{self._who}: the key has no primary version")
        self._remember_version(version)
        return version

    # -- internals --

    def _encrypt(self, plaintext: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        aad = canonical_context(context)
        data = self._call(
            "encrypt",
            {
                "plaintext": _b64(plaintext),
                "additionalAuthenticatedData": _b64(aad),
                "plaintextCrc32c": str(crc32c(plaintext)),
                "additionalAuthenticatedDataCrc32c": str(crc32c(aad)),
            },
            self._check_encrypt,
        )
        ciphertext = b64decode_strict(data.get("ciphertext"))
        version = self._version_of(data.get("name"))
        if not ciphertext or version is None:  # checked by _check_encrypt already
            raise KeyUnavailable(f"{self._who}: encrypt answer is malformed")
        self._remember_version(version)
        return ciphertext, version

    def _check_encrypt(self, data: Mapping[str, Any]) -> None:
        ciphertext = b64decode_strict(data.get("ciphertext"))
        if not ciphertext or self._version_of(data.get("name")) is None:
            raise KeyUnavailable(f"{self._who}: encrypt answer has no ciphertext or key version")
        if (
            data.get("verifiedPlaintextCrc32c") is not True
            or data.get("verifiedAdditionalAuthenticatedDataCrc32c") is not True
            or not _crc_matches(data.get("ciphertextCrc32c"), ciphertext)
        ):
            raise KeyUnavailable(f"{self._who}: encrypt integrity check (CRC32C) failed")

    def _check_decrypt(self, data: Mapping[str, Any]) -> None:
        plaintext = b64decode_strict(data.get("plaintext"))
        if plaintext is None:
            raise KeyUnavailable(f"{self._who}: decrypt answer has no plaintext")
        if "plaintextCrc32c" in data and not _crc_matches(data.get("plaintextCrc32c"), plaintext):
            raise KeyUnavailable(f"{self._who}: decrypt integrity check (CRC32C) failed")

    def _version_of(self, name: object) -> str | None:
        if not isinstance(name, str) or not name.startswith(self.config.key_name + "/"):
            return None
        match = _VERSION_SUFFIX.search(name)
        return str(int(match.group(1))) if match else None

    def _call(
        self,
        op: str,
        payload: Mapping[str, Any] | None,
        check: Callable[[Mapping[str, Any]], None] | None,
    ) -> Mapping[str, Any]:
        def once() -> Mapping[str, Any]:
            data = self._once(op, payload)
            if check is not None:
                check(data)  # integrity failures are retried like transport failures
            return data

        return self._retried(op, once)

    def _once(self, op: str, payload: Mapping[str, Any] | None) -> Mapping[str, Any]:
        token = read_secret(
            self._who,
            "access token",
            env=self.config.access_token_env,
            file=self.config.access_token_file,
        )
        headers = {"Authorization": f"Bearer {token}"}
        if self.config.quota_project:
            headers["x-goog-user-project"] = self.config.quota_project
        reply = self._http.request(
            "GET" if payload is None else "POST", self._paths[op], headers=headers, payload=payload
        )
        if 200 <= reply.status < 300:
            if not isinstance(reply.json, dict):
                raise KeyUnavailable(f"{self._who}: {op} answer (HTTP {reply.status}) is not JSON")
            return reply.json
        raise self._error(op, reply, token)

    def _error(
        self, op: str, reply: HttpReply, token: str
    ) -> KeyDenied | KeyInvalid | KeyUnavailable:
        error = reply.json.get("error") if isinstance(reply.json, dict) else None
        status_name = ""
        message = ""
        if isinstance(error, dict):
            status_name = str(error.get("status") or "")
            message = str(error.get("message") or "")
        detail = one_line(message.replace(token, "[token]"), 200) if message else ""
        status = reply.status
        what = (
            f"{self._who}: {op} failed: HTTP {status}"
            + (f" {one_line(status_name, 40)}" if status_name else "")
            + (f": {detail}" if detail else "")
        )
        if status in (401, 403) or status_name in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            hint = "the access token may have expired" if status == 401 else "check IAM"
            return KeyDenied(f"{what} ({hint})")
        if status == 404 or status_name == "NOT_FOUND":
            return KeyDenied(f"{what} (check key_name)")
        if status_name == "FAILED_PRECONDITION":
            return KeyDenied(f"{what} (is the key version enabled?)")
        if status == 429 or status >= 500 or status_name in _TRANSIENT_STATUSES:
            return KeyUnavailable(what)
        if "checksum" in detail.lower() or "crc32c" in detail.lower():
            return KeyUnavailable(what)  # corrupted in transit: retry
        if op == "decrypt" and (status == 400 or status_name == "INVALID_ARGUMENT"):
            return KeyInvalid(what)
        if 300 <= status < 400:
            return KeyUnavailable(f"{what} (redirect not followed)")
        return KeyDenied(what)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _crc_matches(value: object, data: bytes) -> bool:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return False
    try:
        return int(value) == crc32c(data)
    except ValueError:
        return False
