"""Blob stores: an untrusted, tiny interface (put/get/delete/list), ciphertext only.

The file store writes atomically (temp file, fsync, rename, fsync the directory), so a crash
leaves either the old name absent or the full new blob, never a torn one.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

_KEY_RE = re.compile(r"^[a-f0-9]{32}$")


class BlobStore(Protocol):
    """What the barrier needs from blob storage."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def list(self) -> Iterator[tuple[str, float]]:
        """Yield ``(key, age_seconds)`` for every stored blob."""
        ...


class FileBlobStore:
    """One file per blob under ``root/ab/<key>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        if not _KEY_RE.match(key):
            raise ValueError("invalid blob key")
        return self.root / key[:2] / key

    def put(self, key: str, data: bytes) -> None:
        final = self._path(key)
        directory = final.parent
        directory.mkdir(exist_ok=True, mode=0o700)
        tmp = directory / f".{key}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def collect_partial(self, min_age: float) -> int:
        """Remove temp files left by a crash mid-``put`` once older than ``min_age``.

        An optional power (not in :class:`BlobStore`): object stores have no partial writes.
        """
        now = time.time()
        count = 0
        for tmp in self.root.glob("*/.*.tmp"):
            try:
                if now - tmp.stat().st_mtime >= min_age:
                    tmp.unlink()
                    count += 1
            except FileNotFoundError:
                continue
        return count

    def list(self) -> Iterator[tuple[str, float]]:
        now = time.time()
        for sub in sorted(self.root.iterdir()):
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if _KEY_RE.match(f.name):
                    try:
                        yield f.name, now - f.stat().st_mtime
                    except FileNotFoundError:
                        continue
