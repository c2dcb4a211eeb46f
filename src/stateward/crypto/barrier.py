"""The barrier between the service and blob storage.

Blob layout (format 1)::

    b"SWB" | format:u8 | flags:u8 | reserved:3 bytes | payload

flags bit 0 = payload is zstd-compressed. The header names the format so later formats
(envelope encryption with a key id and wrapped data key, delta-compressed history) stay
readable side by side. ``path`` and ``blob_key`` are passed to ``seal``/``open`` already so
that the encrypted format can bind them into the AEAD associated data without changing callers.
"""

from __future__ import annotations

import zstandard

from stateward.storage.blobs import BlobStore
from stateward.types import Body

MAGIC = b"SWB"
FORMAT_PLAIN = 1
FLAG_ZSTD = 0x01
HEADER_LEN = 8
ZSTD_LEVEL = 1  # JSON compresses nearly as well at 1, at half the CPU of 3


class BlobCorrupt(Exception):
    """A stored blob does not parse; never fall back to returning raw bytes."""


class Barrier:
    """Seals state bodies into blobs and opens them again."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def seal(self, path: str, blob_key: str, data: Body) -> bytes:
        del path, blob_key  # bound into AEAD associated data once encryption lands
        compressed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
        return MAGIC + bytes([FORMAT_PLAIN, FLAG_ZSTD, 0, 0, 0]) + compressed

    def open(self, path: str, blob_key: str, blob: bytes) -> bytes:
        del path, blob_key
        if len(blob) < HEADER_LEN or blob[:3] != MAGIC:
            raise BlobCorrupt("blob has no stateward header")
        fmt, flags = blob[3], blob[4]
        if fmt != FORMAT_PLAIN:
            raise BlobCorrupt(f"unsupported blob format {fmt}")
        payload = memoryview(blob)[HEADER_LEN:]
        if flags & FLAG_ZSTD:
            try:
                return zstandard.ZstdDecompressor().decompress(payload)
            except zstandard.ZstdError as exc:
                raise BlobCorrupt("blob payload does not decompress") from exc
        return bytes(payload)

    def store(self, path: str, blob_key: str, data: Body) -> int:
        """Seal and durably write ``data``; return the stored size."""
        sealed = self.seal(path, blob_key, data)
        self.blobs.put(blob_key, sealed)
        return len(sealed)

    def load(self, path: str, blob_key: str) -> bytes:
        return self.open(path, blob_key, self.blobs.get(blob_key))
