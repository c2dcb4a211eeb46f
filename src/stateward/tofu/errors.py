"""Errors of the OpenTofu encryption interop.

Every message is one line, names the configuration address or file field at fault, and never
contains a key, a passphrase, a token or decrypted content: the CLI prints ``str(err)`` as is.
"""

from __future__ import annotations


class TofuError(Exception):
    """Base of every refusal of :mod:`stateward.tofu`; ``str(err)`` is safe to show."""

    def __init__(self, message: str) -> None:
        # Multi-line causes (e.g. a remote service's error body) are flattened so callers can
        # rely on one line.
        super().__init__(" ".join(message.split()))


class ConfigError(TofuError):
    """The encryption description is invalid (unknown setting, bad reference, weak parameter)."""


class FormatError(TofuError):
    """The input is neither a valid ``v0`` envelope nor an acceptable plaintext."""


class KeyProviderError(TofuError):
    """A key provider could not produce a key (bad metadata, KMS/OpenBao refused or unreachable)."""


class DecryptionError(TofuError):
    """No configured method could decrypt the payload, or the result contradicts the envelope."""
