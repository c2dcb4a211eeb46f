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
from typing import Annotated, Any, Literal

import jwt
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from stateward.auth._jwks import (
    Fetch,
    KeyCache,
    OidcUnavailable,
    check_url,
    fetch_url,
)
from stateward.globs import validate_glob
from stateward.policy_model import ROLE_NAME_RE

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
_RULE_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")

#: Asymmetric algorithms only: ``none`` accepts anything, and HS* with a public JWKS would let
#: anyone who read the public key sign tokens.
Algorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]


def _check_url(value: str) -> str:
    return check_url(value)


def _check_role(value: str) -> str:
    """Same alphabet as token roles; built-in roles are allowed (a CI job may be a writer)."""
    if not ROLE_NAME_RE.fullmatch(value):
        raise ValueError(f"role name {value!r} must be 1-64 characters of a-z 0-9 -")
    return value


def _check_rule_name(value: str) -> str:
    if not _RULE_NAME_RE.fullmatch(value):
        raise ValueError(f"rule name {value!r} must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return value


def _check_claim_values(value: str | list[str]) -> str | list[str]:
    values = [value] if isinstance(value, str) else value
    if not values or any(not v for v in values):
        raise ValueError("claim values must be non-empty strings (a list needs one or more)")
    return value


Url = Annotated[str, AfterValidator(_check_url)]
RoleRef = Annotated[str, AfterValidator(_check_role)]
ClaimValues = Annotated[str | list[str], AfterValidator(_check_claim_values)]


class ClaimRule(BaseModel):
    """Grant ``roles`` (limited to ``paths`` if given) to tokens whose every listed claim
    equals the value, or one of the values. Matching is exact: no globs, no prefixes, so
    ``acme/infra`` never matches ``acme/infra-fork``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, AfterValidator(_check_rule_name)]
    # At least one claim: a rule without claims would admit every job on the platform.
    claims: dict[str, ClaimValues] = Field(min_length=1)
    roles: list[RoleRef] = Field(min_length=1, max_length=32)
    paths: list[Annotated[str, AfterValidator(validate_glob)]] = Field(
        default_factory=list, max_length=64
    )

    def matches(self, claims: Mapping[str, Any]) -> bool:
        for key, expected in self.claims.items():
            actual = claims.get(key)
            allowed = [expected] if isinstance(expected, str) else expected
            if not isinstance(actual, str) or actual not in allowed:
                return False
        return True


class OidcIssuer(BaseModel):
    """One trusted token issuer, its audience and the rules mapping its tokens to roles."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    issuer: Url
    audience: str | list[str]
    #: Default: ``jwks_uri`` from ``<issuer>/.well-known/openid-configuration``.
    jwks_url: Url | None = None
    algorithms: list[Algorithm] = Field(default=["RS256", "ES256"], min_length=1)
    leeway_seconds: int = Field(default=60, ge=0, le=300)
    rules: list[ClaimRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> OidcIssuer:
        if not self.audiences or any(not a for a in self.audiences):
            raise ValueError("audience must be one or more non-empty strings")
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique within an issuer")
        return self

    @property
    def audiences(self) -> list[str]:
        return [self.audience] if isinstance(self.audience, str) else list(self.audience)


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
