"""Who is on the other end of the connection: client address, proxy rules, request facts.

``X-Forwarded-For`` is client-controlled text, so it is honoured only on connections *from* a
declared trusted proxy, and then read from the right: the nearest address that is not itself
a trusted proxy is the client (everything to its left could have been forged by that client).
On plain HTTP bound to a non-loopback address (allowed only with a trusted proxy), direct
connections from anywhere but the proxies and loopback are refused, so credentials never
cross the network in clear text.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

from stateward.auth.authenticator import RequestFacts
from stateward.config import Settings
from stateward.domain.errors import BadRequest, Forbidden
from stateward.domain.policy_model import IPAddress, parse_source
from stateward.http.tls import common_name

MAX_FORWARDED = 4096
MAX_USER_AGENT = 512


class ClientResolver:
    def __init__(self, settings: Settings) -> None:
        self.proxies = [ipaddress.ip_network(c) for c in settings.trusted_proxies]
        self.tls = settings.tls_cert is not None
        self.proxy_only = not self.tls and not settings.serves_loopback_only

    def _is_proxy(self, addr: IPAddress | None) -> bool:
        return addr is not None and any(addr in net for net in self.proxies)

    def source(self, request: Request) -> str:
        peer = request.client.host if request.client else ""
        addr = parse_source(peer)
        if not self._is_proxy(addr):
            if self.proxy_only and (addr is None or not addr.is_loopback):
                raise Forbidden(
                    "plain HTTP is accepted only from the trusted proxy; connect over HTTPS"
                )
            return peer
        proto = request.headers.get("x-forwarded-proto", "")
        if not self.tls and proto and proto.split(",")[-1].strip().lower() != "https":
            raise Forbidden("the proxy forwarded a plain HTTP request; connect over HTTPS")
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        if not forwarded:
            return peer
        if len(forwarded) > MAX_FORWARDED:
            raise BadRequest("X-Forwarded-For header too long")
        for hop in reversed([h.strip() for h in forwarded.split(",")]):
            hop_addr = parse_source(hop)
            if hop_addr is None:
                raise BadRequest("malformed X-Forwarded-For header")
            if not self._is_proxy(hop_addr):
                return str(hop_addr)
        return peer  # every hop is a proxy: the request originated at one

    def facts(self, request: Request) -> RequestFacts:
        tls = request.scope.get("extensions", {}).get("tls") or {}
        return RequestFacts(
            authorization=request.headers.get("authorization"),
            source=self.source(request),
            user_agent=request.headers.get("user-agent", "")[:MAX_USER_AGENT],
            cert_subject=common_name(tls.get("client_cert_name") or ""),
        )
