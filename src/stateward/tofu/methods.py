"""Configured methods: ``aes_gcm`` (with a key provider or raw keys) and ``unencrypted``."""

from __future__ import annotations

import base64
import binascii
from abc import ABC, abstractmethod
from collections.abc import Mapping

from stateward.tofu import aesgcm
from stateward.tofu.config import RawKey
from stateward.tofu.errors import ConfigError, DecryptionError, KeyProviderError
from stateward.tofu.providers.base import KeyProvider
from stateward.tofu.rand import RandomSource
from stateward.tofu.secret import Secret


class Method(ABC):
    """A ``method "<type>" "<name>"``, ready to use."""

    type_name: str

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def address(self) -> str:
        return f"method.{self.type_name}.{self.name}"

    @abstractmethod
    def encrypt(self, plaintext: bytes, rng: RandomSource) -> tuple[bytes, dict[str, bytes]]:
        """``(encrypted_data, meta entries to store)``."""

    @abstractmethod
    def decrypt(self, data: bytes, meta: Mapping[str, bytes]) -> bytes:
        """The plaintext, or a one-line TofuError saying why not."""


class Unencrypted(Method):
    """Marks "plaintext is acceptable here"; never called to transform data."""

    type_name = "unencrypted"

    def encrypt(self, plaintext: bytes, rng: RandomSource) -> tuple[bytes, dict[str, bytes]]:
        raise AssertionError("the unencrypted method does not produce envelopes")

    def decrypt(self, data: bytes, meta: Mapping[str, bytes]) -> bytes:
        raise DecryptionError(f"{self.address} cannot decrypt an encrypted payload")


def resolve_raw_key(key: RawKey | None) -> bytes | None:
    """Inline bytes as they are; an ``*_env`` variable holds the key in standard base64."""
    if key is None or isinstance(key, Secret):
        return None if key is None else key.reveal()
    text = key.resolve().reveal()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{key.what}: ${key.value} is not valid base64") from None


class AesGcm(Method):
    """``method "aes_gcm"``: keys from a key provider, or raw encryption/decryption keys."""

    type_name = "aes_gcm"

    def __init__(
        self,
        name: str,
        *,
        provider: KeyProvider | None = None,
        encryption_key: bytes | None = None,
        decryption_key: bytes | None = None,
        aad: bytes | None = None,
    ) -> None:
        super().__init__(name)
        self.provider = provider
        self._encryption_key = encryption_key
        self._decryption_key = decryption_key
        self.aad = aad
        for label, key in (("encryption key", encryption_key), ("decryption key", decryption_key)):
            if key is not None:
                try:
                    aesgcm.check_key(key, label)
                except KeyProviderError as exc:
                    raise ConfigError(f"{self.address}: {exc}") from None

    def encrypt(self, plaintext: bytes, rng: RandomSource) -> tuple[bytes, dict[str, bytes]]:
        meta: dict[str, bytes] = {}
        if self.provider is not None:
            key, metadata = self.provider.encryption_key(rng)
            meta[self.provider.meta_key] = metadata
        elif self._encryption_key is not None:
            key = self._encryption_key
        else:
            raise KeyProviderError(f"{self.address}: no encryption_key configured")
        try:
            return aesgcm.seal(key, plaintext, self.aad, rng), meta
        except KeyProviderError as exc:
            raise KeyProviderError(f"{self.address}: {exc}") from None

    def decrypt(self, data: bytes, meta: Mapping[str, bytes]) -> bytes:
        if self.provider is not None:
            stored = meta.get(self.provider.meta_key)
            if stored is None:
                raise KeyProviderError(
                    f"no metadata for {self.provider.meta_key} in the file "
                    "(written with another key provider or alias)"
                )
            key = self.provider.decryption_key(stored)
        elif self._decryption_key is not None:
            key = self._decryption_key
        else:
            raise KeyProviderError("no decryption_key configured")
        return aesgcm.open_sealed(key, data, self.aad)
