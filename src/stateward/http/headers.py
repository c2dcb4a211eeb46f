"""Security headers on every HTTP response (API, health and the state protocol).

States and API answers are secrets and never HTML: forbid caching, sniffing, framing and
referrers. HSTS only on HTTPS requests (a browser ignores it over plain HTTP anyway, and sending
it there would advertise TLS that is not served) -- or on every request when a trusted
TLS-terminating proxy is declared, since then clients reach us over HTTPS only.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000")
_PLAIN = SECURITY_HEADERS
_TLS = (*SECURITY_HEADERS, HSTS)
_NAMES = frozenset(name for name, _ in _TLS)  # replaced on both schemes (no stray HSTS)


class SecurityHeaders:
    """Tiny ASGI wrapper: sets (replacing any existing value) the headers above."""

    def __init__(self, app: ASGIApp, always_hsts: bool = False) -> None:
        self.app = app
        self.always_hsts = always_hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _TLS if self.always_hsts or scope.get("scheme") == "https" else _PLAIN

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in _NAMES]
                message = {**message, "headers": [*headers, *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
