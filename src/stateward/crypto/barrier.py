"""The barrier between the service and blob storage: everything below it is ciphertext.

Blob layout, format 2 (encrypted)::

    b"SWB" | format=2:u8 | flags:u8 | reserved:3 | header_len:u16 | header | nonce:12 | ct+tag

``header`` is compact JSON naming the key provider (``p``), its kind (``k``), key id (``i``),
key version (``v``) and carrying the wrapped data key (``w``, base64). The payload is the state,
zstd-compressed (flags bit 0), then AES-256-GCM encrypted with the data key and a fresh random
96-bit nonce. The associated data binds the format, the flags, the state path and the blob key
(unique per version), so a blob copied to another path or swapped with another version's blob
fails to decrypt. The header itself is not authenticated on purpose: ``keys rewrap`` replaces
the wrapped key without touching the ciphertext, and a forged header can only produce a wrong
data key, which fails the GCM tag.

Format 1 (``b"SWB" | 1 | flags | reserved:3 | payload``) is the unencrypted layout of earlier
releases; it is still read (each version's SHA-256 in the metadata guards its integrity) and
``keys rewrap`` converts it. Any failure raises :class:`BlobCorrupt` or a key provider error:
there is never a plaintext fallback.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from dataclasses import dataclass

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stateward.common.types import Body
from stateward.crypto.keyring import KeyRing
from stateward.crypto.providers.base import KeyProvider, WrappedKey
from stateward.storage.blobs import BlobStore

MAGIC = b"SWB"
FORMAT_PLAIN = 1
FORMAT_SEALED = 2
FLAG_ZSTD = 0x01
HEADER_LEN = 8
NONCE = 12
MAX_KEY_HEADER = 16 * 1024
ZSTD_LEVEL = 1  # JSON compresses nearly as well at 1, at half the CPU of 3


class BlobCorrupt(Exception):
    """A stored blob does not parse or does not authenticate; never return raw bytes."""


@dataclass(frozen=True, slots=True)
class KeyRef:
    """Which key protects a blob (metadata only: recorded per version for rotation)."""

    provider: str
    kind: str
    key_id: str
    key_version: str


@dataclass(frozen=True, slots=True)
class SealedBlob:
    data: bytes
    key: KeyRef


def _aad(fmt: int, flags: int, path: str, blob_key: str) -> bytes:
    return b"stateward-blob\x00" + bytes([fmt, flags]) + f"\x00{path}\x00{blob_key}".encode()


def parse_header(blob: bytes) -> tuple[KeyRef, WrappedKey, int]:
    """(key reference, wrapped data key, offset of the nonce) of a format-2 blob."""
    if len(blob) < HEADER_LEN + 2 or blob[:3] != MAGIC or blob[3] != FORMAT_SEALED:
        raise BlobCorrupt("not an encrypted stateward blob")
    (hlen,) = struct.unpack(">H", blob[HEADER_LEN : HEADER_LEN + 2])
    start = HEADER_LEN + 2
    if hlen > MAX_KEY_HEADER or len(blob) < start + hlen + NONCE + 16:
        raise BlobCorrupt("blob key header is truncated")
    try:
        doc = json.loads(blob[start : start + hlen])
        ref = KeyRef(str(doc["p"]), str(doc["k"]), str(doc["i"]), str(doc["v"]))
        wrapped = base64.b64decode(doc["w"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BlobCorrupt("blob key header does not parse") from None
    return ref, WrappedKey(wrapped, ref.key_id, ref.key_version), start + hlen


def _header(ref: KeyRef, wrapped: bytes) -> bytes:
    doc = {
        "p": ref.provider,
        "k": ref.kind,
        "i": ref.key_id,
        "v": ref.key_version,
        "w": base64.b64encode(wrapped).decode(),
    }
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return struct.pack(">H", len(raw)) + raw


def rewrap_blob(blob: bytes, ref: KeyRef, wrapped: bytes) -> bytes:
    """The same ciphertext under a new wrapped data key (``keys rewrap``)."""
    _old, _key, offset = parse_header(blob)
    return blob[:HEADER_LEN] + _header(ref, wrapped) + blob[offset:]


class Barrier:
    """Seals state bodies into encrypted blobs and opens them again."""

    def __init__(self, blobs: BlobStore, keys: KeyRing) -> None:
        self.blobs = blobs
        self.keys = keys

    def seal(self, path: str, blob_key: str, data: Body) -> SealedBlob:
        provider, dk = self.keys.data_key(path)
        return self.seal_with(path, blob_key, data, provider, dk.plaintext, dk.wrapped,
                              dk.key_id, dk.key_version)  # fmt: skip

    def seal_with(
        self,
        path: str,
        blob_key: str,
        data: Body,
        provider: KeyProvider,
        dek: bytes,
        wrapped: bytes,
        key_id: str,
        key_version: str,
    ) -> SealedBlob:
        flags = FLAG_ZSTD
        compressed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
        nonce = os.urandom(NONCE)
        ct = AESGCM(dek).encrypt(nonce, compressed, _aad(FORMAT_SEALED, flags, path, blob_key))
        ref = KeyRef(provider.name, provider.kind, key_id, key_version)
        head = MAGIC + bytes([FORMAT_SEALED, flags, 0, 0, 0])
        return SealedBlob(head + _header(ref, wrapped) + nonce + ct, ref)

    def open(self, path: str, blob_key: str, blob: bytes) -> bytes:
        if len(blob) < HEADER_LEN or blob[:3] != MAGIC:
            raise BlobCorrupt("blob has no stateward header")
        fmt, flags = blob[3], blob[4]
        if fmt == FORMAT_PLAIN:
            return _decompress(flags, memoryview(blob)[HEADER_LEN:])
        if fmt != FORMAT_SEALED:
            raise BlobCorrupt(f"unsupported blob format {fmt}")
        ref, wrapped, offset = parse_header(blob)
        dek = self.keys.unwrap(ref.provider, wrapped, path)
        nonce = blob[offset : offset + NONCE]
        try:
            payload = AESGCM(dek).decrypt(
                nonce, blob[offset + NONCE :], _aad(fmt, flags, path, blob_key)
            )
        except InvalidTag:
            raise BlobCorrupt(
                "blob does not authenticate (modified, or moved from another path or version)"
            ) from None
        return _decompress(flags, payload)

    def store(self, path: str, blob_key: str, data: Body) -> SealedBlob:
        """Seal and durably write ``data``; the result names the key that protects it."""
        sealed = self.seal(path, blob_key, data)
        self.blobs.put(blob_key, sealed.data)
        return sealed

    def load(self, path: str, blob_key: str) -> bytes:
        return self.open(path, blob_key, self.blobs.get(blob_key))


def _decompress(flags: int, payload: bytes | memoryview) -> bytes:
    if flags & ~FLAG_ZSTD:
        raise BlobCorrupt("blob has unknown flags")
    if not flags & FLAG_ZSTD:
        return bytes(payload)
    try:
        return zstandard.ZstdDecompressor().decompress(payload)
    except zstandard.ZstdError as exc:
        raise BlobCorrupt("blob payload does not decompress") from exc
