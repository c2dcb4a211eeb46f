"""TLS serving: a hardened SSL context (TLS >= 1.2) and the ASGI ``tls`` extension.

uvicorn builds the ``SSLContext`` itself and exposes no minimum-version setting (``ssl_version``
only picks the protocol family), so :class:`TlsConfig` tightens the context right after uvicorn
has built it. uvicorn also does not implement the ASGI TLS extension, so
:class:`PeerCertH11Protocol` (passed as uvicorn's ``http=`` class) adds
``scope["extensions"]["tls"]`` from the connection's ``ssl_object`` after the handshake.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}

# OpenSSL long names (as in ``getpeercert()``) -> RFC 4514 short names.
_SHORT = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


def harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """Refuse SSLv3, TLS 1.0 and TLS 1.1; no TLS compression, no renegotiation."""
    ctx.minimum_version = MIN_TLS_VERSION
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return ctx


class TlsConfig(uvicorn.Config):
    """uvicorn's config with the SSL context hardened after uvicorn creates it."""

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            harden(self.ssl)


def _escape(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if (
            ch in ',+"\\<>;='
            or (i == 0 and ch in "# ")
            or (i == len(value) - 1 and ch == " ")
        ):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def rfc4514_name(subject: Any) -> str:
    """``getpeercert()["subject"]`` (RDNs, least specific first) as an RFC 4514 string."""
    rdns = []
    for rdn in reversed(tuple(subject)):
        rdns.append("+".join(f"{_SHORT.get(k, k)}={_escape(v)}" for k, v in rdn))
    return ",".join(rdns)


def common_name(name: str) -> str:
    """The first (most specific) ``CN`` of an RFC 4514 name, unescaped; "" if none."""
    attrs: list[tuple[str, str]] = []
    cur: list[str] = []
    key: str | None = None
    i = 0
    while i <= len(name):
        ch = name[i] if i < len(name) else ","
        if ch == "\\" and i + 1 < len(name):
            nxt = name[i + 1]
            hexpair = name[i + 1 : i + 3]
            if len(hexpair) == 2 and all(c in "0123456789abcdefABCDEF" for c in hexpair):
                cur.append(chr(int(hexpair, 16)))
                i += 3
                continue
            cur.append(nxt)
            i += 2
            continue
        if ch == "=" and key is None:
            key, cur = "".join(cur).strip(), []
        elif ch in ",+":
            if key is not None:
                attrs.append((key, "".join(cur)))
            key, cur = None, []
        else:
            cur.append(ch)
        i += 1
    return next((v for k, v in attrs if k.upper() == "CN"), "")


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """The ASGI TLS extension for one connection (only verified certificates are reported:
    ``getpeercert()`` returns an empty dict unless the context verifies clients)."""
    der = ssl_object.getpeercert(binary_form=True)
    info = ssl_object.getpeercert() if der else None
    verified = bool(info)
    version = ssl_object.version()
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der and verified else [],
        "client_cert_name": rfc4514_name(info.get("subject", ())) if info else None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version or ""),
        "cipher_suite": None,
    }


class PeerCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus ``scope["extensions"]["tls"]`` on TLS connections."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        ext = tls_extension(ssl_object)
        app = self.app

        async def with_tls(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})["tls"] = ext
            await app(scope, receive, send)

        self.app = with_tls
