"""Brute-force protection for authentication (issue 3, item 5).

Repeated failed authentications for one *key* block that key for a while. Keys are small tuples:

- ``("addr", ip)`` -- the client address, from :func:`address_key` (IPv4 per address, IPv6 per
  /64, because anyone with one IPv6 address usually controls the whole /64 and could otherwise
  rotate through 2**64 addresses);
- ``("token", name)`` -- the token name the client claims, from :func:`token_key`, so guessing
  the secret of one token from many addresses is throttled too;
- later ``("oidc", issuer)``.

The caller (the authentication middleware) does, per request::

    keys = [address_key(client_ip), token_key(name)]
    retry_after = throttle.check(keys)
    if retry_after is not None:
        -> 429 with Retry-After: ceil(retry_after), without verifying the credential
    if credential is valid:
        throttle.record_success(keys)
    else:
        for block in throttle.record_failure(keys): record / alert it
        -> 401

Design choices, and why:

- **Sliding window of timestamps**, not a token bucket: "more than ``max_failures`` failures in
  the last ``window_seconds``" is the policy operators read in the docs, and a window is exact
  about it. Only the newest ``max_failures + 1`` timestamps are ever needed, so each key costs
  a bounded ``deque``.
- **Exponential back-off**: each block of a key doubles the previous one
  (``base * 2**n``, capped at ``max_block_seconds``). The strike count ``n`` is remembered until
  the key has been quiet (no block, no failure) for ``window_seconds``, so an attacker who just
  waits out each block pays more every time, while a user who mistyped a password once a day
  starts from ``base`` again.
- **Failures while blocked are not counted**: the caller answers 429 before verifying, so these
  only come from requests that were already in flight when the block started; counting them
  would escalate the back-off for a race the client cannot see.
- **Success clears the failure count, not an active block or the strike count**: otherwise an
  attacker sharing a NAT address with a legitimate user would be unblocked by that user.
- **Bounded memory**: at most ``max_keys`` tracked keys in a recency-ordered dict (least
  recently failed or refused first). Adding a key first drops expired entries from the old
  end, then evicts the least recent key. Spraying addresses therefore costs the attacker their
  own oldest entries, never unbounded memory; a blocked key that keeps being tried (every
  request carries its token-name key) stays recent and is not evicted by the spray. Entries
  also expire on their own once their window and block have passed.
- **Per-key state**: a blocked key never affects another key; a request is refused only when
  one of *its own* keys is blocked.
- **Thread safety**: one lock around small O(number of keys) critical sections (no I/O, no
  callbacks under the lock), so a successful client holds it for microseconds.
- **Pure**: the clock is injectable (``time.monotonic`` by default, which is immune to wall
  clock jumps), so the tests use a fake clock and never sleep.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = [
    "Block",
    "FailureThrottle",
    "ThrottleKey",
    "address_key",
    "token_key",
]

ThrottleKey = tuple[str, str]
"""``(kind, value)``, e.g. ``("addr", "192.0.2.7")`` or ``("token", "ci-prod")``."""

MAX_KEY_VALUE_LENGTH = 128
"""Key values derived from client text are truncated to this, so one key costs bounded memory."""

_INVALID_PREFIX = "invalid:"


def address_key(ip: str) -> ThrottleKey:
    """The throttle key for a client address.

    IPv4 addresses are keyed individually; IPv6 addresses by their /64, because one subscriber
    normally gets at least a /64 and can use every address in it. IPv4-mapped IPv6 addresses
    (``::ffff:192.0.2.7``, as seen on dual-stack sockets) count as the IPv4 address, so the
    same client is not tracked under two keys. A zone id (``fe80::1%eth0``) is dropped.
    Strings that are not addresses get their own key (truncated, so a huge header cannot make a
    huge key) rather than an exception: the throttle must never be the thing that fails.
    """
    text = ip.strip()
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return ("addr", (_INVALID_PREFIX + ip)[:MAX_KEY_VALUE_LENGTH])
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return ("addr", str(mapped))
        prefix = ipaddress.IPv6Address((int(addr) >> 64) << 64)
        return ("addr", f"{prefix}/64")
    return ("addr", str(addr))


def token_key(name: str) -> ThrottleKey:
    """The throttle key for a claimed token name (truncated: it is client-controlled text)."""
    return ("token", name[:MAX_KEY_VALUE_LENGTH])


@dataclass(frozen=True, slots=True)
class Block:
    """A block that :meth:`FailureThrottle.record_failure` just started, for logging/alerting.

    ``seconds`` is the block length, ``until`` the clock time it ends (same clock as the
    throttle), ``strike`` how many times this key has been blocked in a row (1 for the first),
    ``failures`` the failures in the window that triggered it.
    """

    key: ThrottleKey
    seconds: float
    until: float
    strike: int
    failures: int


@dataclass(slots=True)
class _Entry:
    """Per-key state. ``failures`` holds at most ``max_failures + 1`` timestamps."""

    failures: deque[float]
    blocked_until: float = 0.0
    strikes: int = 0
    last_activity: float = field(default=0.0)


class FailureThrottle:
    """Tracks failed authentications per key and blocks keys that fail too often.

    More than ``max_failures`` failures of one key within ``window_seconds`` block it for
    ``base_block_seconds * 2**(strike - 1)`` seconds, at most ``max_block_seconds``. See the
    module docstring for the reasoning behind each choice.
    """

    def __init__(
        self,
        max_failures: int = 10,
        window_seconds: float = 300,
        base_block_seconds: float = 30,
        max_block_seconds: float = 900,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        if base_block_seconds <= 0:
            raise ValueError("base_block_seconds must be positive")
        if max_block_seconds < base_block_seconds:
            raise ValueError("max_block_seconds must be at least base_block_seconds")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_failures = max_failures
        self.window_seconds = float(window_seconds)
        self.base_block_seconds = float(base_block_seconds)
        self.max_block_seconds = float(max_block_seconds)
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # Ordered least recently failed first; see _touch().
        self._entries: OrderedDict[ThrottleKey, _Entry] = OrderedDict()

    # -- public API -------------------------------------------------------------------------

    def check(self, keys: Iterable[ThrottleKey]) -> float | None:
        """Seconds until the request may be retried if any of ``keys`` is blocked, else None.

        Called *before* verifying the credential, so a blocked client costs no hashing and
        learns nothing about whether its guess was right. With several blocked keys the
        longest remaining block is returned, since the request is refused until all end.
        """
        now = self._clock()
        retry_after: float | None = None
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is None:
                    continue
                if self._expired(entry, now):
                    del self._entries[key]
                    continue
                remaining = entry.blocked_until - now
                if remaining > 0:
                    # A refused request keeps its block "recent", so spraying fresh addresses
                    # cannot push an attacked key out of the table while it is still in use.
                    self._entries.move_to_end(key)
                    if retry_after is None or remaining > retry_after:
                        retry_after = remaining
        return retry_after

    def record_failure(self, keys: Iterable[ThrottleKey]) -> list[Block]:
        """Record one failed authentication for each of ``keys``; return blocks it started.

        Keys that are already blocked are left alone (see the module docstring).
        """
        now = self._clock()
        blocks: list[Block] = []
        with self._lock:
            for key in dict.fromkeys(keys):  # a key listed twice is still one failure
                entry = self._entries.get(key)
                if entry is not None and self._expired(entry, now):
                    del self._entries[key]
                    entry = None
                if entry is None:
                    entry = self._insert(key, now)
                elif entry.blocked_until > now:
                    self._entries.move_to_end(key)  # still in use: keep it (see check())
                    continue
                self._touch(key, entry, now)
                failures = entry.failures
                failures.append(now)
                horizon = now - self.window_seconds
                while failures and failures[0] <= horizon:
                    failures.popleft()
                if len(failures) > self.max_failures:
                    entry.strikes += 1
                    seconds = self._block_seconds(entry.strikes)
                    entry.blocked_until = now + seconds
                    blocks.append(
                        Block(
                            key=key,
                            seconds=seconds,
                            until=entry.blocked_until,
                            strike=entry.strikes,
                            failures=len(failures),
                        )
                    )
                    # The block answers these failures; the next block needs a fresh run.
                    failures.clear()
        return blocks

    def record_success(self, keys: Iterable[ThrottleKey]) -> None:
        """Clear the failure counts of ``keys``; active blocks and strike counts stay."""
        now = self._clock()
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is None:
                    continue
                entry.failures.clear()
                if self._expired(entry, now) or (entry.strikes == 0 and entry.blocked_until <= now):
                    del self._entries[key]

    def __len__(self) -> int:
        """Number of tracked keys (including expired ones not yet swept)."""
        with self._lock:
            return len(self._entries)

    def sweep(self) -> int:
        """Drop all expired entries; return how many. Optional: expiry is also lazy."""
        now = self._clock()
        with self._lock:
            dead = [k for k, e in self._entries.items() if self._expired(e, now)]
            for key in dead:
                del self._entries[key]
            return len(dead)

    # -- internals (call with the lock held) ------------------------------------------------

    def _block_seconds(self, strike: int) -> float:
        # Cap the exponent first so a long-lived attacker cannot overflow the float.
        exponent = min(strike - 1, 64)
        return min(self.base_block_seconds * (2.0**exponent), self.max_block_seconds)

    def _expired(self, entry: _Entry, now: float) -> bool:
        """Quiet for a whole window after its last failure and after its block ended."""
        return now >= max(entry.last_activity, entry.blocked_until) + self.window_seconds

    def _touch(self, key: ThrottleKey, entry: _Entry, now: float) -> None:
        entry.last_activity = now
        self._entries.move_to_end(key)

    def _insert(self, key: ThrottleKey, now: float) -> _Entry:
        """Add a fresh entry, first making room: expired entries, then the least recent."""
        entries = self._entries
        while entries:
            oldest_key, oldest = next(iter(entries.items()))
            if not self._expired(oldest, now):
                break
            del entries[oldest_key]
        while len(entries) >= self.max_keys:
            entries.popitem(last=False)
        entry = _Entry(failures=deque(maxlen=self.max_failures + 1), last_activity=now)
        entries[key] = entry
        return entry
