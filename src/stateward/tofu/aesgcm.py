"""The ``aes_gcm`` method: ``nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)``.

Matches OpenTofu's ``method/aesgcm``: Go's ``cipher.NewGCM`` (96-bit nonce, 128-bit tag), a fresh
nonce per encryption, and optional associated data that is not stored in the file.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stateward.tofu.errors import DecryptionError, KeyProviderError
from stateward.tofu.rand import RandomSource

NONCE_SIZE = 12
TAG_SIZE = 16
KEY_SIZES = (16, 24, 32)


def check_key(key: bytes, what: str) -> None:
    """Refuse key lengths AES-GCM cannot use, naming the key (never showing it)."""
    if len(key) not in KEY_SIZES:
        raise KeyProviderError(f"AES-GCM needs a 16, 24 or 32-byte {what}, got {len(key)} bytes")


def seal(key: bytes, plaintext: bytes, aad: bytes | None, rng: RandomSource) -> bytes:
    """Encrypt with a fresh nonce drawn from ``rng``."""
    check_key(key, "encryption key")
    nonce = rng(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad or None)


def open_sealed(key: bytes, data: bytes, aad: bytes | None) -> bytes:
    """Decrypt and authenticate; every failure is a one-line DecryptionError."""
    check_key(key, "decryption key")
    if not data:
        raise DecryptionError("cannot decrypt empty data")
    if len(data) < NONCE_SIZE + TAG_SIZE:
        raise DecryptionError("encrypted data is too short (corrupted)")
    try:
        return AESGCM(key).decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], aad or None)
    except InvalidTag:
        raise DecryptionError(
            "AES-GCM authentication failed (wrong key or passphrase, different aad, "
            "or tampered data)"
        ) from None
