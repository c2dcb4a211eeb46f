"""The ``X-Request-ID`` of every HTTP request (``logs.py`` keeps it for log lines and the audit
trail): the client's when well-formed, else a fresh one, echoed in the response."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stateward.logs import HEADER, request_id_for, reset_request_id, set_request_id


class RequestIdMiddleware:
    """Pure ASGI: sets the request ID for the request and echoes it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next(
            (v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == HEADER),
            None,
        )
        rid = request_id_for(incoming)
        header = (HEADER, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = set_request_id(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            reset_request_id(token)
