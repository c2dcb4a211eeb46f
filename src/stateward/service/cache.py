"""A small LRU of verified state bodies, keyed by blob key.

Blobs are immutable, so a body that passed its checksum once can be served again without
reading, decompressing and hashing it: the GET that follows every Terraform write, and the
GETs of ``terraform_remote_state`` consumers, come from memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class BodyCache:
    def __init__(self, max_bytes: int, max_entry: int) -> None:
        self.max_bytes = max_bytes
        self.max_entry = max_entry
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
            return body

    def put(self, key: str, body: bytes) -> None:
        if len(body) > self.max_entry or self.max_bytes <= 0:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = body
            self._size += len(body)
            while self._size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)

    def discard(self, key: str) -> None:
        with self._lock:
            body = self._items.pop(key, None)
            if body is not None:
                self._size -= len(body)

    def clear(self) -> None:
        """Forget every body (the next reads go to the blobs)."""
        with self._lock:
            self._items.clear()
            self._size = 0
