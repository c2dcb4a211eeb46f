"""Access control over real HTTP: CI OIDC tokens, client certificates mapped to principals, and
trusted proxies, each against a real ``stateward serve`` process.

The identity provider is a local HTTP server (discovery + JWKS) with keys made here; the PKI is
made here too. Nothing talks to GitHub, GitLab or the network.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from stateward.config import ConfigError, load_settings
from tests.harness.pg import Store
from tests.harness.support import ServerProcess, free_port, lock_body, make_state
from tests.test_oidc import AUD, GITHUB_SUB, Served, _forge, _handler, jwk, sign
from tests.test_tls import CA, Issued, Pki, client_ctx

CHALLENGE = 'Basic realm="stateward", charset="UTF-8"'
INVALID = "invalid, expired or revoked credentials\n"
UNAVAILABLE = "the CI token issuer's keys cannot be fetched; retry later\n"
HSTS = "max-age=31536000"
#: The name a verified job gets: ``oidc:<issuer host>:<sub>``.
CI_NAME = f"oidc:127.0.0.1:{GITHUB_SUB}"
#: ``MIN_REFRESH_INTERVAL`` of ``stateward.auth._jwks``, plus a margin.
REFRESH_WAIT = 30.5


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _seed(srv: ServerProcess, path: str, body: bytes, **kw: Any) -> None:
    """Write ``body`` as the admin (idempotent: an identical write creates nothing)."""
    r = httpx.post(srv.state_url(path), content=body, timeout=10, **kw)
    assert r.status_code == 200, r.text


def _unchanged(srv: ServerProcess, path: str, body: bytes | None, **kw: Any) -> None:
    """The admin sees ``body`` at ``path`` (None: no state at all) and no lock."""
    with httpx.Client(timeout=10, **kw) as admin:
        got = admin.get(srv.state_url(path))
        if body is None:
            assert got.status_code == 404, got.text
        else:
            assert got.status_code == 200 and got.content == body
        assert admin.get(f"{srv.state_url(path)}/lock").status_code == 404


# -- CI OIDC ----------------------------------------------------------------------------------


@contextlib.contextmanager
def identity_provider() -> Iterator[Served]:
    """A discovery document and a JWKS on a loopback port (see tests.test_oidc.Served)."""
    served = Served()
    server = HTTPServer(("127.0.0.1", 0), _handler(served))
    served.issuer = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def ci_token(key: Any, kid: str, issuer: str, **claims: Any) -> str:
    """A GitHub-shaped token valid now (tests.test_oidc.sign is pinned to a fixed time)."""
    now = int(time.time())
    return sign(key, kid, issuer, **{"iat": now - 5, "nbf": now - 5, "exp": now + 300, **claims})


def _issuer_toml(issuer: str) -> str:
    return f"""
[[oidc_issuers]]
issuer = "{issuer}"
audience = "{AUD}"

[[oidc_issuers.rules]]
name = "infra-main"
claims = {{ repository = "acme/infra", ref = "refs/heads/main" }}
roles = ["writer"]
paths = ["ci/**"]
"""


@dataclass
class Oidc:
    server: ServerProcess
    main: Served  # the issuer most tests use
    rotating: Served  # only the key-rotation test uses it (its refresh timer is its own)
    gone: str  # an issuer whose key server was stopped before any token was checked
    #: Monotonic times around the request that first fetched ``rotating``'s keys (the
    #: server's refresh timer started in between; CLOCK_MONOTONIC is system-wide).
    primed: tuple[float, float]


@pytest.fixture(scope="module")
def keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


@pytest.fixture(scope="module")
def oidc(
    tmp_path_factory: pytest.TempPathFactory, keys: list[rsa.RSAPrivateKey], module_store: Store
) -> Iterator[Oidc]:
    root = tmp_path_factory.mktemp("oidc")
    config = root / "stateward.toml"
    with identity_provider() as main, identity_provider() as rotating:
        main.jwks = {"keys": [jwk(keys[0], "k1")]}
        rotating.jwks = {"keys": [jwk(keys[0], "r1")]}
        with identity_provider() as gone:
            gone.jwks = {"keys": [jwk(keys[0], "g1")]}
            # Failures are counted per address: the refusal tests must not trip the throttle.
            config.write_text(
                "auth_failure_limit = 10000\n"
                + "".join(_issuer_toml(s.issuer) for s in (main, rotating, gone))
            )
            srv = ServerProcess(root / "data", config=config, store=module_store).start()
        assert not gone.hits  # keys are fetched on first use, never at start-up
        try:
            # The first token of ``rotating`` fetches its keys and starts its refresh timer.
            before = time.monotonic()
            r = httpx.get(
                srv.state_url("ci/app/prime", creds=False),
                headers=_bearer(ci_token(keys[0], "r1", rotating.issuer)),
                timeout=10,
            )
            assert r.status_code == 404, r.text  # authenticated; there is just no state
            assert rotating.hits["/jwks"] == 1
            yield Oidc(srv, main, rotating, gone.issuer, (before, time.monotonic()))
        finally:
            srv.stop()


def test_oidc_token_as_basic_password_and_as_bearer(oidc: Oidc, keys: Any) -> None:
    srv = oidc.server
    url = srv.state_url("ci/app/prod", creds=False)
    token = ci_token(keys[0], "k1", oidc.main.issuer)
    lineage = str(uuid.uuid4())
    schemes: dict[str, dict[str, Any]] = {
        "basic": {"auth": ("github-actions", token)},  # the username is not checked
        "bearer": {"headers": _bearer(token)},
    }
    for serial, (scheme, kw) in enumerate(schemes.items(), start=1):
        with httpx.Client(timeout=10, **kw) as c:
            lock_id = str(uuid.uuid4())
            body = make_state(serial=serial, lineage=lineage)
            assert c.request("LOCK", url, content=lock_body(lock_id)).status_code == 200, scheme
            r = c.post(f"{url}?ID={lock_id}", content=body)
            assert r.status_code == 200, (scheme, r.text)
            got = c.get(url)
            assert got.status_code == 200 and got.content == body, scheme
            assert c.request("UNLOCK", url, content=lock_body(lock_id)).status_code == 200
    _unchanged(srv, "ci/app/prod", make_state(serial=2, lineage=lineage))
    versions = httpx.get(
        f"{srv.url}/api/v1/versions", params={"path": "ci/app/prod"}, timeout=10
    ).json()
    assert [v["author"] for v in versions] == [CI_NAME, CI_NAME]
    # The discovery document and the keys were fetched once for all those requests.
    assert oidc.main.hits["/.well-known/openid-configuration"] == 1


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims


def _tampered(key: Any, issuer: str) -> str:
    """A feature-branch token whose payload was edited to claim main; signature kept."""
    token = ci_token(key, "k1", issuer, ref="refs/heads/feature")
    head, _, sig = token.split(".")
    claims = {**_claims(token), "ref": "refs/heads/main"}
    return f"{head}.{_b64url(json.dumps(claims).encode())}.{sig}"


def _alg_none(key: Any, issuer: str) -> str:
    """The claims of a good token, unsigned (``alg: none``)."""
    return _forge({"alg": "none", "kid": "k1"}, _claims(ci_token(key, "k1", issuer)), None)


Keys = list[rsa.RSAPrivateKey]
BAD_TOKENS: dict[str, Callable[[Keys, str], str]] = {
    "expired": lambda k, iss: ci_token(
        k[0], "k1", iss, iat=int(time.time()) - 900, exp=int(time.time()) - 120
    ),
    "not-yet-valid": lambda k, iss: ci_token(k[0], "k1", iss, nbf=int(time.time()) + 600),
    "wrong-audience": lambda k, iss: ci_token(k[0], "k1", iss, aud="https://elsewhere.example"),
    "wrong-issuer": lambda k, iss: ci_token(k[0], "k1", "https://token.evil.example"),
    "unknown-kid": lambda k, iss: ci_token(k[0], "nope", iss),
    "no-rule-branch": lambda k, iss: ci_token(k[0], "k1", iss, ref="refs/heads/feature"),
    "no-rule-fork": lambda k, iss: ci_token(k[0], "k1", iss, repository="acme/infra-fork"),
    "tampered": lambda k, iss: _tampered(k[0], iss),
    "other-key-same-kid": lambda k, iss: ci_token(k[1], "k1", iss),
    "alg-none": lambda k, iss: _alg_none(k[0], iss),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_oidc_bad_tokens_are_401_and_change_nothing(oidc: Oidc, keys: Any, case: str) -> None:
    srv = oidc.server
    path = "ci/app/guarded"
    seeded = make_state(serial=1, lineage="6f1c2b1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b")
    _seed(srv, path, seeded)
    token = BAD_TOKENS[case](keys, oidc.main.issuer)
    url = srv.state_url(path, creds=False)
    lock_id = str(uuid.uuid4())
    refusals = [
        httpx.get(url, auth=("github-actions", token), timeout=10),
        httpx.post(url, content=make_state(serial=2), headers=_bearer(token), timeout=10),
        httpx.request("LOCK", url, content=lock_body(lock_id), headers=_bearer(token), timeout=10),
        httpx.request("UNLOCK", url, content=b"", auth=("ci", token), timeout=10),
        httpx.get(f"{srv.bare_url}/api/v1/states", headers=_bearer(token), timeout=10),
    ]
    for r in refusals:
        assert r.status_code == 401, (r.request.method, r.status_code, r.text)
        assert r.headers["www-authenticate"] == CHALLENGE
        assert token not in r.text
    assert [r.text for r in refusals[:4]] == [INVALID] * 4
    _unchanged(srv, path, seeded)
    assert token not in (srv.log_path or Path()).read_text()


def test_oidc_path_outside_the_rule_is_403(oidc: Oidc, keys: Any) -> None:
    srv = oidc.server
    token = ci_token(keys[0], "k1", oidc.main.issuer)
    url = srv.state_url("other/app/prod", creds=False)
    with httpx.Client(auth=("github-actions", token), timeout=10) as c:
        for r in [
            c.get(url),
            c.post(url, content=make_state()),
            c.request("LOCK", url, content=lock_body()),
        ]:
            assert r.status_code == 403, (r.request.method, r.text)
            assert "restricted to paths other than other/app/prod" in r.text
            assert "www-authenticate" not in r.headers
        # The same token is fine inside ci/** (the role, writer, covers every path).
        assert c.get(srv.state_url("ci/app/nothing-here", creds=False)).status_code == 404
    _unchanged(srv, "other/app/prod", None)


def test_oidc_unreachable_keys_are_503_with_retry_after(oidc: Oidc, keys: Any) -> None:
    srv = oidc.server
    token = ci_token(keys[0], "g1", oidc.gone)
    url = srv.state_url("ci/app/offline", creds=False)
    with httpx.Client(headers=_bearer(token), timeout=30) as c:
        # Twice: a failed fetch is not retried for 30 s, and meanwhile the answer stays 503.
        for _ in range(2):
            for r in [
                c.get(url),
                c.post(url, content=make_state()),
                c.request("LOCK", url, content=lock_body()),
            ]:
                assert r.status_code == 503, (r.request.method, r.text)
                assert r.headers["retry-after"] == "5"
                assert r.text == UNAVAILABLE
                assert "www-authenticate" not in r.headers
    _unchanged(srv, "ci/app/offline", None)


# -- mutual TLS: client certificates as principals ----------------------------------------------


@dataclass
class Mtls:
    server: ServerProcess
    pki: Pki
    stranger: Issued  # signed by the trusted CA, but its CN is not mapped


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = CA(root, "stateward-test")
    return Pki(
        ca=ca,
        server=ca.issue("server", server=True),
        client=ca.issue("ci-runner", server=False),
        rogue_client=CA(root, "rogue").issue("mallory", server=False),
    )


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory, pki: Pki, module_store: Store) -> Iterator[Mtls]:
    root = tmp_path_factory.mktemp("mtls")
    config = root / "stateward.toml"
    # TLS in the file rather than flags: the offline CLI (token create) reads the same file,
    # and cert_principals are only valid with tls_client_ca. The certificate maps to a custom
    # read-only role: see test_cert_principal_may_hold_a_builtin_role for ``reader``.
    config.write_text(
        f"""
tls_cert = "{pki.server.cert}"
tls_key = "{pki.server.key}"
tls_client_ca = "{pki.ca.pem_path}"
auth_failure_limit = 10000

[roles.tls-reader]
description = "the CI runner's certificate: read tls/**"

[[roles.tls-reader.rules]]
actions = ["read", "history"]
paths = ["tls/**"]

[[cert_principals]]
subject_cn = "ci-runner"
roles = ["tls-reader"]
"""
    )
    srv = ServerProcess(
        root / "data", config=config, tls=client_ctx(pki, pki.client), store=module_store
    )
    srv.start()
    try:
        yield Mtls(srv, pki, pki.ca.issue("someone-else", server=False))
    finally:
        srv.stop()


def test_cert_principal_may_hold_a_builtin_role(pki: Pki) -> None:
    tls = {"tls_cert": pki.server.cert, "tls_key": pki.server.key, "tls_client_ca": pki.ca.pem_path}
    mapping = {"subject_cn": "ci-runner", "roles": ["reader"]}
    settings = load_settings(None, {**tls, "cert_principals": [mapping]}, env={})
    assert settings.cert_principals[0].roles == ["reader"]


def test_mapped_client_certificate_reads_but_cannot_write(mtls: Mtls) -> None:
    srv, ctx = mtls.server, client_ctx(mtls.pki, mtls.pki.client)
    body = make_state(serial=1, lineage="0d5b8f7e-7c1a-4f0e-9d55-2a6f1b3c4d5e")
    _seed(srv, "tls/app/prod", body, verify=ctx)
    url = srv.state_url("tls/app/prod", creds=False)
    with httpx.Client(verify=ctx, timeout=10) as c:  # the certificate, no Authorization
        got = c.get(url)
        assert got.status_code == 200 and got.content == body
        for r in [
            c.post(url, content=make_state(serial=2)),
            c.request("LOCK", url, content=lock_body()),
        ]:
            assert r.status_code == 403, (r.request.method, r.text)
            assert "role tls-reader does not grant" in r.text
    _unchanged(srv, "tls/app/prod", body, verify=ctx)


def test_unmapped_client_certificate_needs_a_credential(mtls: Mtls) -> None:
    ctx = client_ctx(mtls.pki, mtls.stranger)
    r = httpx.get(mtls.server.state_url("tls/app/prod", creds=False), verify=ctx, timeout=10)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == CHALLENGE
    assert r.text.startswith("authentication required")


def test_client_without_certificate_is_refused_by_tls(mtls: Mtls) -> None:
    for creds in (False, True):  # an admin token does not replace the certificate
        with pytest.raises(httpx.TransportError):
            httpx.get(
                mtls.server.state_url("tls/app/prod", creds=creds),
                verify=client_ctx(mtls.pki),
                timeout=10,
            )


def test_token_over_mtls_is_the_principal(mtls: Mtls) -> None:
    srv, ctx = mtls.server, client_ctx(mtls.pki, mtls.pki.client)
    lineage = str(uuid.uuid4())
    path = "tls/app/token"
    url = srv.state_url(path, creds=False)
    # The admin token writes although the certificate alone maps to read-only tls-reader.
    _seed(srv, path, make_state(serial=1, lineage=lineage), verify=ctx)
    outputs = srv.create_token("consumer", "outputs-reader")
    got = httpx.get(url, auth=("consumer", outputs), verify=ctx, timeout=10)
    assert got.status_code == 200
    assert got.json()["resources"] == [] and set(got.json()["outputs"]) == {"name"}
    # A bad credential is refused; it never falls back to the certificate's principal.
    bogus = "swt_" + "A" * 43
    r = httpx.get(url, auth=("ci-runner", bogus), verify=ctx, timeout=10)
    assert r.status_code == 401 and r.headers["www-authenticate"] == CHALLENGE
    versions = httpx.get(
        f"{srv.url}/api/v1/versions", params={"path": path}, verify=ctx, timeout=10
    ).json()
    assert len(versions) == 1 and versions[0]["author"].startswith("token:")


# -- trusted proxies ----------------------------------------------------------------------------

#: A role usable only from 203.0.113.0/24: proves which client address the server used.
OFFICE_ROLE = """
auth_failure_limit = 10000

[roles.office]
description = "only from the office network"

[[roles.office.rules]]
actions = ["read", "write", "lock", "unlock"]
paths = ["net/**"]
cidrs = ["203.0.113.0/24"]
"""
OFFICE = "203.0.113.5"
ELSEWHERE = "198.51.100.7"
NOT_FROM_HERE = "role office grants read on net/app/prod only from its allowed networks\n"


def test_trusted_proxy_settings_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings(None, {"host": "0.0.0.0"}, env={})
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings(None, {"host": "::"}, env={})
    ok = load_settings(None, {"host": "0.0.0.0", "trusted_proxies": ["10.0.0.5/32"]}, env={})
    assert ok.trusted_proxies == ["10.0.0.5/32"] and not ok.serves_loopback_only
    env = {"STATEWARD_HOST": "0.0.0.0", "STATEWARD_TRUSTED_PROXIES": "10.0.0.5,fd00::/64"}
    assert load_settings(None, env=env).trusted_proxies == ["10.0.0.5", "fd00::/64"]
    for cidr, needle in [
        ("0.0.0.0/0", "would trust every address"),
        ("::/0", "would trust every address"),
        ("10.0.0.1/8", "not an address or CIDR"),
        ("proxy.example", "not an address or CIDR"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            load_settings(None, {"trusted_proxies": [cidr]}, env={})
    # The real command refuses to start, naming the fix.
    r = subprocess.run(
        [sys.executable, "-m", "stateward", "serve", "--data-dir", str(tmp_path / "d"),
         "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode != 0 and "trusted_proxies" in r.stderr, r.stderr


@dataclass
class Site:
    server: ServerProcess
    office: str  # a token holding only the ``office`` role


def _site(root: Path, trusted_proxies: bool, store: Store) -> Site:
    config = root / "stateward.toml"
    proxies = 'trusted_proxies = ["127.0.0.1/32"]\n' if trusted_proxies else ""
    config.write_text(proxies + OFFICE_ROLE)
    srv = ServerProcess(root / "data", config=config, store=store).start()
    try:
        office = srv.create_token("office", "office")
        _seed(srv, "net/app/prod", make_state(serial=1, lineage=str(uuid.uuid4())))
    except BaseException:
        srv.stop()
        raise
    return Site(srv, office)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, module_store: Store) -> Iterator[Site]:
    site = _site(tmp_path_factory.mktemp("proxied"), trusted_proxies=True, store=module_store)
    yield site
    site.server.stop()


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory, module_store: Store) -> Iterator[Site]:
    site = _site(tmp_path_factory.mktemp("direct"), trusted_proxies=False, store=module_store)
    yield site
    site.server.stop()


def _office_get(site: Site, **headers: str) -> httpx.Response:
    return httpx.get(
        site.server.state_url("net/app/prod", creds=False),
        auth=("office", site.office),
        headers=headers,
        timeout=10,
    )


def test_forwarded_for_from_trusted_proxy_is_the_client(proxied: Site) -> None:
    url = proxied.server.state_url("net/app/prod", creds=False)
    via_office = {"X-Forwarded-For": OFFICE, "X-Forwarded-Proto": "https"}
    with httpx.Client(auth=("office", proxied.office), headers=via_office, timeout=10) as c:
        current = c.get(url)
        assert current.status_code == 200, current.text
        doc = current.json()
        lock_id = str(uuid.uuid4())
        body = make_state(serial=doc["serial"] + 1, lineage=doc["lineage"])
        assert c.request("LOCK", url, content=lock_body(lock_id)).status_code == 200
        assert c.post(f"{url}?ID={lock_id}", content=body).status_code == 200
        assert c.request("UNLOCK", url, content=lock_body(lock_id)).status_code == 200
    _unchanged(proxied.server, "net/app/prod", body)
    # The rightmost address that is not a trusted proxy is the client; what is left of it
    # could have been written by the client itself.
    for xff, status in [
        (f"{ELSEWHERE}, {OFFICE}", 200),
        (f"{OFFICE}, 127.0.0.1", 200),
        (ELSEWHERE, 403),
        (f"{OFFICE}, {ELSEWHERE}", 403),
    ]:
        r = _office_get(proxied, **{"X-Forwarded-For": xff})
        assert r.status_code == status, (xff, r.text)
    # Without the header the proxy itself (127.0.0.1) is the client.
    r = _office_get(proxied)
    assert r.status_code == 403 and r.text == NOT_FROM_HERE


def test_proxy_forwarding_plain_http_is_refused(proxied: Site) -> None:
    # Alone, and as a real proxy sends it (X-Forwarded-For is always there).
    for extra in [{}, {"X-Forwarded-For": OFFICE}, {"X-Forwarded-For": f"{OFFICE}, 127.0.0.1"}]:
        r = _office_get(proxied, **{"X-Forwarded-Proto": "http", **extra})
        assert r.status_code == 403, (extra, r.text)
        assert r.text == "the proxy forwarded a plain HTTP request; connect over HTTPS\n"
    # Refused before authentication: even the admin cannot be served in clear text.
    admin = httpx.get(
        proxied.server.state_url("net/app/prod"), headers={"X-Forwarded-Proto": "http"}, timeout=10
    )
    assert admin.status_code == 403


def test_malformed_forwarded_for_is_400(proxied: Site) -> None:
    for xff in ["not-an-address", f"{OFFICE}, 203.0.113.999", f"{OFFICE},,"]:
        r = _office_get(proxied, **{"X-Forwarded-For": xff})
        assert r.status_code == 400, (xff, r.text)
        assert r.text == "malformed X-Forwarded-For header\n"


def test_hsts_on_plain_http_behind_trusted_proxy(proxied: Site, direct: Site) -> None:
    srv = proxied.server
    for r in [
        httpx.get(f"{srv.bare_url}/healthz", timeout=10),
        httpx.get(srv.state_url("net/app/prod", creds=False), timeout=10),  # 401
        httpx.get(srv.state_url("net/app/prod"), timeout=10),
        httpx.get(f"{srv.url}/api/v1/states", timeout=10),
    ]:
        assert r.headers.get("strict-transport-security") == HSTS, r.request.url.path
    # Without a proxy, plain HTTP on loopback advertises no HSTS, whatever a client claims.
    for headers in [{}, {"X-Forwarded-Proto": "https"}]:
        r = httpx.get(f"{direct.server.bare_url}/healthz", headers=headers, timeout=10)
        assert "strict-transport-security" not in r.headers


def test_without_trusted_proxy_forwarded_headers_are_ignored(direct: Site) -> None:
    # The peer (127.0.0.1) is the client whatever X-Forwarded-For says: the office role,
    # usable only from 203.0.113.0/24, stays refused even when the header claims that network.
    for headers in [
        {},
        {"X-Forwarded-For": OFFICE},
        {"X-Forwarded-For": f"{ELSEWHERE}, {OFFICE}"},
        {"X-Forwarded-For": OFFICE, "X-Forwarded-Proto": "https"},
    ]:
        r = _office_get(direct, **headers)
        assert r.status_code == 403 and r.text == NOT_FROM_HERE, headers
    # Nor is a proxy's header checked: no proxy is declared, so nothing here is a proxy.
    for headers in [{"X-Forwarded-Proto": "http"}, {"X-Forwarded-For": "not-an-address"}]:
        r = httpx.get(direct.server.state_url("net/app/prod"), headers=headers, timeout=10)
        assert r.status_code == 200, (headers, r.text)


def _non_loopback_ipv4() -> str | None:
    """This host's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        addr: str = s.getsockname()[0]
    return None if addr.startswith("127.") else addr


def test_plain_http_off_loopback_accepts_only_proxy_and_loopback(
    tmp_path: Path, store: Store
) -> None:
    addr = _non_loopback_ipv4()
    if addr is None:
        pytest.skip("this host has no non-loopback IPv4 address to connect from")
    config = tmp_path / "stateward.toml"
    config.write_text('trusted_proxies = ["127.0.0.1/32"]\n')
    srv = ServerProcess(
        tmp_path / "data", config=config, extra_args=["--host", "0.0.0.0"], store=store
    )
    srv.start()
    try:
        # Loopback (here also the proxy) is served...
        assert httpx.get(f"{srv.url}/api/v1/states", timeout=10).status_code == 200
        # ... a direct client on the network is not, even with a valid token and even when
        # it claims to come through the proxy.
        direct_url = f"http://admin:{srv.token}@{addr}:{srv.port}"
        for headers in [{}, {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}]:
            r = httpx.get(f"{direct_url}/api/v1/states", headers=headers, timeout=10)
            assert r.status_code == 403, r.text
            assert "plain HTTP is accepted only from the trusted proxy" in r.text
    finally:
        srv.stop()


# -- key rotation (waits out the refresh rate limit; last so other tests overlap the wait) -----


@pytest.mark.slow
def test_oidc_new_signing_key_is_fetched_for_an_unknown_kid(oidc: Oidc, keys: Any) -> None:
    srv, rotating = oidc.server, oidc.rotating
    url = srv.state_url("ci/app/rotated", creds=False)
    rotating.jwks = {"keys": [jwk(keys[0], "r1"), jwk(keys[1], "r2")]}  # the issuer rotates
    new = ci_token(keys[1], "r2", rotating.issuer)
    before, after = oidc.primed
    if time.monotonic() - before < REFRESH_WAIT - 5:
        # Within 30 s of the last fetch an unknown kid does not make the server fetch again
        # (clients control the kid); the token is refused meanwhile.
        r = httpx.get(url, headers=_bearer(new), timeout=10)
        assert r.status_code == 401 and r.headers["www-authenticate"] == CHALLENGE
        assert rotating.hits["/jwks"] == 1
    time.sleep(max(0.0, after + REFRESH_WAIT - time.monotonic()))
    body = make_state(serial=1)
    with httpx.Client(headers=_bearer(new), timeout=10) as c:
        assert c.post(url, content=body).status_code == 200
        got = c.get(url)
        assert got.status_code == 200 and got.content == body
    assert rotating.hits["/jwks"] == 2
    # The old key is still published, so its tokens still work (from the refreshed set).
    old = ci_token(keys[0], "r1", rotating.issuer)
    assert httpx.get(url, headers=_bearer(old), timeout=10).status_code == 200
    assert rotating.hits["/jwks"] == 2
