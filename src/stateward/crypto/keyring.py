"""Which key protects which path, and the data-key caches that keep KMS calls rare.

- **Selection**: ``[[encryption]]`` rules map path globs to provider names, first match wins,
  so ``prod/**`` and ``dev/**`` can use different KEKs; paths matching no rule use the
  ``default`` provider.
- **Write cache** (the S3 Bucket Key idea): one data key per (provider, path) is reused for
  up to ``max_uses`` blobs or ``max_age`` seconds, whichever comes first, then a new one is
  generated. Every blob still gets a fresh random nonce, and the path stays bound in both the
  KMS encryption context and the blob's associated data. Per-path keys also keep
  crypto-shredding exact: purging a path removes every wrapped copy of its data keys.
- **Read cache**: unwrapped data keys by their wrapped bytes, bounded in size and age, so
  reading history does not call the KMS per version.

Both caches hold plaintext keys in memory only, for bounded times; :meth:`forget_path` and
:meth:`clear` drop them (purge, rotation).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from stateward.crypto.providers.base import DataKey, KeyDenied, KeyProvider, WrappedKey

PATH_CONTEXT = "stateward:path"
READ_CACHE_ENTRIES = 4096


def context_for(path: str) -> dict[str, str]:
    return {PATH_CONTEXT: path}


@dataclass
class _Cached:
    key: DataKey
    created: float
    uses: int = 0


class KeyRing:
    def __init__(
        self,
        providers: Mapping[str, KeyProvider],
        rules: Sequence[tuple[str, str]],
        default: str,
        max_age: float = 300.0,
        max_uses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        match: Callable[[str, str], bool] | None = None,
    ) -> None:
        """``rules`` are ``(path glob, provider name)``, first match wins; ``match(glob,
        path)`` is the glob semantics (the domain's ``glob_match``), needed when there are
        rules."""
        if rules and match is None:
            raise ValueError("encryption rules need a glob matcher")
        if default not in providers:
            raise KeyDenied(f"default key provider {default!r} is not configured")
        for _glob, name in rules:
            if name not in providers:
                raise KeyDenied(f"encryption rule names unknown key provider {name!r}")
        self.providers = dict(providers)
        self.rules = list(rules)
        self.match = match
        self.default = default
        self.max_age = max_age
        self.max_uses = max_uses
        self.clock = clock
        self._lock = threading.Lock()
        self._write: dict[tuple[str, str], _Cached] = {}
        self._read: OrderedDict[tuple[str, bytes], tuple[bytes, float]] = OrderedDict()
        #: Data keys generated (one provider call each) — the KMS economy benchmark reads it.
        self.generated = 0

    def provider_for(self, path: str) -> KeyProvider:
        match = self.match
        for glob, name in self.rules:
            if match is not None and match(glob, path):
                return self.providers[name]
        return self.providers[self.default]

    def provider(self, name: str) -> KeyProvider:
        found = self.providers.get(name)
        if found is None:
            raise KeyDenied(f"blob names key provider {name!r}, which is not configured")
        return found

    def data_key(self, path: str) -> tuple[KeyProvider, DataKey]:
        """The data key to encrypt a new blob of ``path`` with (cached, bounded)."""
        provider = self.provider_for(path)
        slot = (provider.name, path)
        now = self.clock()
        with self._lock:
            cached = self._write.get(slot)
            if (
                cached is not None
                and cached.uses < self.max_uses
                and now - cached.created < self.max_age
            ):
                cached.uses += 1
                return provider, cached.key
        # Generated outside the lock: a slow KMS must not stall other paths. Two writers of
        # one path may both generate; the last one cached wins, both keys stay valid.
        key = provider.generate(context_for(path))
        with self._lock:
            self.generated += 1
            self._write[slot] = _Cached(key, now, 1)
            if len(self._write) > 65_536:
                self._expire_write(now)
        return provider, key

    def unwrap(self, provider_name: str, key: WrappedKey, path: str) -> bytes:
        slot = (provider_name, key.wrapped)
        now = self.clock()
        with self._lock:
            hit = self._read.get(slot)
            if hit is not None and now - hit[1] < self.max_age:
                self._read.move_to_end(slot)
                return hit[0]
        plaintext = self.provider(provider_name).unwrap(key, context_for(path))
        with self._lock:
            self._read[slot] = (plaintext, now)
            while len(self._read) > READ_CACHE_ENTRIES:
                self._read.popitem(last=False)
        return plaintext

    def forget_path(self, path: str) -> None:
        """Drop cached keys of ``path`` (after a purge: nothing may re-use them)."""
        with self._lock:
            for slot in [s for s in self._write if s[1] == path]:
                del self._write[slot]
            self._read.clear()

    def clear(self) -> None:
        with self._lock:
            self._write.clear()
            self._read.clear()

    def _expire_write(self, now: float) -> None:
        for slot in [s for s, c in self._write.items() if now - c.created >= self.max_age]:
            del self._write[slot]
