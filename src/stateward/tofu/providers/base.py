"""What every key provider offers the ``aes_gcm`` method."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from stateward.tofu.errors import KeyProviderError
from stateward.tofu.rand import RandomSource


class KeyProvider(ABC):
    """A configured ``key_provider "<type>" "<name>"``.

    Encryption asks for a fresh key and the metadata to store under :attr:`meta_key`;
    decryption hands back that metadata and gets the same key. Only the half that is needed
    runs: decrypting never calls KMS ``GenerateDataKey``, encrypting never calls ``Decrypt``.
    """

    type_name: ClassVar[str]

    def __init__(self, name: str, alias: str | None = None) -> None:
        self.name = name
        self.alias = alias

    @property
    def address(self) -> str:
        """``key_provider.<type>.<name>``, as written in HCL."""
        return f"key_provider.{self.type_name}.{self.name}"

    @property
    def meta_key(self) -> str:
        """The envelope ``meta`` key: the ``encrypted_metadata_alias`` if set, else the address.

        The alias lets a provider be renamed (or re-keyed under the same name) while old files
        still find their metadata.
        """
        return self.alias or self.address

    @abstractmethod
    def encryption_key(self, rng: RandomSource) -> tuple[bytes, bytes]:
        """A key for a new encryption and the metadata JSON to store with it."""

    @abstractmethod
    def decryption_key(self, metadata: bytes) -> bytes:
        """The key that encrypted a payload whose stored metadata is ``metadata``."""

    def parse_metadata(self, metadata: bytes) -> dict[str, Any]:
        """The stored metadata as a JSON object, or a one-line KeyProviderError."""
        try:
            doc = json.loads(metadata.decode("utf-8"))
        except (ValueError, RecursionError):
            raise KeyProviderError(f"{self.address}: stored metadata is not JSON") from None
        if not isinstance(doc, dict):
            raise KeyProviderError(f"{self.address}: stored metadata is not a JSON object")
        return doc

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}>"
