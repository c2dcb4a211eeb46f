"""Authentication: the per-request authenticator (``authenticator``), CI OIDC verification
(``oidc``) and brute-force throttling (``throttle``)."""

from stateward.auth.oidc import (
    ClaimRule,
    OidcIdentity,
    OidcIssuer,
    OidcUnavailable,
    OidcVerifier,
    looks_like_jwt,
)

__all__ = [
    "ClaimRule",
    "OidcIdentity",
    "OidcIssuer",
    "OidcUnavailable",
    "OidcVerifier",
    "looks_like_jwt",
]
