"""The ``aws_kms`` key provider: a data key from AWS KMS ``GenerateDataKey``.

The KMS-wrapped copy of the data key (``CiphertextBlob``) is stored as
``{"ciphertext_blob":"<b64>"}``; decryption unwraps it with KMS ``Decrypt`` using the configured
``kms_key_id``. boto3 is imported only when a KMS call is made, so the rest of the package works
without it; credentials come from boto3's usual chain (environment, profile, instance role).
"""

from __future__ import annotations

import base64
import importlib
import os
from typing import Any

from stateward.tofu import gojson
from stateward.tofu.envelope import b64decode
from stateward.tofu.errors import ConfigError, FormatError, KeyProviderError
from stateward.tofu.providers.base import KeyProvider
from stateward.tofu.rand import RandomSource

KEY_SPECS = {"AES_256": 32, "AES_128": 16}


class AwsKmsProvider(KeyProvider):
    """``key_provider "aws_kms" "<name>" { kms_key_id = …, key_spec = …, region = … }``."""

    type_name = "aws_kms"

    def __init__(
        self,
        name: str,
        *,
        kms_key_id: str,
        key_spec: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        alias: str | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(name, alias)
        if not kms_key_id:
            raise ConfigError(f"{self.address}: kms_key_id is required")
        if key_spec not in KEY_SPECS:
            raise ConfigError(f"{self.address}: key_spec must be one of {', '.join(KEY_SPECS)}")
        self.kms_key_id = kms_key_id
        self.key_spec = key_spec
        # OpenTofu reads AWS_REGION as well as AWS_DEFAULT_REGION (which boto3 reads itself).
        self.region = region or os.environ.get("AWS_REGION") or None
        self.endpoint_url = endpoint_url
        self.profile = profile
        self._client = client  # injectable for tests; built lazily otherwise

    def client(self) -> Any:
        """A boto3 KMS client for the configured region/endpoint/profile (built once)."""
        if self._client is None:
            try:
                boto3 = importlib.import_module("boto3")
                botocore_config = importlib.import_module("botocore.config")
            except ImportError:
                raise KeyProviderError(
                    f"{self.address}: the aws_kms key provider needs boto3 (pip install boto3)"
                ) from None
            try:
                session = boto3.session.Session(profile_name=self.profile)
                self._client = session.client(
                    "kms",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=botocore_config.Config(
                        connect_timeout=10, read_timeout=30, retries={"max_attempts": 3}
                    ),
                )
            except Exception as exc:  # boto raises many types; all mean "cannot build"
                raise KeyProviderError(f"{self.address}: {_describe(exc)}") from None
        return self._client

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        client = self.client()
        try:
            response: dict[str, Any] = getattr(client, operation)(**params)
        except Exception as exc:  # ClientError, EndpointConnectionError, NoCredentialsError…
            reason = _describe(exc)
            raise KeyProviderError(f"{self.address}: KMS {operation} failed: {reason}") from None
        return response

    def encryption_key(self, rng: RandomSource) -> tuple[bytes, bytes]:
        resp = self._call("generate_data_key", KeyId=self.kms_key_id, KeySpec=self.key_spec)
        plaintext, blob = resp.get("Plaintext"), resp.get("CiphertextBlob")
        if not isinstance(plaintext, bytes) or not isinstance(blob, bytes) or not blob:
            raise KeyProviderError(f"{self.address}: KMS GenerateDataKey returned no key")
        blob_b64 = '"' + base64.b64encode(blob).decode("ascii") + '"'
        return plaintext, gojson.obj([("ciphertext_blob", blob_b64)]).encode("utf-8")

    def decryption_key(self, metadata: bytes) -> bytes:
        doc = self.parse_metadata(metadata)
        try:
            blob = b64decode(doc.get("ciphertext_blob", ""), f"{self.address}: 'ciphertext_blob'")
        except FormatError as exc:
            raise KeyProviderError(str(exc)) from None
        if not blob:
            raise KeyProviderError(f"{self.address}: stored metadata has no ciphertext_blob")
        resp = self._call("decrypt", KeyId=self.kms_key_id, CiphertextBlob=blob)
        plaintext = resp.get("Plaintext")
        if not isinstance(plaintext, bytes):
            raise KeyProviderError(f"{self.address}: KMS Decrypt returned no key")
        return plaintext


def _describe(exc: Exception) -> str:
    """botocore's error code and message (never request parameters), on one line."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        code, message = err.get("Code", "error"), err.get("Message", "")
        return f"{code}: {message}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]
