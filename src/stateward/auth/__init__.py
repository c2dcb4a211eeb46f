"""Authentication: credentials to a Principal (``authenticator``: tokens, CI OIDC tokens,
client certificates), CI OIDC verification (``oidc``) and brute-force throttling
(``throttle``). The gate calls it; it knows the token store only as a ``TokenVerifier``."""

from stateward.auth.authenticator import Authenticator, RequestFacts, TokenVerifier
from stateward.auth.oidc import OidcIdentity, OidcUnavailable, OidcVerifier, looks_like_jwt

__all__ = [
    "Authenticator",
    "OidcIdentity",
    "OidcUnavailable",
    "OidcVerifier",
    "RequestFacts",
    "TokenVerifier",
    "looks_like_jwt",
]
