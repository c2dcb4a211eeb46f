"""Authentication building blocks: CI OIDC verification (``oidc``) and brute-force throttling
(``throttle``). Not yet wired into request handling."""

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
