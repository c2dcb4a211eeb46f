"""AWS KMS key provider (``type = "aws-kms"``), on boto3.

- generate: ``GenerateDataKey(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)``;
  the wrapped key is the ``CiphertextBlob``, ``key_id`` the answer's ``KeyId`` (the key ARN) and
  ``key_version`` is ``""`` (KMS keeps the backing-key version inside the ciphertext blob and
  rotates it itself).
- unwrap: ``Decrypt(CiphertextBlob, KeyId=..., EncryptionContext=context)``. ``KeyId`` is always
  given (AWS best practice: KMS then refuses a ciphertext made under any other key): the
  configured ``key_id``, or the blob's stored key ARN if that ARN is listed in
  ``previous_key_ids`` (after moving to a new key; ``rewrap`` then moves blobs over).
- rewrap: ``ReEncrypt(SourceKeyId=..., SourceEncryptionContext=context,
  DestinationKeyId=key_id, DestinationEncryptionContext=context)``; the plaintext data key
  never leaves KMS.
- current_version: ``""``.

The encryption context is bound by KMS: a wrapped key copied onto another path's blob does not
decrypt (``InvalidCiphertextException`` -> :class:`KeyInvalid`).

Client: its own ``boto3`` session (``profile`` if set, else the default credential chain),
``region``/``endpoint_url`` if set, connect/read timeouts, and botocore's "standard" retry mode
with ``max_attempts`` attempts in total. IAM permissions needed on the key:
``kms:GenerateDataKey``, ``kms:Decrypt``, ``kms:ReEncryptFrom``, ``kms:ReEncryptTo``.

Errors: connection failures and timeouts, ``ThrottlingException``, ``KMSInternalException``,
``DependencyTimeoutException``, ``KeyUnavailableException`` (AWS: "you can retry"), and any
5xx -> :class:`KeyUnavailable`; ``AccessDeniedException``, ``DisabledException``,
``KMSInvalidStateException`` (pending deletion), ``NotFoundException``, missing or rejected
credentials, and any other 4xx -> :class:`KeyDenied`; ``InvalidCiphertextException`` and
``IncorrectKeyException`` -> :class:`KeyInvalid`. Messages are one line naming the provider,
the operation and the AWS error code; never the data key or the wrapped key.

``calls`` counts API operations by name (``GenerateDataKey``, ``Decrypt``, ``ReEncrypt``), one
per call made by this provider (botocore's internal retries are not counted separately).

Tested against: moto 5.2.1 in server mode (``moto.server.ThreadedMotoServer`` on loopback),
through boto3 over real HTTP with botocore's request signing and error parsing. moto does not
enforce key state, so the tests add the state check to moto's backend (disabled ->
``DisabledException``, pending deletion -> ``KMSInvalidStateException``, as AWS answers) and
inject ``ThrottlingException``, ``KMSInternalException`` and ``IncorrectKeyException`` the same
way; moto answers a decrypt under the wrong ``KeyId`` with ``AccessDeniedException`` where AWS
answers ``IncorrectKeyException``. Not tested against the live AWS KMS service.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Literal

import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]
from pydantic import BaseModel, ConfigDict, Field, field_validator

from stateward.common.aws import boto_client
from stateward.common.net import check_service_url
from stateward.common.text import one_line
from stateward.crypto.providers.base import (
    DATA_KEY_BYTES,
    DataKey,
    KeyDenied,
    KeyInvalid,
    KeyProviderError,
    KeyUnavailable,
    WrappedKey,
)

_UNAVAILABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "KMSInternalException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_INVALID_CODES = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})
_CREDENTIAL_ERRORS = (
    "NoCredentialsError",
    "PartialCredentialsError",
    "UnknownCredentialError",
    "ProfileNotFound",
    "NoRegionError",
    "ParamValidationError",
)
_METHODS = {"GenerateDataKey": "generate_data_key", "Decrypt": "decrypt", "ReEncrypt": "re_encrypt"}


class AwsKmsConfig(BaseModel):
    """``[key_providers.<name>]`` with ``type = "aws-kms"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["aws-kms"] = "aws-kms"
    #: Key ARN, key id, alias name (``alias/...``) or alias ARN.
    key_id: str = Field(min_length=1)
    #: AWS region (default: from the profile / ``AWS_REGION`` / ``AWS_DEFAULT_REGION``).
    region: str | None = None
    #: Endpoint override (VPC endpoint, FIPS endpoint, a local KMS for tests).
    endpoint_url: str | None = None
    #: Named profile from the shared AWS config (default: the default credential chain).
    profile: str | None = None
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    read_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    #: Attempts per call in total (botocore "standard" retry mode; 1 = no retry).
    max_attempts: int = Field(default=2, ge=1, le=10)
    #: Key ARNs of earlier KEKs whose wrapped keys may still be unwrapped (and rewrapped).
    previous_key_ids: tuple[str, ...] = ()

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else check_service_url(value, field="endpoint_url")

    @field_validator("key_id")
    @classmethod
    def _key_id(cls, value: str) -> str:
        if value != value.strip() or any(ch.isspace() for ch in value):
            raise ValueError("key_id must not contain whitespace")
        return value


class AwsKmsProvider:
    """Data keys from AWS KMS (``GenerateDataKey``), bound to the encryption context."""

    kind = "aws-kms"

    def __init__(self, name: str, config: AwsKmsConfig, *, client: Any = None) -> None:
        self.name = name
        self.config = config
        self._who = f"aws-kms key provider {name!r}"
        #: API calls made, by KMS operation name.
        self.calls: dict[str, int] = {}
        self._calls_lock = threading.Lock()
        self._client: Any = client if client is not None else self._make_client()

    def __repr__(self) -> str:
        return f"AwsKmsProvider(name={self.name!r}, key_id={self.config.key_id!r})"

    def call_counts(self) -> dict[str, int]:
        with self._calls_lock:
            return dict(self.calls)

    def _make_client(self) -> Any:
        cfg = self.config
        try:
            return boto_client(
                "kms",
                region=cfg.region,
                endpoint_url=cfg.endpoint_url,
                connect_timeout=cfg.connect_timeout_seconds,
                read_timeout=cfg.read_timeout_seconds,
                max_attempts=cfg.max_attempts,
                profile=cfg.profile,
            )
        except botocore.exceptions.BotoCoreError as exc:
            raise self._map_error("client setup", exc) from None

    # -- protocol --

    def generate(self, context: Mapping[str, str]) -> DataKey:
        answer = self._call(
            "GenerateDataKey",
            KeyId=self.config.key_id,
            KeySpec="AES_256",
            EncryptionContext=dict(context),
        )
        plaintext = answer.get("Plaintext")
        wrapped = answer.get("CiphertextBlob")
        key_id = answer.get("KeyId")
        if not (
            isinstance(plaintext, bytes)
            and len(plaintext) == DATA_KEY_BYTES
            and isinstance(wrapped, bytes)
            and wrapped
            and isinstance(key_id, str)
        ):
            raise KeyUnavailable(f"{self._who}: GenerateDataKey answer is malformed")
        return DataKey(plaintext=plaintext, wrapped=wrapped, key_id=key_id, key_version="")

    def unwrap(self, key: WrappedKey, context: Mapping[str, str]) -> bytes:
        if not key.wrapped:
            raise KeyInvalid(f"{self._who}: the wrapped key is empty")
        answer = self._call(
            "Decrypt",
            CiphertextBlob=key.wrapped,
            KeyId=self._source_key_id(key),
            EncryptionContext=dict(context),
            stored_key_id=key.key_id,
        )
        plaintext = answer.get("Plaintext")
        if not isinstance(plaintext, bytes) or len(plaintext) != DATA_KEY_BYTES:
            raise KeyInvalid(f"{self._who}: the wrapped key does not hold a 256-bit data key")
        return plaintext

    def rewrap(self, key: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        if not key.wrapped:
            raise KeyInvalid(f"{self._who}: the wrapped key is empty")
        answer = self._call(
            "ReEncrypt",
            CiphertextBlob=key.wrapped,
            SourceKeyId=self._source_key_id(key),
            SourceEncryptionContext=dict(context),
            DestinationKeyId=self.config.key_id,
            DestinationEncryptionContext=dict(context),
            stored_key_id=key.key_id,
        )
        wrapped = answer.get("CiphertextBlob")
        key_id = answer.get("KeyId")
        if not isinstance(wrapped, bytes) or not wrapped or not isinstance(key_id, str):
            raise KeyUnavailable(f"{self._who}: ReEncrypt answer is malformed")
        return WrappedKey(wrapped=wrapped, key_id=key_id, key_version="")

    def current_version(self) -> str:
        return ""

    # -- internals --

    def _source_key_id(self, key: WrappedKey) -> str:
        if key.key_id and key.key_id in self.config.previous_key_ids:
            return key.key_id
        return self.config.key_id

    def _call(self, op: str, *, stored_key_id: str = "", **params: Any) -> dict[str, Any]:
        with self._calls_lock:
            self.calls[op] = self.calls.get(op, 0) + 1
        try:
            answer = getattr(self._client, _METHODS[op])(**params)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._map_error(op, exc, stored_key_id=stored_key_id) from None
        if not isinstance(answer, dict):
            raise KeyUnavailable(f"{self._who}: {op} answer is malformed")
        return answer

    def _map_error(self, op: str, exc: Exception, *, stored_key_id: str = "") -> KeyProviderError:
        if isinstance(exc, botocore.exceptions.ClientError):
            response = exc.response if isinstance(exc.response, dict) else {}
            error = response.get("Error") or {}
            meta = response.get("ResponseMetadata") or {}
            code = str(error.get("Code") or "Unknown")
            status = meta.get("HTTPStatusCode")
            message = one_line(str(error.get("Message") or ""), 200)
            what = f"{self._who}: {op} failed: {one_line(code, 80)}" + (
                f": {message}" if message else ""
            )
            if code in _INVALID_CODES:
                if code == "IncorrectKeyException" and stored_key_id:
                    what += (
                        f" (wrapped under {stored_key_id!r}; if that is an earlier key, list it"
                        " in previous_key_ids)"
                    )
                return KeyInvalid(what)
            if code in _UNAVAILABLE_CODES or (isinstance(status, int) and status >= 500):
                return KeyUnavailable(what)
            return KeyDenied(what)
        name = type(exc).__name__
        if name in _CREDENTIAL_ERRORS:
            hint = {
                "NoCredentialsError": "no AWS credentials found",
                "PartialCredentialsError": "incomplete AWS credentials",
                "UnknownCredentialError": "unknown credential source",
                "ProfileNotFound": f"AWS profile {self.config.profile!r} not found",
                "NoRegionError": "no AWS region configured (set region)",
                "ParamValidationError": "request rejected by botocore",
            }[name]
            return KeyDenied(f"{self._who}: {op} failed: {name}: {hint}")
        if isinstance(
            exc,
            botocore.exceptions.ConnectTimeoutError | botocore.exceptions.ReadTimeoutError,
        ):
            return KeyUnavailable(f"{self._who}: {op} failed: {name}: KMS timed out")
        if isinstance(
            exc, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError
        ):
            return KeyUnavailable(f"{self._who}: {op} failed: {name}: cannot reach KMS")
        return KeyUnavailable(f"{self._who}: {op} failed: {name}")
