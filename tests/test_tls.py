"""TLS, mutual TLS, security headers and the TLS settings, with certificates made in the test.

A real ``stateward serve --tls-*`` process answers real clients (httpx, raw ``ssl`` sockets and
Terraform 1.11 with a client certificate); the peer-certificate plumbing (ASGI ``tls``
extension -> ``Principal.cert_subject``) is checked against an in-process uvicorn server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.requests import Request
from starlette.responses import JSONResponse

from stateward.config import ConfigError, Settings, load_settings
from stateward.gate import build_gate
from stateward.http.app import create_app
from stateward.http.clientinfo import ClientResolver
from stateward.http.tls import PeerCertH11Protocol, TlsConfig, common_name, rfc4514_name
from stateward.service.factory import build_service
from tests.harness.pg import Store
from tests.harness.support import TERRAFORM_111, ServerProcess, free_port, lock_body, make_state
from tests.harness.support import terraform_env as tf_env

SECURITY = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


# -- certificates ---------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stateward tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@dataclass
class Issued:
    cert: Path
    key: Path


class CA:
    def __init__(self, root: Path, cn: str) -> None:
        self.root = root
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.name = _name(cn)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem_path = _write(
            root / f"{cn}-ca.pem", self.cert.public_bytes(serialization.Encoding.PEM)
        )

    def issue(self, cn: str, *, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(
            cert=_write(self.root / f"{cn}.pem", cert.public_bytes(serialization.Encoding.PEM)),
            key=_write(
                self.root / f"{cn}.key",
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            ),
        )


@dataclass
class Pki:
    ca: CA
    server: Issued
    client: Issued
    rogue_client: Issued  # signed by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = CA(root, "stateward-test")
    rogue = CA(root, "rogue")
    return Pki(
        ca=ca,
        server=ca.issue("server", server=True),
        client=ca.issue("ci-runner", server=False),
        rogue_client=rogue.issue("mallory", server=False),
    )


def client_ctx(pki: Pki, cert: Issued | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.pem_path))
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    return ctx


# -- server processes -------------------------------------------------------------------------


def _tls_args(pki: Pki, mtls: bool) -> list[str]:
    args = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
    return args + (["--tls-client-ca", str(pki.ca.pem_path)] if mtls else [])


@pytest.fixture(scope="module")
def tls_server(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory, module_store: Store
) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("tls") / "data", extra_args=_tls_args(pki, False),
                        tls=client_ctx(pki), store=module_store)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def mtls_server(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory, module_store: Store
) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("mtls") / "data", extra_args=_tls_args(pki, True),
                        tls=client_ctx(pki, pki.client), store=module_store)
    srv.start()
    yield srv
    srv.stop()


# -- HTTPS ------------------------------------------------------------------------------------


def _protocol_round_trip(base: str, ctx: ssl.SSLContext, path: str) -> None:
    with httpx.Client(base_url=base, verify=ctx, timeout=10) as c:
        url = f"/state/{path}"
        lock = lock_body()
        lock_id = json.loads(lock)["ID"]
        assert c.request("LOCK", url, content=lock).status_code == 200
        body = make_state(serial=1)
        assert c.post(url, params={"ID": lock_id}, content=body).status_code == 200
        got = c.get(url)
        assert got.status_code == 200 and got.content == body
        assert got.headers["cache-control"] == "no-store"
        assert got.headers["strict-transport-security"] == "max-age=31536000"
        assert c.request("UNLOCK", url, content=lock).status_code == 200


def test_https_protocol_round_trip(tls_server: ServerProcess, pki: Pki) -> None:
    _protocol_round_trip(tls_server.url, client_ctx(pki), "tls/app/dev")
    log = (tls_server.log_path or Path()).read_text()
    assert f"stateward serving https://127.0.0.1:{tls_server.port}/state/" in log


def test_https_security_headers_and_hsts(tls_server: ServerProcess, pki: Pki) -> None:
    for path in ("/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/nope"):
        r = httpx.get(f"{tls_server.url}{path}", verify=client_ctx(pki), timeout=10)
        for name, value in SECURITY.items():
            assert r.headers.get(name) == value, (path, name)
        assert r.headers.get("strict-transport-security") == "max-age=31536000"
        assert len(r.headers.get_list("cache-control")) == 1


def test_plain_http_to_tls_port_fails(tls_server: ServerProcess) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=5)


def test_untrusted_server_certificate_rejected_by_client(tls_server: ServerProcess) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/healthz", verify=ssl.create_default_context(), timeout=5)


def _handshake(port: int, ctx: ssl.SSLContext) -> str | None:
    """Negotiated version, after a full request so TLS 1.3 client-cert alerts surface."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = tls.recv(65536)
        if not data.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"no answer: {data!r}")
        return tls.version()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls12_and_tls13_clients_work(tls_server: ServerProcess, pki: Pki,
                                      version: ssl.TLSVersion) -> None:
    ctx = client_ctx(pki)
    ctx.minimum_version = ctx.maximum_version = version
    assert _handshake(tls_server.port, ctx) == {
        ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]


def _old_client(pki: Pki, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = client_ctx(pki)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client really offer TLS 1.0/1.1
    with warnings.catch_warnings():  # setting a deprecated version is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def _handshake_only(port: int, ctx: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_refused_by_server(tls_server: ServerProcess, pki: Pki,
                                   version: ssl.TLSVersion) -> None:
    # Control: this client does complete a TLS 1.0/1.1 handshake with a permissive server...
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        permissive.minimum_version = ssl.TLSVersion.TLSv1
    permissive.load_cert_chain(pki.server.cert, pki.server.key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve_one() -> None:
            conn, _ = listener.accept()
            with conn, permissive.wrap_socket(conn, server_side=True):
                pass

        thread = threading.Thread(target=serve_one, daemon=True)
        thread.start()
        expected = "TLSv1" if version == ssl.TLSVersion.TLSv1 else "TLSv1.1"
        assert _handshake_only(port, _old_client(pki, version)) == expected
        thread.join(5)
    # ... but stateward refuses it.
    with pytest.raises(ssl.SSLError):
        _handshake_only(tls_server.port, _old_client(pki, version))


def test_tls_config_context_minimum_version(pki: Pki) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        raise AssertionError

    config = TlsConfig(app, ssl_certfile=str(pki.server.cert), ssl_keyfile=str(pki.server.key))
    config.load()
    assert config.ssl is not None
    assert config.ssl.minimum_version == ssl.TLSVersion.TLSv1_2
    assert config.ssl.options & ssl.OP_NO_COMPRESSION


# -- mutual TLS -------------------------------------------------------------------------------


def test_mtls_good_client_certificate_works(mtls_server: ServerProcess, pki: Pki) -> None:
    _protocol_round_trip(mtls_server.url, client_ctx(pki, pki.client), "tls/app/mtls")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_mtls_client_without_certificate_refused(mtls_server: ServerProcess, pki: Pki,
                                                 version: ssl.TLSVersion) -> None:
    ctx = client_ctx(pki)
    ctx.maximum_version = version
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)) as info:
        _handshake(mtls_server.port, ctx)
    assert not isinstance(info.value, TimeoutError)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{mtls_server.url}/healthz", verify=ctx, timeout=5)


def test_mtls_client_from_other_ca_refused(mtls_server: ServerProcess, pki: Pki) -> None:
    ctx = client_ctx(pki, pki.rogue_client)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)) as info:
        _handshake(mtls_server.port, ctx)
    assert not isinstance(info.value, TimeoutError)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{mtls_server.url}/state/tls/app/mtls", verify=ctx, timeout=5)


# -- peer certificate -> principal -------------------------------------------------------------


def test_peer_certificate_reaches_principal(pki: Pki) -> None:
    """The ASGI ``tls`` extension (added by PeerCertH11Protocol) feeds Principal.cert_subject."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        who = ClientResolver(Settings()).facts(request)
        tls = scope.get("extensions", {}).get("tls", {})
        response = JSONResponse(
            {"cert_subject": who.cert_subject, "name": tls.get("client_cert_name"),
             "chain": len(tls.get("client_cert_chain", [])), "version": tls.get("tls_version")}
        )
        await response(scope, receive, send)

    port = free_port()
    config = TlsConfig(
        app, host="127.0.0.1", port=port, http=PeerCertH11Protocol, log_level="warning",
        lifespan="off", ssl_certfile=str(pki.server.cert), ssl_keyfile=str(pki.server.key),
        ssl_ca_certs=str(pki.ca.pem_path), ssl_cert_reqs=ssl.CERT_REQUIRED,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        ctx = client_ctx(pki, pki.client)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        r = httpx.get(f"https://127.0.0.1:{port}/", verify=ctx, timeout=5)
        assert r.json() == {"cert_subject": "ci-runner", "name": "CN=ci-runner,O=stateward tests",
                            "chain": 1, "version": 0x0303}
    finally:
        server.should_exit = True
        thread.join(10)


def test_rfc4514_names_round_trip() -> None:
    subject = ((("organizationName", "Acme, Inc."),), (("commonName", "#ci+runner \\x "),))
    name = rfc4514_name(subject)
    assert name == "CN=\\#ci\\+runner \\\\x\\ ,O=Acme\\, Inc."
    assert common_name(name) == "#ci+runner \\x "
    assert common_name("O=x,CN=a\\2Cb") == "a,b"
    assert common_name("") == common_name("O=only") == ""


# -- plain HTTP and config ----------------------------------------------------------------------


def test_plain_http_security_headers_without_hsts(tmp_path: Path, store: Store) -> None:
    service = build_service(store.settings(tmp_path / "d"))
    app = create_app(build_gate(service), run_jobs=False)

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return [await c.get("/healthz"), await c.get("/api/v1/nope"),
                    await c.get("/state/a/b/c")]

    try:
        for r in asyncio.run(go()):
            for name, value in SECURITY.items():
                assert r.headers.get(name) == value
            assert "strict-transport-security" not in r.headers
    finally:
        service.engine.dispose()


def test_tls_settings_validation(tmp_path: Path, pki: Pki) -> None:
    cert, key, ca = str(pki.server.cert), str(pki.server.key), str(pki.ca.pem_path)
    ok = load_settings(None, {"tls_cert": cert, "tls_key": key, "tls_client_ca": ca}, env={})
    assert ok.tls_client_ca == pki.ca.pem_path
    assert load_settings(None, {}, env={}).tls_cert is None
    env_ok = load_settings(None, {}, env={"STATEWARD_TLS_CERT": cert, "STATEWARD_TLS_KEY": key})
    assert env_ok.tls_key == pki.server.key
    cases = [
        ({"tls_cert": cert}, "both or neither"),
        ({"tls_key": key}, "both or neither"),
        ({"tls_client_ca": ca}, "requires tls_cert"),
        ({"tls_cert": str(tmp_path / "missing.pem"), "tls_key": key}, "tls_cert: cannot read"),
        ({"tls_cert": cert, "tls_key": str(tmp_path)}, "tls_key"),
        ({"tls_cert": cert, "tls_key": key, "tls_client_ca": str(tmp_path / "no")},
         "tls_client_ca: cannot read"),
    ]
    for flags, needle in cases:
        with pytest.raises(ConfigError, match=needle):
            load_settings(None, flags, env={})


def test_serve_refuses_cert_without_key(tmp_path: Path, pki: Pki) -> None:
    r = subprocess.run([sys.executable, "-m", "stateward", "serve", "--data-dir",
                        str(tmp_path / "d"), "--port", "0", "--tls-cert", str(pki.server.cert)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "both or neither" in r.stderr


# -- real Terraform over HTTPS with a client certificate ----------------------------------------

TF_MTLS = """
terraform {{
  backend "http" {{
    address        = "{url}"
    lock_address   = "{url}"
    unlock_address = "{url}"
  }}
}}

resource "terraform_data" "r" {{
  input = "over-mtls"
}}

output "greeting" {{
  value = terraform_data.r.output
}}
"""


@pytest.mark.terraform
def test_terraform_over_https_with_client_certificate(
    mtls_server: ServerProcess, pki: Pki, tmp_path: Path
) -> None:
    if not os.access(TERRAFORM_111, os.X_OK):
        raise RuntimeError(f"Terraform 1.11 not found at {TERRAFORM_111}")
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    url = f"{mtls_server.url}/state/tls/app/prod"
    (work / "main.tf").write_text(TF_MTLS.format(url=url))
    # Backend blocks allow no function calls (no file()): the CA goes in a partial backend
    # configuration file as a heredoc, the client certificate and key in TF_HTTP_* variables.
    (work / "tls.tfbackend").write_text(
        f"client_ca_certificate_pem = <<EOT\n{pki.ca.pem_path.read_text()}EOT\n"
    )
    env = tf_env(home)
    bare_env = dict(env)
    env["TF_HTTP_CLIENT_CERTIFICATE_PEM"] = pki.client.cert.read_text()
    env["TF_HTTP_CLIENT_PRIVATE_KEY_PEM"] = pki.client.key.read_text()

    def tf(*args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([TERRAFORM_111, *args], cwd=work, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r

    tf("init", "-input=false", "-no-color", "-backend-config=tls.tfbackend")
    out = tf("apply", "-input=false", "-no-color", "-auto-approve", "-lock-timeout=0s")
    assert "greeting" in out.stdout
    state = httpx.get(url, verify=client_ctx(pki, pki.client), timeout=10)
    assert state.status_code == 200
    doc = state.json()
    assert doc["outputs"]["greeting"]["value"] == "over-mtls"
    assert doc["resources"][0]["type"] == "terraform_data"
    # The lock was released after the apply.
    lock = httpx.get(f"{url}/lock", verify=client_ctx(pki, pki.client), timeout=10)
    assert lock.status_code == 404
    # Without the client certificate Terraform cannot read the state.
    r = subprocess.run([TERRAFORM_111, "plan", "-input=false", "-no-color", "-lock=false"],
                       cwd=work, env=bare_env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    # (uvicorn/asyncio close the connection without flushing the TLS alert: Terraform sees EOF.)
    assert "Failed to get state" in r.stderr, r.stdout + r.stderr
