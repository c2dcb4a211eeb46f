"""Fake Vault/OpenBao transit and Google Cloud KMS servers for the key provider tests.

Each is a stdlib ``http.server`` on 127.0.0.1 (an ephemeral port) in a thread, implementing only
the documented endpoints the providers use, with real AES-256-GCM (a tampered ciphertext or a
different context/AAD fails to decrypt) and the services' error shapes and messages:

- Vault transit: ``POST /v1/<mount>/datakey/plaintext/<key>``, ``POST /v1/<mount>/decrypt/<key>``,
  ``POST /v1/<mount>/rewrap/<key>``, ``GET /v1/<mount>/keys/<key>``; ``X-Vault-Token``; errors as
  ``{"errors": [...]}``; ciphertexts ``vault:vN:<base64>``; key versions, rotation,
  ``min_decryption_version`` and derived keys (context required; binds the key).
- Cloud KMS v1: ``POST /v1/<key>:encrypt``, ``POST /v1/<key>:decrypt``, ``GET /v1/<key>``;
  ``Authorization: Bearer``; errors as ``{"error": {"code", "message", "status"}}``; CRC32C
  request checks and response fields; key versions, rotation and version states.

Every request is recorded (method, path, headers, JSON body) so tests can assert exactly what a
provider sends; ``faults`` answers the next requests with canned replies.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import ipaddress
import json
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from stateward.crypto.providers.gcp_kms import crc32c


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    json: Any


@dataclass
class Reply:
    status: int
    body: Any  # JSON-able, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = {"__unparsable__": raw.decode("latin-1")}
        rec = Recorded(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            json=parsed,
        )
        reply = fake.dispatch(rec)
        if fake.delay:
            time.sleep(fake.delay)
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeout tests)
            pass

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that abort (TLS verification tests) are expected


class FakeServer:
    """Threaded loopback server; subclasses implement ``handle``."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Recorded] = []
        self.faults: list[Reply] = []
        self.delay = 0.0
        self._lock = threading.Lock()
        self._httpd = _HttpServer(self)
        self.scheme = "http"
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def dispatch(self, rec: Recorded) -> Reply:
        with self._lock:
            self.requests.append(rec)
            if self.faults:
                return self.faults.pop(0)
            return self.handle(rec)

    def handle(self, rec: Recorded) -> Reply:
        raise NotImplementedError

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


# -- Vault transit --------------------------------------------------------------------------------


@dataclass
class TransitKey:
    versions: list[bytes] = field(default_factory=lambda: [AESGCM.generate_key(256)])
    derived: bool = False
    min_decryption_version: int = 1


MISSING_CONTEXT = (
    "missing 'context' for key derivation; the key was created using a derived key, which means "
    "additional, per-request information must be included in order to perform operations with "
    "the key"
)


class FakeVault(FakeServer):
    def __init__(
        self, token: str, *, mount: str = "transit", tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(tls)
        self.token = token
        self.mount = mount
        self.keys: dict[str, TransitKey] = {}
        #: Vault 1.6-1.7 answered a failed authentication with 500 (hashicorp/vault#10842).
        self.auth_failure_status = 400
        #: Echo the presented token in errors (a hostile or buggy server).
        self.echo_token = False

    def create_key(self, name: str, *, derived: bool = False) -> TransitKey:
        key = TransitKey(derived=derived)
        self.keys[name] = key
        return key

    def rotate(self, name: str) -> None:
        self.keys[name].versions.append(AESGCM.generate_key(256))

    @staticmethod
    def _errors(status: int, *messages: str) -> Reply:
        return Reply(status, {"errors": list(messages)})

    @staticmethod
    def _ok(data: dict[str, Any]) -> Reply:
        return Reply(
            200,
            {
                "request_id": "00000000-0000-0000-0000-000000000000",
                "lease_id": "",
                "renewable": False,
                "lease_duration": 0,
                "data": data,
                "wrap_info": None,
                "warnings": None,
                "auth": None,
            },
        )

    def handle(self, rec: Recorded) -> Reply:
        presented = rec.headers.get("x-vault-token", "")
        if presented != self.token:
            if self.echo_token:
                return self._errors(403, f"permission denied for token {presented}")
            return self._errors(403, "permission denied")
        prefix = f"/v1/{self.mount}/"
        if not rec.path.startswith(prefix):
            return self._errors(
                404, f"no handler for route {rec.path[4:]!r}. route entry not found."
            )
        op, _, name = rec.path[len(prefix) :].rpartition("/")
        if rec.method == "GET" and op == "keys":
            key = self.keys.get(name)
            if key is None:
                return Reply(404, {"errors": []})
            return self._ok(
                {
                    "name": name,
                    "type": "aes256-gcm96",
                    "derived": key.derived,
                    "latest_version": len(key.versions),
                    "min_decryption_version": key.min_decryption_version,
                    "keys": {str(i + 1): 1700000000 for i in range(len(key.versions))},
                }
            )
        if rec.method != "POST" or op not in ("datakey/plaintext", "decrypt", "rewrap"):
            return self._errors(405, "unsupported operation")
        body = rec.json if isinstance(rec.json, dict) else {}
        key = self.keys.get(name)
        if key is None:
            return self._errors(400, "encryption key not found")
        context = None
        if key.derived:
            context = _unb64(body.get("context"))
            if not context:
                return self._errors(400, MISSING_CONTEXT)
        if op == "datakey/plaintext":
            if body.get("bits", 256) != 256:
                return self._errors(400, "invalid bit size")
            plaintext = os.urandom(32)
            version = len(key.versions)
            return self._ok(
                {
                    "plaintext": _b64(plaintext),
                    "ciphertext": self._seal(key, version, plaintext, context),
                    "key_version": version,
                }
            )
        opened = self._open(key, body.get("ciphertext"), context)
        if isinstance(opened, Reply):
            return opened
        if op == "decrypt":
            return self._ok({"plaintext": _b64(opened)})
        version = len(key.versions)
        return self._ok(
            {"ciphertext": self._seal(key, version, opened, context), "key_version": version}
        )

    @staticmethod
    def _key_for(key: TransitKey, version: int, context: bytes | None) -> bytes:
        material = key.versions[version - 1]
        if context is None:
            return material
        return hmac.new(material, b"derive:" + context, hashlib.sha256).digest()

    def _seal(self, key: TransitKey, version: int, plaintext: bytes, ctx: bytes | None) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self._key_for(key, version, ctx)).encrypt(nonce, plaintext, None)
        return f"vault:v{version}:{_b64(nonce + sealed)}"

    def _open(self, key: TransitKey, ciphertext: Any, ctx: bytes | None) -> bytes | Reply:
        if not isinstance(ciphertext, str) or not ciphertext.startswith("vault:v"):
            return self._errors(400, "invalid ciphertext: no prefix")
        ver_text, _, payload = ciphertext[len("vault:v") :].partition(":")
        if not ver_text.isdigit():
            return self._errors(400, "invalid ciphertext: version number could not be decoded")
        version = int(ver_text)
        if version > len(key.versions):
            return self._errors(400, "invalid ciphertext: version is too new")
        if version < key.min_decryption_version:
            return self._errors(
                400, "ciphertext or signature version is disallowed by policy (too old)"
            )
        blob = _unb64(payload)
        if blob is None:
            return self._errors(400, "invalid ciphertext: could not decode base64")
        try:
            return AESGCM(self._key_for(key, version, ctx)).decrypt(blob[:12], blob[12:], None)
        except (InvalidTag, ValueError):
            return self._errors(
                self.auth_failure_status,
                "1 error occurred:\n\t* cipher: message authentication failed\n\n",
            )


# -- Google Cloud KMS ------------------------------------------------------------------------


@dataclass
class CryptoKey:
    versions: list[bytes] = field(default_factory=lambda: [AESGCM.generate_key(256)])
    states: list[str] = field(default_factory=lambda: ["ENABLED"])
    primary: int = 1


class FakeGcpKms(FakeServer):
    def __init__(self, token: str, *, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls)
        self.token = token
        self.keys: dict[str, CryptoKey] = {}
        #: Corrupt this many ciphertexts in encrypt answers (keeping the CRC of the original).
        self.corrupt_ciphertexts = 0
        #: Claim the plaintext CRC was not verified in encrypt answers.
        self.unverified = False

    def create_key(self, name: str) -> CryptoKey:
        key = CryptoKey()
        self.keys[name] = key
        return key

    def rotate(self, name: str) -> None:
        key = self.keys[name]
        key.versions.append(AESGCM.generate_key(256))
        key.states.append("ENABLED")
        key.primary = len(key.versions)

    @staticmethod
    def _error(code: int, status: str, message: str) -> Reply:
        return Reply(code, {"error": {"code": code, "message": message, "status": status}})

    def handle(self, rec: Recorded) -> Reply:
        if rec.headers.get("authorization") != f"Bearer {self.token}":
            return self._error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
            )
        if not rec.path.startswith("/v1/"):
            return self._error(404, "NOT_FOUND", "Not found")
        name, _, method = rec.path[4:].partition(":")
        key = self.keys.get(name)
        if key is None:
            return self._error(404, "NOT_FOUND", f"CryptoKey {name} not found.")
        if rec.method == "GET" and not method:
            return Reply(
                200,
                {
                    "name": name,
                    "primary": {
                        "name": f"{name}/cryptoKeyVersions/{key.primary}",
                        "state": key.states[key.primary - 1],
                    },
                    "purpose": "ENCRYPT_DECRYPT",
                },
            )
        body = rec.json if isinstance(rec.json, dict) else {}
        aad = _unb64(body.get("additionalAuthenticatedData", "")) or b""
        bad_crc = self._check_crc(body, "additionalAuthenticatedData", aad)
        if bad_crc:
            return bad_crc
        if rec.method == "POST" and method == "encrypt":
            return self._encrypt(name, key, body, aad)
        if rec.method == "POST" and method == "decrypt":
            return self._decrypt(name, key, body, aad)
        return self._error(400, "INVALID_ARGUMENT", "unsupported method")

    def _check_crc(self, body: dict[str, Any], field_name: str, data: bytes) -> Reply | None:
        crc = body.get(f"{field_name}Crc32c")
        if crc is not None and int(crc) != crc32c(data):
            snake = "".join("_" + c.lower() if c.isupper() else c for c in field_name)
            return self._error(
                400,
                "INVALID_ARGUMENT",
                f"The checksum in field {snake}_crc32c did not match the data in field {snake}.",
            )
        return None

    def _version_name(self, name: str, version: int) -> str:
        return f"{name}/cryptoKeyVersions/{version}"

    def _not_enabled(self, name: str, key: CryptoKey, version: int) -> Reply | None:
        state = key.states[version - 1]
        if state != "ENABLED":
            return self._error(
                400,
                "FAILED_PRECONDITION",
                f"{self._version_name(name, version)} is not enabled, current state is: {state}.",
            )
        return None

    def _encrypt(self, name: str, key: CryptoKey, body: dict[str, Any], aad: bytes) -> Reply:
        plaintext = _unb64(body.get("plaintext"))
        if not plaintext:
            return self._error(400, "INVALID_ARGUMENT", "plaintext is required")
        bad = self._check_crc(body, "plaintext", plaintext) or self._not_enabled(
            name, key, key.primary
        )
        if bad:
            return bad
        nonce = os.urandom(12)
        version = key.primary
        sealed = AESGCM(key.versions[version - 1]).encrypt(nonce, plaintext, aad)
        ciphertext = b"FK" + version.to_bytes(4, "big") + nonce + sealed
        crc = crc32c(ciphertext)
        if self.corrupt_ciphertexts:
            self.corrupt_ciphertexts -= 1
            ciphertext = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
        return Reply(
            200,
            {
                "name": self._version_name(name, version),
                "ciphertext": _b64(ciphertext),
                "ciphertextCrc32c": str(crc),
                "verifiedPlaintextCrc32c": "plaintextCrc32c" in body and not self.unverified,
                "verifiedAdditionalAuthenticatedDataCrc32c": (
                    "additionalAuthenticatedDataCrc32c" in body
                ),
                "protectionLevel": "SOFTWARE",
            },
        )

    def _decrypt(self, name: str, key: CryptoKey, body: dict[str, Any], aad: bytes) -> Reply:
        ciphertext = _unb64(body.get("ciphertext"))
        if not ciphertext:
            return self._error(400, "INVALID_ARGUMENT", "ciphertext is required")
        bad = self._check_crc(body, "ciphertext", ciphertext)
        if bad:
            return bad
        invalid = self._error(
            400, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid."
        )
        if len(ciphertext) < 6 + 12 + 16 or ciphertext[:2] != b"FK":
            return invalid
        version = int.from_bytes(ciphertext[2:6], "big")
        if not 1 <= version <= len(key.versions):
            return invalid
        bad = self._not_enabled(name, key, version)
        if bad:
            return bad
        try:
            plaintext = AESGCM(key.versions[version - 1]).decrypt(
                ciphertext[6:18], ciphertext[18:], aad
            )
        except InvalidTag:
            return invalid
        return Reply(
            200,
            {
                "plaintext": _b64(plaintext),
                "plaintextCrc32c": str(crc32c(plaintext)),
                "usedPrimary": version == key.primary,
                "protectionLevel": "SOFTWARE",
            },
        )


# -- a private CA for the TLS tests ------------------------------------------------------------


@dataclass
class Tls:
    ca_file: Path
    server_context: ssl.SSLContext


def make_tls(directory: Path) -> Tls:
    """A CA and a server certificate for 127.0.0.1, written under ``directory``."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stateward test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "server.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "server.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return Tls(ca_file=ca_file, server_context=context)
