"""What every key provider (key encryption key, "KEK") offers the barrier.

A provider never sees state content: it only generates, wraps and unwraps 32-byte data keys.
The barrier encrypts each blob with a data key (AES-256-GCM) and stores the *wrapped* data key
in the blob header next to the provider's name, key id and key version, so a blob plus its KEK
is enough to decrypt it (see ``crypto/envelope.py``).

``context`` is the encryption context: for state blobs ``{"stateward:path": <state path>}``.
Providers that support it (AWS KMS) bind it to the wrapped key, so a wrapped key copied onto
another path's blob cannot be unwrapped there; local providers bind it as AEAD associated data.

Errors are classified so the service can answer correctly (issue 4, "KMS faults"):

- :class:`KeyUnavailable` -- the KMS cannot be reached, throttles, times out: 503 with
  ``Retry-After``; the request may pass later.
- :class:`KeyDenied` -- access denied, key disabled, pending deletion, not found: 503 without
  ``Retry-After`` (an operator has to act), clearly worded.
- :class:`KeyInvalid` -- the wrapped key does not unwrap (tampered or wrong key): the read
  fails closed; never a plaintext fallback.

Messages are one line and never contain key material, wrapped keys or tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

DATA_KEY_BYTES = 32


class KeyProviderError(Exception):
    """Base of provider failures; ``str()`` is safe to show to an operator."""


class KeyUnavailable(KeyProviderError):
    """Transient: unreachable, throttled, timed out. Retry later."""


class KeyDenied(KeyProviderError):
    """Permanent until an operator acts: denied, disabled, missing key."""


class KeyInvalid(KeyProviderError):
    """The wrapped key does not unwrap under this provider: tampered, or the wrong key."""


@dataclass(frozen=True, slots=True)
class DataKey:
    """A fresh data key and its wrapped form.

    ``key_id`` names the KEK (an ARN, a transit key name, a key file name) and ``key_version``
    the KEK version that wrapped it (``""`` when the provider tracks versions inside the
    wrapped blob itself, e.g. AWS KMS)."""

    plaintext: bytes
    wrapped: bytes
    key_id: str
    key_version: str

    def __repr__(self) -> str:  # never show the plaintext key
        return f"DataKey(key_id={self.key_id!r}, key_version={self.key_version!r})"


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A wrapped data key as stored in a blob header."""

    wrapped: bytes
    key_id: str
    key_version: str


class KeyProvider(Protocol):
    """A configured key provider instance (``[key_providers.<name>]``)."""

    #: The configured name (stored in blob headers; renaming a provider orphans its blobs).
    name: str
    #: ``keyfile``, ``passphrase``, ``aws-kms``, ``vault-transit``, ``gcp-kms``.
    kind: str

    def generate(self, context: Mapping[str, str]) -> DataKey:
        """A new random 32-byte data key, wrapped under the current KEK version."""
        ...

    def unwrap(self, key: WrappedKey, context: Mapping[str, str]) -> bytes:
        """The 32-byte plaintext of a wrapped data key (any still-known KEK version)."""
        ...

    def rewrap(self, key: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        """The same data key wrapped under the *current* KEK version (rotation). Providers with
        a server-side re-wrap (Vault ``rewrap``, AWS ``ReEncrypt``) use it, so the plaintext
        key never leaves the KMS; others unwrap and wrap locally."""
        ...

    def current_version(self) -> str:
        """The KEK version new data keys are wrapped under (``""`` if not tracked here)."""
        ...
