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
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from stateward.auth.authenticator import Authenticator, RequestFacts
from stateward.common.text import one_line
from stateward.common.types import Body
from stateward.domain.audit_record import Outcome
from stateward.domain.errors import BadRequest, ServiceError
from stateward.domain.lockinfo import MAX_ID_LEN, MAX_LOCK_BODY
from stateward.domain.paths import validate_path
from stateward.domain.principal import Principal
from stateward.http.body import content_md5, declared_md5, read_body, verify_content_md5
from stateward.http.clientinfo import ClientResolver
from stateward.http.errors import protocol_error, text_error
from stateward.service import context as audit_context
from stateward.service.core import StateService

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


T = TypeVar("T")


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
    """One ASGI-level endpoint; dispatches by method because LOCK/UNLOCK are not standard."""

    def __init__(
        self,
        service: StateService,
        max_body: int,
        auth: Authenticator,
        clients: ClientResolver,
    ) -> None:
        self.service = service
        self.max_body = max_body
        self.auth = auth
        self.clients = clients

    async def _as(
        self,
        request: Request,
        facts: RequestFacts,
        fn: Callable[..., T],
        *args: Any,
        who: Principal | None = None,
        bytes_in: int = 0,
    ) -> T:
        """Authenticate (unless ``who`` is given) and run one service call in the same worker
        thread, inside the request's audit context: exactly one audit record per request."""
        operation = _operation(request)
        path = _audit_path(request)

        def run() -> T:
            with audit_context.begin(operation, facts.source, facts.user_agent) as ctx:
                ctx.path = path  # known even when authentication fails
                audit_context.note(bytes_in=bytes_in)

                def call() -> T:
                    ctx.who = who or self.auth.authenticate(facts)
                    if fn is _identity:
                        ctx.recorded = True  # authenticated; the write itself is recorded
                    return fn(ctx.who, *args)

                try:
                    return self.service.audited(ctx, call)
                except ServiceError as exc:
                    exc.audited = True  # type: ignore[attr-defined]
                    raise

        return await run_in_threadpool(run)

    async def _refused(
        self,
        request: Request,
        facts: RequestFacts | None,
        who: Principal | None,
        exc: ServiceError,
    ) -> None:
        """Record a refusal made by the transport itself (bad path or ``?ID=``, body too large,
        bad Content-MD5, proxy rules); marks ``exc`` as recorded."""
        source = (
            facts.source if facts is not None else (request.client.host if request.client else "")
        )
        agent = facts.user_agent if facts is not None else ""

        def run() -> None:
            with audit_context.begin(_operation(request), source, agent) as ctx:
                ctx.who = who
                ctx.action = "write" if who is not None else "request"
                ctx.path = _audit_path(request)
                outcome: Outcome = "denied" if exc.denied else "failed"
                self.service.record_outcome(ctx, outcome, exc.status, str(exc))

        exc.audited = True  # type: ignore[attr-defined]
        await run_in_threadpool(run)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Raw ASGI entry: Starlette routes would restrict methods to the standard ones."""
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        facts: RequestFacts | None = None
        try:
            facts = self.clients.facts(request)
            path, lock_url = _split(request)
            method = request.method  # methods are case-sensitive (RFC 9110)
            if lock_url:
                if method not in LOCK_URL_METHODS:
                    return _not_allowed(LOCK_URL_METHODS)
                return await self._lock_url(request, facts, method, path)
            if method not in STATE_METHODS:
                return _not_allowed(STATE_METHODS)
            return await self._state_url(request, facts, method, path)
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
            if not getattr(exc, "audited", False):
                # refused by the transport itself (bad path, bad ?ID=, proxy rules ...)
                try:
                    await self._refused(request, facts, None, exc)
                except ServiceError as audit_exc:  # the trail is down: fail closed
                    return protocol_error(audit_exc)
            return protocol_error(exc)

    async def _state_url(
        self, request: Request, facts: RequestFacts, method: str, path: str
    ) -> Response:
        svc = self.service
        if method in ("GET", "HEAD"):
            state = await self._as(request, facts, svc.read, path)
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
            # Authenticated before the body is read: strangers cannot make us buffer 128 MiB.
            who = await self._as(request, facts, _identity)
            try:
                body = await read_body(request, self.max_body)
                if not body:
                    raise BadRequest("empty body: a state write needs the state JSON")
            except ServiceError as exc:
                await self._refused(request, facts, who, exc)
                raise
            out = await self._as(
                request, facts, svc.write, path, body, lock_id, expected,
                who=who, bytes_in=len(body),
            )  # fmt: skip
            return Response(b"", status_code=200, headers={"X-Stateward-Version": str(out.seq)})
        if method == "DELETE":
            await self._as(request, facts, svc.delete, path)
            return Response(b"", status_code=200)
        if method == "LOCK":
            return await self._lock(request, facts, path)
        return await self._unlock(request, facts, path)  # UNLOCK

    async def _lock_url(
        self, request: Request, facts: RequestFacts, method: str, path: str
    ) -> Response:
        if method in ("GET", "HEAD"):
            info = await self._as(request, facts, self.service.get_lock_info, path)
            if info is None:
                return text_error(404, f"{path} is not locked")
            return Response(b"" if method == "HEAD" else info, media_type="application/json")
        if method in ("LOCK", "POST", "PUT"):
            return await self._lock(request, facts, path)
        return await self._unlock(request, facts, path)

    async def _lock(self, request: Request, facts: RequestFacts, path: str) -> Response:
        body = await self._body(request, MAX_LOCK_BODY)
        info = await self._as(request, facts, self.service.lock, path, body, bytes_in=len(body))
        return Response(info.raw, status_code=200, media_type="application/json")

    async def _unlock(self, request: Request, facts: RequestFacts, path: str) -> Response:
        body = await self._body(request, MAX_LOCK_BODY)
        await self._as(request, facts, self.service.unlock, path, body, bytes_in=len(body))
        return Response(b"", status_code=200)

    @staticmethod
    async def _body(request: Request, limit: int) -> Body:
        body = await read_body(request, limit)
        verify_content_md5(request, body)
        return body


def _identity(who: Principal) -> Principal:
    """Authentication only (the POST body is read after it)."""
    return who


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
