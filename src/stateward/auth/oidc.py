"""Verifying CI OIDC tokens (GitHub Actions, GitLab ``id_tokens``) and mapping them to roles.

A CI job proves who it is with a short-lived JWT signed by its platform; no long-lived secret
has to be stored in the CI system. Trust rests on three checks, all mandatory: the signature
against the issuer's published keys, the audience (so a token minted for another service is
useless here) and the claim rules (any repository on github.com can obtain a valid token from
the same issuer, so the rules, not the signature, decide *whose* token it is).

The authenticator (``auth/authenticator.py``) uses :func:`looks_like_jwt` to tell JWTs from
stateward tokens and :meth:`OidcVerifier.verify` to check them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from stateward.auth._jwks import Fetch, KeyCache, OidcUnavailable, fetch_url
from stateward.config.oidc import ClaimRule, OidcIssuer

__all__ = [
    "ClaimRule",
    "OidcIdentity",
    "OidcIssuer",
    "OidcUnavailable",
    "OidcVerifier",
    "looks_like_jwt",
]

log = logging.getLogger(__name__)

#: Real CI tokens are 1-2 KiB; anything far larger is refused before parsing.
MAX_TOKEN_CHARS = 16 * 1024
#: Claims copied into the identity (audit, messages). Others may hold personal data.
SAFE_CLAIMS = (
    "sub", "repository", "repository_owner", "ref", "ref_type", "workflow", "job_workflow_ref",
    "environment", "event_name", "project_path", "namespace_path", "pipeline_source", "run_id",
)  # fmt: skip
_JWT_RE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """A verified CI job: ``name`` is stable per job identity (issuer host and ``sub``)."""

    name: str
    roles: tuple[str, ...]
    paths: tuple[str, ...]  # empty: the roles' own grants apply
    rule: str
    claims: Mapping[str, str]


def _b64url_json(part: str) -> Any:
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    return json.loads(raw)


def looks_like_jwt(value: str) -> bool:
    """Cheap syntactic test (three base64url parts, a JSON header naming ``alg``), so that an
    authenticator can route a credential to one verifier without trying both."""
    if len(value) > MAX_TOKEN_CHARS or not _JWT_RE.fullmatch(value):
        return False
    try:
        header = _b64url_json(value.split(".", 1)[0])
    except (ValueError, binascii.Error):
        return False
    return isinstance(header, dict) and isinstance(header.get("alg"), str)


def _time_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise jwt.InvalidTokenError(f"{name} is not a number")
    return float(value)


def _check_times(claims: Mapping[str, Any], now: float, leeway: int) -> str | None:
    """The reason a token is outside its validity window, or None."""
    exp = _time_claim(claims, "exp")
    nbf = _time_claim(claims, "nbf")
    iat = _time_claim(claims, "iat")
    if exp is None:
        return "no exp claim"
    if now > exp + leeway:
        return "expired"
    if nbf is not None and now < nbf - leeway:
        return "not yet valid (nbf)"
    if iat is not None and now < iat - leeway:
        return "issued in the future (iat)"
    return None


class OidcVerifier:
    """Verifies tokens from the configured issuers. Thread-safe; key sets are cached per
    issuer (see ``_jwks``). ``fetch`` and ``clock`` are replaceable for tests."""

    def __init__(
        self,
        issuers: Sequence[OidcIssuer],
        fetch: Fetch = fetch_url,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuers = {i.issuer: i for i in issuers}
        if len(self._issuers) != len(issuers):
            raise ValueError("each OIDC issuer may be configured only once")
        self._keys = {i.issuer: KeyCache(i.issuer, i.jwks_url, fetch, clock) for i in issuers}

    def verify(self, token: str, now: float | None = None) -> OidcIdentity | None:
        """The identity for a valid token that a rule maps to roles, else None.

        Raises :class:`OidcUnavailable` when the issuer's keys cannot be fetched: the token
        may be valid, so the caller should answer 503, not 401. The token is never logged.
        """
        now = time.time() if now is None else now
        if not looks_like_jwt(token):
            return None
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        iss = unverified.get("iss")
        config = self._issuers.get(iss) if isinstance(iss, str) else None
        if config is None:
            return None  # not ours; the issuer name is client-controlled, so not logged
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in config.algorithms or not isinstance(kid, str):
            return self._refuse(config, f"algorithm {alg!r} not allowed or no kid")
        key = self._keys[config.issuer].get(kid)
        if key is None or not key.fits(alg):
            return self._refuse(config, "unknown signing key or key does not fit alg")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=config.audiences,
                issuer=config.issuer,
                options={
                    "require": ["iss", "aud", "sub", "exp"],
                    "verify_exp": False,  # checked below against ``now``
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
            reason = _check_times(claims, now, config.leeway_seconds)
        except jwt.PyJWTError as exc:
            return self._refuse(config, type(exc).__name__)
        if reason is not None:
            return self._refuse(config, reason)
        return self._identity(config, claims)

    def _identity(self, config: OidcIssuer, claims: Mapping[str, Any]) -> OidcIdentity | None:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            return self._refuse(config, "sub is not a non-empty string")
        for rule in config.rules:
            if rule.matches(claims):
                host = urllib.parse.urlsplit(config.issuer).hostname
                safe = {k: v[:256] for k in SAFE_CLAIMS if isinstance(v := claims.get(k), str)}
                return OidcIdentity(
                    name=f"oidc:{host}:{sub[:256]}",
                    roles=tuple(rule.roles),
                    paths=tuple(rule.paths),
                    rule=rule.name,
                    claims=safe,
                )
        return self._refuse(config, f"no rule matches sub {sub[:256]!r}")

    @staticmethod
    def _refuse(config: OidcIssuer, reason: str) -> None:
        log.info("OIDC token from %s refused: %s", config.issuer, reason)
        return None
