"""CI OIDC verification against a JWKS served from a local HTTP server, with tokens signed here.

Nothing here talks to GitHub or GitLab: the claims are shaped like theirs, the keys are ours.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from stateward.auth import OidcUnavailable, OidcVerifier, looks_like_jwt
from stateward.auth._jwks import JWKS_TTL, MAX_DOCUMENT_BYTES, fetch_url
from stateward.config import ConfigError, load_settings
from stateward.config.oidc import OidcIssuer

NOW = 1_900_000_000.0
AUD = "https://stateward.example"
GITHUB_SUB = "repo:acme/infra:ref:refs/heads/main"


@dataclass
class Served:
    """What the fake identity provider serves, and how often each path was requested."""

    issuer: str = ""
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    discovery_issuer: str | None = None
    hits: Counter[str] = field(default_factory=Counter)


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.hits[self.path] += 1
            if self.path == "/.well-known/openid-configuration":
                issuer = served.discovery_issuer or served.issuer
                body = json.dumps({"issuer": issuer, "jwks_uri": served.issuer + "/jwks"})
            elif self.path == "/jwks":
                body = json.dumps(served.jwks)
            elif self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", served.issuer + "/jwks")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            elif self.path == "/big":
                body = " " * (MAX_DOCUMENT_BYTES + 1)
            else:
                self.send_error(500)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def served() -> Iterator[Served]:
    state = Served()
    server = HTTPServer(("127.0.0.1", 0), _handler(state))
    state.issuer = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        data: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    else:
        data = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    return {**data, "kid": kid, "use": "sig"}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def github_issuer(issuer: str, **kw: Any) -> OidcIssuer:
    return OidcIssuer(
        issuer=issuer,
        audience=AUD,
        rules=[
            {
                "name": "prod-apply",
                "claims": {"repository": "acme/infra", "ref": "refs/heads/main"},
                "roles": ["ci-prod"],
                "paths": ["prod/**"],
            },
            {
                "name": "plan",
                "claims": {"repository": ["acme/infra", "acme/app"]},
                "roles": ["ci-plan"],
            },
        ],
        **kw,
    )


def sign(key: Any, kid: str, issuer: str, alg: str = "RS256", **claims: Any) -> str:
    body: dict[str, Any] = {
        "iss": issuer,
        "aud": AUD,
        "sub": GITHUB_SUB,
        "repository": "acme/infra",
        "ref": "refs/heads/main",
        "workflow": "deploy",
        "actor": "someone",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 300,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def github(served: Served, rsa_keys: list[rsa.RSAPrivateKey]) -> tuple[Served, OidcVerifier, Clock]:
    served.jwks = {"keys": [jwk(rsa_keys[0], "k1")]}
    clock = Clock()
    return served, OidcVerifier([github_issuer(served.issuer)], clock=clock), clock


def test_github_token_maps_to_the_first_matching_rule(github: Any, rsa_keys: Any) -> None:
    served, verifier, _ = github
    ident = verifier.verify(sign(rsa_keys[0], "k1", served.issuer), now=NOW)
    assert ident is not None
    assert ident.name == f"oidc:127.0.0.1:{GITHUB_SUB}"
    assert (ident.roles, ident.paths, ident.rule) == (("ci-prod",), ("prod/**",), "prod-apply")
    assert ident.claims["repository"] == "acme/infra" and "actor" not in ident.claims
    branch = sign(rsa_keys[0], "k1", served.issuer, ref="refs/heads/feature")
    assert verifier.verify(branch, now=NOW).roles == ("ci-plan",)  # type: ignore[union-attr]
    # Discovery and keys were fetched once, then served from the cache.
    assert served.hits == {"/.well-known/openid-configuration": 1, "/jwks": 1}


def test_gitlab_es256_token_with_explicit_jwks_url(served: Served, ec_key: Any) -> None:
    served.jwks = {"keys": [jwk(ec_key, "gl")]}
    config = OidcIssuer(
        issuer=served.issuer,
        jwks_url=served.issuer + "/jwks",
        audience=["other", AUD],
        rules=[
            {
                "name": "gitlab-main",
                "claims": {"project_path": "acme/infra", "ref": "main", "ref_type": "branch"},
                "roles": ["writer"],
            }
        ],
    )
    verifier = OidcVerifier([config])
    token = sign(
        ec_key,
        "gl",
        served.issuer,
        alg="ES256",
        sub="project_path:acme/infra:ref_type:branch:ref:main",
        project_path="acme/infra",
        ref="main",
        ref_type="branch",
        repository=None,
    )
    ident = verifier.verify(token, now=NOW)
    assert ident is not None and ident.roles == ("writer",)
    assert ident.claims["ref_type"] == "branch"
    assert "/.well-known/openid-configuration" not in served.hits
    tag = sign(ec_key, "gl", served.issuer, alg="ES256", project_path="acme/infra", ref="main",
               ref_type="tag")  # fmt: skip
    assert verifier.verify(tag, now=NOW) is None


@pytest.mark.parametrize(
    ("claims", "ok"),
    [
        ({"exp": int(NOW) - 30}, True),  # inside the 60 s leeway
        ({"exp": int(NOW) - 61}, False),
        ({"nbf": int(NOW) + 61}, False),
        ({"iat": int(NOW) + 61}, False),
        ({"exp": None}, False),
        ({"sub": None}, False),
        ({"aud": "https://elsewhere.example"}, False),
        ({"repository": "acme/infra-fork"}, False),
        ({"repository": ["acme/infra"]}, False),
        ({"exp": "never"}, False),
    ],
)
def test_claim_checks(github: Any, rsa_keys: Any, claims: dict[str, Any], ok: bool) -> None:
    served, verifier, _ = github
    token = sign(rsa_keys[0], "k1", served.issuer, **claims)
    assert (verifier.verify(token, now=NOW) is not None) is ok


def test_unknown_or_odd_issuer_is_refused_without_fetching(github: Any, rsa_keys: Any) -> None:
    served, verifier, _ = github
    assert verifier.verify(sign(rsa_keys[0], "k1", "https://evil.example"), now=NOW) is None
    odd = _forge({"alg": "RS256", "kid": "k1"}, {"iss": [served.issuer], "aud": AUD}, None)
    assert verifier.verify(odd, now=NOW) is None
    assert not served.hits


def _forge(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    sig = (
        b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{b64(sig)}"


def test_alg_none_hs256_and_tampering_are_refused(github: Any, rsa_keys: Any) -> None:
    served, verifier, _ = github
    good = sign(rsa_keys[0], "k1", served.issuer)
    claims = jwt.decode(good, options={"verify_signature": False})
    pem = (
        rsa_keys[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    forged = [
        _forge({"alg": "none", "kid": "k1"}, claims, None),
        _forge({"alg": "HS256", "kid": "k1", "typ": "JWT"}, claims, pem),
        _forge({"alg": "RS256", "kid": "k1"}, {**claims, "ref": "refs/heads/x"}, None),
    ]
    head, body, sig = good.split(".")
    tampered_claims = {**claims, "repository": "acme/app"}
    tampered_body = base64.urlsafe_b64encode(json.dumps(tampered_claims).encode()).rstrip(b"=")
    forged.append(f"{head}.{tampered_body.decode()}.{sig}")
    forged.append(f"{head}.{body}.{sig[:-4]}AAAA")
    # A token signed by another key that claims our kid.
    forged.append(sign(rsa_keys[1], "k1", served.issuer))
    for token in forged:
        assert verifier.verify(token, now=NOW) is None
    assert verifier.verify(good, now=NOW) is not None


def test_key_rotation_and_rate_limited_refresh(github: Any, rsa_keys: Any) -> None:
    served, verifier, clock = github
    old, new = rsa_keys
    assert verifier.verify(sign(old, "k1", served.issuer), now=NOW) is not None
    served.jwks = {"keys": [jwk(new, "k2")]}
    clock.t = 31.0
    assert verifier.verify(sign(new, "k2", served.issuer), now=NOW) is not None
    assert served.hits["/jwks"] == 2
    ghost = sign(new, "ghost", served.issuer)
    clock.t = 32.0
    for _ in range(20):  # an attacker sending unknown kids cannot force fetches
        assert verifier.verify(ghost, now=NOW) is None
    assert served.hits["/jwks"] == 2
    clock.t = 62.0
    assert verifier.verify(ghost, now=NOW) is None
    assert served.hits["/jwks"] == 3
    # The rotated-out key is gone from the refreshed set.
    assert verifier.verify(sign(old, "k1", served.issuer), now=NOW) is None
    # Known kids are served from cache until the TTL, then the set is re-read.
    clock.t = 62.0 + JWKS_TTL
    assert verifier.verify(sign(new, "k2", served.issuer), now=NOW) is not None
    assert served.hits["/jwks"] == 4
    assert served.hits["/.well-known/openid-configuration"] == 1


def test_key_algorithm_mismatch_is_refused(github: Any, rsa_keys: Any, ec_key: Any) -> None:
    served, verifier, _ = github
    served.jwks = {"keys": [jwk(rsa_keys[0], "k1"), jwk(ec_key, "e1"), {"kty": "oct", "kid": "s",
                   "k": "c2VjcmV0"}]}  # fmt: skip
    assert verifier.verify(sign(ec_key, "k1", served.issuer, alg="ES256"), now=NOW) is None
    assert verifier.verify(sign(ec_key, "e1", served.issuer, alg="ES256"), now=NOW) is not None
    hs = jwt.encode({"iss": served.issuer}, "s" * 32, algorithm="HS256", headers={"kid": "s"})
    assert verifier.verify(hs, now=NOW) is None


def test_unreachable_keys_fail_closed_and_are_not_hammered(served: Served, rsa_keys: Any) -> None:
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return fetch_url(url)

    dead = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    issuer = f"http://127.0.0.1:{dead.server_port}"
    dead.server_close()
    verifier = OidcVerifier([github_issuer(issuer)], fetch=fetch, clock=Clock())
    token = sign(rsa_keys[0], "k1", issuer)
    with pytest.raises(OidcUnavailable):
        verifier.verify(token, now=NOW)
    with pytest.raises(OidcUnavailable):
        verifier.verify(token, now=NOW)
    assert len(calls) == 1


@pytest.mark.parametrize("path", ["/big", "/missing", "/redirect"])
def test_bad_jwks_responses_are_unavailable(served: Served, rsa_keys: Any, path: str) -> None:
    verifier = OidcVerifier([github_issuer(served.issuer, jwks_url=served.issuer + path)])
    with pytest.raises(OidcUnavailable):
        verifier.verify(sign(rsa_keys[0], "k1", served.issuer), now=NOW)


def test_discovery_must_name_the_same_issuer(served: Served, rsa_keys: Any) -> None:
    served.discovery_issuer = "https://evil.example"
    verifier = OidcVerifier([github_issuer(served.issuer)])
    with pytest.raises(OidcUnavailable):
        verifier.verify(sign(rsa_keys[0], "k1", served.issuer), now=NOW)
    assert "/jwks" not in served.hits


def test_fetch_refuses_plain_http_off_loopback() -> None:
    with pytest.raises(OidcUnavailable):
        fetch_url("http://keys.example/jwks")


def test_looks_like_jwt(rsa_keys: Any) -> None:
    assert looks_like_jwt(sign(rsa_keys[0], "k1", "https://x.example"))
    assert looks_like_jwt(_forge({"alg": "none"}, {}, None))
    for value in ["", "swt_abc", "a.b.c", "e30.e30.e30", "eyJhbGciOiJIUzI1NiJ9.x", "x" * 20000]:
        assert not looks_like_jwt(value)


@pytest.mark.parametrize(
    "change",
    [
        {"issuer": "http://token.actions.githubusercontent.com"},
        {"issuer": "token.actions.githubusercontent.com"},
        {"jwks_url": "http://keys.example/jwks"},
        {"algorithms": ["none"]},
        {"algorithms": ["HS256"]},
        {"leeway_seconds": 301},
        {"audience": []},
        {"rules": []},
        {"rules": [{"name": "r", "claims": {}, "roles": ["ci"]}]},
        {"rules": [{"name": "r", "claims": {"ref": ""}, "roles": ["ci"]}]},
        {"rules": [{"name": "r", "claims": {"ref": "main"}, "roles": ["CI_Prod"]}]},
        {"rules": [{"name": "r", "claims": {"ref": "main"}, "roles": []}]},
        {"rules": [{"name": "r", "claims": {"ref": "main"}, "roles": ["ci"], "paths": ["a/[b]"]}]},
        {"rules": [{"name": "r", "claims": {"ref": "main"}, "roles": ["ci"], "extra": 1}]},
    ],
)
def test_config_validation(change: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "issuer": "https://token.actions.githubusercontent.com",
        "audience": AUD,
        "rules": [{"name": "r", "claims": {"ref": "main"}, "roles": ["ci"]}],
    }
    OidcIssuer(**base)
    with pytest.raises(ValidationError):
        OidcIssuer(**{**base, **change})


def test_settings_from_toml_not_env(tmp_path: Path) -> None:
    config = tmp_path / "stateward.toml"
    config.write_text(
        """
[[oidc_issuers]]
issuer = "https://token.actions.githubusercontent.com"
audience = "https://stateward.example"

[[oidc_issuers.rules]]
name = "prod"
claims = { repository = "acme/infra", ref = "refs/heads/main", environment = "production" }
roles = ["ci-prod"]
"""
    )
    settings = load_settings(config, env={})
    assert settings.oidc_issuers[0].rules[0].roles == ["ci-prod"]
    assert OidcIssuer.model_fields["algorithms"].default == ["RS256", "ES256"]
    with pytest.raises(ConfigError):
        load_settings(None, env={"STATEWARD_OIDC_ISSUERS": "[]"})
    config.write_text('[[oidc_issuers]]\nissuer = "http://gitlab.example"\naudience = "x"\n')
    with pytest.raises(ConfigError, match="oidc_issuers"):
        load_settings(config, env={})
