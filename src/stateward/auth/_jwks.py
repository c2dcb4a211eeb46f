"""Fetching and caching an issuer's signing keys (JWKS) for :mod:`stateward.auth.oidc`.

The key set is the only thing that makes a CI token trustworthy, so every failure to obtain it
raises :class:`OidcUnavailable` (the caller answers 503) instead of ever accepting a token
unchecked. Fetches are bounded (timeout, size, https only) and rate limited, because the
``kid`` that triggers a refresh comes from an unauthenticated client.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from stateward.common.net import check_url, is_loopback_host
from stateward.domain.errors import Unavailable

FETCH_TIMEOUT = 5.0
MAX_DOCUMENT_BYTES = 1024 * 1024
#: Keys are re-read this often even when every ``kid`` is known, to drop revoked keys.
JWKS_TTL = 600.0
#: At most one fetch per issuer in this interval, whatever ``kid`` values clients send.
MIN_REFRESH_INTERVAL = 30.0
#: ``kty`` each accepted ``alg`` needs, so a key is never used with another family's algorithm.
ALG_KTY = {
    "RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
    "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
    "ES256": "EC", "ES384": "EC", "ES512": "EC",
    "EdDSA": "OKP",
}  # fmt: skip
_EC_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}

Fetch = Callable[[str], bytes]


class OidcUnavailable(Unavailable):
    """The issuer's keys could not be obtained; refuse with 503 and let the client retry."""






class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could leave https or the issuer's host; identity providers do not need it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch_url(url: str) -> bytes:
    """GET ``url`` with a timeout and a size limit; any failure is :class:`OidcUnavailable`."""
    try:
        check_url(url)
    except ValueError as exc:
        raise OidcUnavailable(f"refusing to fetch keys: {exc}") from exc
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if is_loopback_host(urllib.parse.urlsplit(url).hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))  # a proxy cannot reach our loopback
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with opener.open(request, timeout=FETCH_TIMEOUT) as response:
            if response.status != 200:
                raise OidcUnavailable(f"{url} answered HTTP {response.status}")
            body: bytes = response.read(MAX_DOCUMENT_BYTES + 1)
    except urllib.error.HTTPError as exc:  # 4xx/5xx, and 3xx since redirects are refused
        exc.close()
        raise OidcUnavailable(f"{url} answered HTTP {exc.code}") from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise OidcUnavailable(f"cannot fetch {url}: {exc}") from exc
    if len(body) > MAX_DOCUMENT_BYTES:
        raise OidcUnavailable(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    return body


def _json_object(body: bytes, url: str) -> Mapping[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise OidcUnavailable(f"{url} did not answer JSON") from exc
    if not isinstance(doc, dict):
        raise OidcUnavailable(f"{url} did not answer a JSON object")
    return doc


@dataclass(frozen=True, slots=True)
class SigningKey:
    kty: str
    crv: str | None
    alg: str | None  # the JWK's own ``alg``, if it names one
    key: Any  # a cryptography public key object

    def fits(self, alg: str) -> bool:
        """Whether a token signed with ``alg`` may be checked with this key."""
        if ALG_KTY.get(alg) != self.kty or (self.alg is not None and self.alg != alg):
            return False
        return alg not in _EC_CURVE or self.crv == _EC_CURVE[alg]


def parse_jwks(body: bytes, url: str) -> dict[str, SigningKey]:
    """Public signing keys by ``kid``. Symmetric, encryption-only, kid-less and unsupported
    keys are skipped: a JWKS is public, so a symmetric key in it would be a shared secret."""
    entries = _json_object(body, url).get("keys")
    if not isinstance(entries, list):
        raise OidcUnavailable(f"{url} is not a JWKS (no 'keys' list)")
    keys: dict[str, SigningKey] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        kty, alg = entry.get("kty"), entry.get("alg")
        if kty not in ("RSA", "EC", "OKP") or entry.get("use", "sig") != "sig":
            continue
        if alg is not None and ALG_KTY.get(alg) != kty:
            continue
        try:
            public = jwt.PyJWK(entry).key
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
        crv = entry.get("crv")
        keys[entry["kid"]] = SigningKey(kty, crv if isinstance(crv, str) else None, alg, public)
    return keys


def discover_jwks_url(issuer: str, fetch: Fetch) -> str:
    """``jwks_uri`` from the issuer's discovery document, which must name the same issuer."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    doc = _json_object(fetch(url), url)
    if doc.get("issuer") != issuer:
        raise OidcUnavailable(f"{url} names another issuer")
    jwks_uri = doc.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise OidcUnavailable(f"{url} has no jwks_uri")
    try:
        return check_url(jwks_uri)
    except ValueError as exc:
        raise OidcUnavailable(f"{url}: jwks_uri {exc}") from exc


@dataclass
class KeyCache:
    """One issuer's keys. The lock is held while fetching so that concurrent requests wait for
    one fetch rather than each starting their own."""

    issuer: str
    jwks_url: str | None
    fetch: Fetch
    clock: Callable[[], float] = time.monotonic
    keys: dict[str, SigningKey] | None = None
    fetched_at: float = 0.0
    last_attempt: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, kid: str) -> SigningKey | None:
        """The key for ``kid``, refreshing when stale or when ``kid`` is unknown (at most once
        per :data:`MIN_REFRESH_INTERVAL`). Raises :class:`OidcUnavailable` if no fresh key set
        can be had, or if a refresh for an unknown ``kid`` failed (it may be a rotation)."""
        with self.lock:
            now = self.clock()
            stale = self.keys is None or now - self.fetched_at >= JWKS_TTL
            if stale or kid not in (self.keys or {}):
                if self.last_attempt is None or now - self.last_attempt >= MIN_REFRESH_INTERVAL:
                    self.last_attempt = now
                    self.keys = self._load()
                    self.fetched_at = now
                elif stale:
                    raise OidcUnavailable(f"signing keys of {self.issuer} are unavailable")
            return (self.keys or {}).get(kid)

    def _load(self) -> dict[str, SigningKey]:
        if self.jwks_url is None:
            self.jwks_url = discover_jwks_url(self.issuer, self.fetch)
        return parse_jwks(self.fetch(self.jwks_url), self.jwks_url)
