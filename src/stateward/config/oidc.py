"""The ``[[oidc_issuers]]`` section: trusted CI token issuers and the claim rules that map their
tokens to roles and paths (verified in ``auth/oidc.py``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from stateward.common.net import check_url
from stateward.domain.globs import validate_glob
from stateward.domain.policy_model import ROLE_NAME_RE

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
