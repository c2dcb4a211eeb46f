"""The Terraform/OpenTofu ``http`` backend protocol on ``/state/<path>``.

Accepted URLs and methods (see docs/protocol.md):

- ``/state/<path>``: GET read, POST/PUT write (``?ID=`` when holding the lock), DELETE
  (soft) delete, LOCK, UNLOCK.
- ``/state/<path>/lock``: LOCK/POST/PUT take the lock, UNLOCK/DELETE release it, GET shows
  the holder's LockInfo.

The path is taken from the *raw* request path and validated, never decoded or normalised.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from stateward.common.text import one_line
from stateward.common.types import Body
from stateward.domain.actions import Action
from stateward.domain.errors import BadRequest, ServiceError
from stateward.domain.lockinfo import MAX_ID_LEN, MAX_LOCK_BODY
from stateward.domain.paths import StatePath, validate_path
from stateward.gate import AsyncSession, Caller, Gate
from stateward.http.body import content_md5, declared_md5, read_body, verify_content_md5
from stateward.http.clientinfo import ClientResolver
from stateward.http.errors import protocol_error, text_error

log = logging.getLogger("stateward.backend")
PREFIX = b"/state/"
STATE_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "LOCK", "UNLOCK")
LOCK_URL_METHODS = ("GET", "HEAD", "LOCK", "UNLOCK", "POST", "PUT", "DELETE")
MAX_QUERY_LEN = 2048
STREAM_THRESHOLD = 1024 * 1024
STREAM_CHUNK = 256 * 1024


def _chunks(body: bytes) -> Iterator[bytes]:
    """Send a large state in slices, so the server never holds extra whole copies of it."""
    view = memoryview(body)
    for start in range(0, len(view), STREAM_CHUNK):
        yield bytes(view[start : start + STREAM_CHUNK])


def _split(request: Request) -> tuple[str, bool]:
    """(state path, is_lock_url) from the raw path; no decoding, no normalisation."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    raw = raw.split(b"?", 1)[0]
    if not raw.startswith(PREFIX):
        raise BadRequest("state URLs look like /state/<team>/<app>/<env>")
    try:
        rest = raw[len(PREFIX) :].decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("state path segments may only contain A-Z a-z 0-9 . _ -") from None
    if rest.endswith("/lock"):
        return rest[: -len("/lock")], True
    return rest, False


def _lock_id_param(request: Request) -> str | None:
    if len(request.url.query) > MAX_QUERY_LEN:
        raise BadRequest("query string too long")
    values = request.query_params.getlist("ID")
    if len(values) > 1:
        raise BadRequest("more than one ?ID= parameter")
    if values and not values[0]:
        raise BadRequest("empty ?ID= parameter")
    if values and len(values[0]) > MAX_ID_LEN:
        raise BadRequest(f"?ID= is longer than {MAX_ID_LEN} characters")
    return values[0] if values else None


def _not_allowed(allowed: tuple[str, ...]) -> Response:
    return text_error(
        405,
        f"method not allowed here; allowed: {', '.join(allowed)}",
        {"Allow": ", ".join(allowed)},
    )


class BackendEndpoint:
    """One ASGI-level endpoint; dispatches by method because LOCK/UNLOCK are not standard.

    Every request is one gate session: the transport resolves the client, parses the URL and
    the request line, reads bodies, and formats responses; the gate authenticates, audits,
    and runs the operations (``gate.ops.writes.read`` …)."""

    def __init__(self, gate: Gate, max_body: int, clients: ClientResolver) -> None:
        self.gate = gate
        self.ops = gate.ops
        self.max_body = max_body
        self.clients = clients

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Raw ASGI entry: Starlette routes would restrict methods to the standard ones."""
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        caller = Caller(
            _operation(request),
            request.client.host if request.client else "",
            path=_audit_path(request),
        )
        try:
            async with self.gate.asession(caller) as session:
                facts = self.clients.facts(request)
                session.identify(facts, source=facts.source, user_agent=facts.user_agent)
                raw_path, lock_url = _split(request)
                method = request.method  # methods are case-sensitive (RFC 9110)
                if lock_url:
                    if method not in LOCK_URL_METHODS:
                        return _not_allowed(LOCK_URL_METHODS)
                    return await self._lock_url(request, session, method, raw_path)
                if method not in STATE_METHODS:
                    return _not_allowed(STATE_METHODS)
                return await self._state_url(request, session, method, raw_path)
        except ServiceError as exc:
            # Terraform prints only "HTTP error: 409" for a refused write and drops the body,
            # so the reason must also reach the operator's log. Messages never hold state
            # content (paths, serials, lineages, lock IDs and holders only).
            raw = request.scope.get("raw_path") or b""
            log.warning(
                "refused %s %s: %s",
                request.method,
                raw.decode("ascii", "backslashreplace")[:512],
                one_line(str(exc)),
            )
            return protocol_error(exc)

    async def _state_url(
        self, request: Request, s: AsyncSession, method: str, path: str
    ) -> Response:
        ops = self.ops
        if method in ("GET", "HEAD"):
            state = await s.run(ops.writes.read, path)
            if state is None:
                return text_error(404, f"no state at {path}")
            headers = {
                "Content-MD5": content_md5(state.md5),
                "X-Stateward-Version": str(state.seq),
                "Content-Length": str(len(state.body)),
            }
            if method == "HEAD":
                return Response(b"", media_type="application/json", headers=headers)
            if len(state.body) <= STREAM_THRESHOLD:
                return Response(state.body, media_type="application/json", headers=headers)
            return StreamingResponse(
                _chunks(state.body), media_type="application/json", headers=headers
            )
        if method in ("POST", "PUT"):
            lock_id = _lock_id_param(request)
            expected = declared_md5(request)
            # Authorized before the body is read: nobody can make us buffer 128 MiB for a
            # path they may not write.
            valid: StatePath = await s.authorize(Action.WRITE, path)
            body = await read_body(request, self.max_body)
            s.note(bytes_in=len(body))
            if not body:
                raise BadRequest("empty body: a state write needs the state JSON")
            out = await s.run(ops.writes.write, valid, body, lock_id, expected)
            return Response(b"", status_code=200, headers={"X-Stateward-Version": str(out.seq)})
        if method == "DELETE":
            await s.run(ops.admin.delete, path)
            return Response(b"", status_code=200)
        if method == "LOCK":
            return await self._lock(request, s, path)
        return await self._unlock(request, s, path)  # UNLOCK

    async def _lock_url(
        self, request: Request, s: AsyncSession, method: str, path: str
    ) -> Response:
        if method in ("GET", "HEAD"):
            info = await s.run(self.ops.locks.get_lock_info, path)
            if info is None:
                return text_error(404, f"{path} is not locked")
            return Response(b"" if method == "HEAD" else info, media_type="application/json")
        if method in ("LOCK", "POST", "PUT"):
            return await self._lock(request, s, path)
        return await self._unlock(request, s, path)

    async def _lock(self, request: Request, s: AsyncSession, path: str) -> Response:
        body = await self._body(request, s, MAX_LOCK_BODY)
        info = await s.run(self.ops.locks.lock, path, body)
        return Response(info.raw, status_code=200, media_type="application/json")

    async def _unlock(self, request: Request, s: AsyncSession, path: str) -> Response:
        body = await self._body(request, s, MAX_LOCK_BODY)
        await s.run(self.ops.locks.unlock, path, body)
        return Response(b"", status_code=200)

    @staticmethod
    async def _body(request: Request, s: AsyncSession, limit: int) -> Body:
        body = await read_body(request, limit)
        s.note(bytes_in=len(body))
        verify_content_md5(request, body)
        return body


def _operation(request: Request) -> str:
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    lock = raw.split(b"?", 1)[0].endswith(b"/lock")
    return f"{request.method[:16]} /state{'/lock' if lock else ''}"


def _audit_path(request: Request) -> str | None:
    try:
        path, _lock = _split(request)
        return validate_path(path)
    except ServiceError:
        return None


def is_backend_path(path: str) -> bool:
    return path == "/state" or path.startswith("/state/")
