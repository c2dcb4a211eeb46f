"""Randomness as an injectable dependency.

OpenTofu draws the pbkdf2 salt and then the AES-GCM nonce from one random stream. Encryptors here
take the same kind of stream (``RandomSource``: ask for *n* bytes, get *n* bytes) so tests can
reproduce OpenTofu's deterministic samples byte for byte, while production uses the OS CSPRNG.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

RandomSource = Callable[[int], bytes]

#: The default: the operating system's CSPRNG.
system_random: RandomSource = os.urandom


class Scripted:
    """A RandomSource that hands out predetermined chunks, in order, and checks their sizes.

    Only for tests and reproducible fixtures: a chunk reused twice would reuse a GCM nonce.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = list(chunks)

    def __call__(self, n: int) -> bytes:
        if not self._chunks:
            raise RuntimeError(f"scripted randomness exhausted (asked for {n} bytes)")
        chunk = self._chunks.pop(0)
        if len(chunk) != n:
            raise RuntimeError(f"scripted randomness: next chunk has {len(chunk)} bytes, not {n}")
        return chunk

    @property
    def remaining(self) -> int:
        """Chunks not yet consumed (a test can assert the encryptor drew all of them)."""
        return len(self._chunks)
