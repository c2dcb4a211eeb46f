"""Turning a request's credentials into a :class:`Principal` (or a clear refusal).

One entry point, :meth:`Authenticator.authenticate`, used by every transport, so the protocol
endpoint and the JSON API cannot disagree about who is asking. The order is fixed:

1. parse the ``Authorization`` header (Basic: the password is the credential, the username is
   free text that may name the token; Bearer: the credential itself);
2. refuse with 429 if the client address is blocked by the throttle -- *before* any hashing,
   so a blocked attacker costs almost nothing; a blocked claimed token *name* refuses only
   wrong credentials (names are not secret: a hard block would let anyone lock a team out);
3. a JWT goes to the OIDC verifier, anything else to the token store;
4. with no credential at all, a verified client certificate mapped in ``cert_principals`` is
   the principal; otherwise 401.

Failures are counted per address and per claimed name; a block that starts is logged and
recorded as an event (individual failures are only logged: recording each one would let an
attacker turn guesses into database writes). Nothing here ever logs or echoes a credential.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Protocol

from stateward import metrics
from stateward.auth.oidc import OidcUnavailable, OidcVerifier, looks_like_jwt
from stateward.auth.throttle import FailureThrottle, ThrottleKey, address_key, token_key
from stateward.config import Settings
from stateward.crypto.tokens import PREFIX as TOKEN_PREFIX
from stateward.domain.errors import Throttled, Unauthorized, Unavailable
from stateward.domain.principal import Principal

log = logging.getLogger("stateward.auth")

#: Longer headers are refused unparsed (a real CI JWT is 1-2 KiB; our tokens are 48 chars).
MAX_AUTHORIZATION = 16 * 1024
MISSING = "authentication required: send a stateward token or CI OIDC token as the password"
INVALID = "invalid, expired or revoked credentials"


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the transport knows about a request, before authentication."""

    authorization: str | None
    source: str  # the client address (after trusted-proxy resolution)
    user_agent: str = ""
    cert_subject: str = ""  # CN of a *verified* client certificate, else ""


def parse_authorization(header: str | None) -> tuple[str, str] | None:
    """``(claimed_name, secret)`` from an Authorization header, None when there is none.

    Raises :class:`Unauthorized` for a header that is present but unusable; the message
    never repeats any of it."""
    if header is None or not header.strip():
        return None
    if len(header) > MAX_AUTHORIZATION:
        raise Unauthorized("Authorization header too long")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        if not value:
            raise Unauthorized("empty Bearer credential")
        return "", value
    if scheme.lower() != "basic":
        raise Unauthorized("unsupported Authorization scheme: use Basic or Bearer")
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Unauthorized("malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep or not password:
        # Some tools put a lone token in the username; accept it as the secret.
        user, password = "", user
    if not password:
        raise Unauthorized(MISSING)
    if user.startswith(TOKEN_PREFIX) or looks_like_jwt(user):
        user = ""  # a secret pasted as the username is never used as a name (or logged)
    return user, password


class TokenVerifier(Protocol):
    """What authentication needs of the token store (``service/tokens.py``)."""

    def authenticate_token(self, secret: str, now: float | None = None) -> TokenIdentity | None:
        """The active token ``secret`` belongs to, or None."""

    def record_auth_block(self, source: str, key: str, seconds: float, strike: int) -> None:
        """Record that the throttle blocked an address or claimed name (names, never a
        secret)."""


class TokenIdentity(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def roles(self) -> tuple[str, ...]: ...
    @property
    def paths(self) -> tuple[str, ...]: ...


class Authenticator:
    """Thread-safe; call :meth:`authenticate` from a worker thread (it may hit the database
    or fetch an issuer's keys)."""

    def __init__(
        self,
        tokens: TokenVerifier,
        settings: Settings,
        oidc: OidcVerifier | None = None,
        throttle: FailureThrottle | None = None,
    ) -> None:
        self.tokens = tokens
        self.oidc = oidc
        if oidc is None and settings.oidc_issuers:
            self.oidc = OidcVerifier(settings.oidc_issuers)
        self.throttle = throttle or FailureThrottle(
            max_failures=settings.auth_failure_limit,
            window_seconds=settings.auth_failure_window_seconds,
            base_block_seconds=settings.auth_block_seconds,
        )
        self.certs = {c.subject_cn: c for c in settings.cert_principals}

    def authenticate(self, facts: RequestFacts) -> Principal:
        parsed = parse_authorization(facts.authorization)
        if parsed is None:
            return self._certificate(facts)
        name, secret = parsed
        keys: list[ThrottleKey] = [address_key(facts.source)]
        wait = self.throttle.check(keys)
        if wait is not None:
            raise Throttled("too many failed authentications; retry later", wait)
        # A blocked token *name* refuses only wrong credentials: names are not secret, so
        # refusing everyone who uses one would let anybody lock a CI pipeline out.
        name_wait = None
        if name:
            keys.append(token_key(name))
            name_wait = self.throttle.check(keys[1:])
        principal = self._verify(secret, facts)
        if principal is None:
            for block in self.throttle.record_failure(keys):
                log.warning(
                    "authentication throttled: %s=%s blocked for %.0fs (strike %d)",
                    block.key[0],
                    block.key[1],
                    block.seconds,
                    block.strike,
                )
                self.tokens.record_auth_block(
                    facts.source, f"{block.key[0]}={block.key[1]}", block.seconds, block.strike
                )
            log.info("authentication failed from %s", facts.source)
            if name_wait is not None:
                raise Throttled("too many failed authentications; retry later", name_wait)
            raise Unauthorized(INVALID)
        self.throttle.record_success(keys)
        return principal

    def _verify(self, secret: str, facts: RequestFacts) -> Principal | None:
        if looks_like_jwt(secret):
            if self.oidc is None:
                return None
            try:
                identity = self.oidc.verify(secret)
            except OidcUnavailable:
                metrics.auth_failed("issuer-unavailable")
                raise Unavailable(
                    "the CI token issuer's keys cannot be fetched; retry later"
                ) from None
            if identity is None:
                return None
            return Principal(
                name=identity.name,
                source=facts.source,
                user_agent=facts.user_agent,
                cert_subject=facts.cert_subject,
                roles=identity.roles,
                paths=identity.paths or None,
                kind="oidc",
                claims=tuple(sorted(identity.claims.items())),
            )
        view = self.tokens.authenticate_token(secret)
        if view is None:
            return None
        return Principal(
            name=f"token:{view.name}",
            source=facts.source,
            user_agent=facts.user_agent,
            cert_subject=facts.cert_subject,
            roles=view.roles,
            paths=view.paths or None,
            kind="token",
        )

    def _certificate(self, facts: RequestFacts) -> Principal:
        mapping = self.certs.get(facts.cert_subject) if facts.cert_subject else None
        if mapping is None:
            raise Unauthorized(MISSING)
        return Principal(
            name=f"cert:{mapping.subject_cn}",
            source=facts.source,
            user_agent=facts.user_agent,
            cert_subject=facts.cert_subject,
            roles=tuple(mapping.roles),
            paths=tuple(mapping.paths) or None,
            kind="cert",
        )
