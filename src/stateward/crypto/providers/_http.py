"""HTTP plumbing shared by the HTTP-API key providers (Vault/OpenBao transit, Cloud KMS).

A small ``http.client`` wrapper rather than a client library: no proxies from the environment,
no redirects, bounded responses, separate connect/read timeouts, retries with jittered backoff
for transient failures only, and messages that never echo a token.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from stateward.common.text import one_line
from stateward.crypto.providers.base import KeyDenied, KeyUnavailable

MAX_RESPONSE_BYTES = 1024 * 1024
USER_AGENT = "stateward"
_T = TypeVar("_T")

# -- shared helpers (also used by the GCP provider) -------------------------------------------








def canonical_context(context: Mapping[str, str]) -> bytes:
    """The context as canonical JSON (sorted keys, compact, ASCII with ``\\u`` escapes): the same
    bytes as ``local.context_bytes``. Never change it: GCP binds these bytes as AAD."""
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode("ascii")


def b64decode_strict(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def read_secret(who: str, what: str, *, env: str | None, file: Path | None) -> str:
    """A bearer secret from ``file`` (re-read every call) or the environment variable ``env``.

    Refuses values that cannot be sent as an HTTP header value (``http.client`` would put the
    value itself into its error message)."""
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise KeyDenied(f"{who}: cannot read the {what} file {str(file)!r}: {reason}") from None
        source = f"file {str(file)!r}"
    else:
        value = os.environ.get(env or "", "").strip()
        source = f"${env}"
    if not value:
        raise KeyDenied(f"{who}: no {what} (set {source})")
    if not all(33 <= ord(ch) <= 126 for ch in value):
        raise KeyDenied(f"{who}: the {what} from {source} contains invalid characters")
    return value


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    json: Any  # the parsed body, or None if it was not JSON
    retry_after: str | None


class HttpJsonClient:
    """JSON over HTTP(S) with ``http.client``: one connection per request, separate connect
    and read timeouts, no proxies, no redirects, a bounded response size."""

    def __init__(
        self,
        base_url: str,
        *,
        who: str,
        ca_file: Path | None,
        connect_timeout: float,
        read_timeout: float,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        parts = urlsplit(base_url)
        self.who = who
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_response_bytes = max_response_bytes
        self.ssl_context: ssl.SSLContext | None = None
        if self.https:
            try:
                self.ssl_context = ssl.create_default_context(
                    cafile=str(ca_file) if ca_file is not None else None
                )
            except (OSError, ssl.SSLError) as exc:
                raise KeyDenied(
                    f"{who}: cannot load ca_file {str(ca_file)!r}: "
                    f"{one_line(getattr(exc, 'strerror', None) or type(exc).__name__, 200)}"
                ) from None

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        payload: Mapping[str, Any] | None = None,
    ) -> HttpReply:
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        all_headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **headers}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.connect_timeout, context=self.ssl_context
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        where = f"{self.host}:{self.port}"
        try:
            conn.connect()
            if conn.sock is not None:
                conn.sock.settimeout(self.read_timeout)
            conn.request(method, self.prefix + path, body=body, headers=all_headers)
            response = conn.getresponse()
            raw = response.read(self.max_response_bytes + 1)
            status = response.status
            retry_after = response.getheader("Retry-After")
        except ssl.SSLCertVerificationError as exc:
            reason = one_line(exc.verify_message or "certificate verify failed", 200)
            raise KeyDenied(
                f"{self.who}: TLS certificate of {where} not trusted ({reason}); "
                "check ca_file and the address"
            ) from None
        except TimeoutError:
            raise KeyUnavailable(f"{self.who}: {where} timed out") from None
        except (OSError, http.client.HTTPException) as exc:
            reason = (exc.strerror if isinstance(exc, OSError) else None) or type(exc).__name__
            detail = one_line(reason, 200)
            raise KeyUnavailable(f"{self.who}: cannot reach {where} ({detail})") from None
        finally:
            conn.close()
        if len(raw) > self.max_response_bytes:
            raise KeyUnavailable(
                f"{self.who}: response from {where} larger than {self.max_response_bytes} bytes"
            )
        try:
            parsed = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        return HttpReply(status=status, json=parsed, retry_after=retry_after)


def with_retries(
    attempts: int, fn: Callable[[], _T], *, sleep: Callable[[float], None] = time.sleep
) -> _T:
    """Call ``fn``; on :class:`KeyUnavailable` try again (``attempts`` in total) with a short
    jittered backoff. Other errors are final."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except KeyUnavailable:
            if attempt >= attempts:
                raise
            sleep(random.uniform(0.05, min(1.0, 0.1 * 2**attempt)))  # noqa: S311 -- jitter
    raise AssertionError("unreachable")  # pragma: no cover


class CallCounter:
    """Thread-safe per-operation API call counts, exposed as the provider's ``calls``."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, op: str) -> None:
        with self._lock:
            self.calls[op] = self.calls.get(op, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls)


class HttpProviderConfig(Protocol):
    """The settings every HTTP-API key provider has (both configs are frozen models)."""

    @property
    def key_name(self) -> str: ...
    @property
    def ca_file(self) -> Path | None: ...
    @property
    def connect_timeout_seconds(self) -> float: ...
    @property
    def read_timeout_seconds(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def version_cache_seconds(self) -> float: ...


_C = TypeVar("_C", bound=HttpProviderConfig)


class HttpKeyProvider(Generic[_C]):
    """What the Vault transit and Cloud KMS providers share: the HTTP client, per-operation
    call counts, retries of transient failures, and a short cache of the key's current
    version (asked for on every new data key, answered by every encrypt anyway)."""

    kind: str

    def __init__(
        self, name: str, config: _C, base_url: str, *, sleep: Callable[[float], None]
    ) -> None:
        self.name = name
        self.config = config
        self._who = f"{self.kind} key provider {name!r}"
        self._http = HttpJsonClient(
            base_url,
            who=self._who,
            ca_file=config.ca_file,
            connect_timeout=config.connect_timeout_seconds,
            read_timeout=config.read_timeout_seconds,
        )
        self._sleep = sleep
        self._counter = CallCounter()
        #: API calls made, by operation.
        self.calls = self._counter.calls
        self._version_lock = threading.Lock()
        self._version: tuple[float, str] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, key={self.config.key_name!r})"

    def call_counts(self) -> dict[str, int]:
        return self._counter.snapshot()

    def _cached_version(self) -> str | None:
        """The current key version if it was learnt within ``version_cache_seconds``."""
        with self._version_lock:
            cached = self._version
        if cached is not None and time.monotonic() - cached[0] < self.config.version_cache_seconds:
            return cached[1]
        return None

    def _remember_version(self, version: str) -> None:
        with self._version_lock:
            self._version = (time.monotonic(), version)

    def _retried(self, op: str, once: Callable[[], _T]) -> _T:
        """One counted API operation, retried (``max_attempts``) on transient failures."""
        self._counter.count(op)
        return with_retries(self.config.max_attempts, once, sleep=self._sleep)
