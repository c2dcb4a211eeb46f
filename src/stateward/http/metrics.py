"""HTTP side of the metrics: the request-counting middleware and the ``/metrics`` endpoint.

The counters themselves live in :mod:`stateward.metrics` (no HTTP there, so the service can
count too); this module turns requests into bounded labels: a route *template*, never a raw
path, and a method from a fixed set.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stateward.domain.actions import Action
from stateward.gate import Gate
from stateward.http.backend import is_backend_path
from stateward.http.clientinfo import ClientResolver
from stateward.metrics import (
    CONTENT_TYPE,
    HTTP_DURATION,
    HTTP_REQUESTS,
    LOCK_CONFLICTS,
    LOCK_ROUTE,
    METHODS,
    OTHER,
    STATE_ROUTE,
    auth_failed,
    exposition,
)

# -- the HTTP middleware -------------------------------------------------------------------------


def route_template(scope: Scope, routes: frozenset[str]) -> str:
    """The bounded ``route`` label of a request (call it after the app ran): never the raw
    path. Protocol URLs by prefix; otherwise the template of the route the router matched
    (Starlette records it in ``scope["route"]``), or one of ``routes``; else ``other``."""
    path: str = scope["path"]
    if is_backend_path(path):
        # Like the backend's own split: the raw path, query cut off, ends with /lock.
        raw: bytes = scope.get("raw_path") or path.encode("utf-8", "replace")
        return LOCK_ROUTE if raw.split(b"?", 1)[0].endswith(b"/lock") else STATE_ROUTE
    matched = getattr(scope.get("route"), "path", None)
    if isinstance(matched, str) and matched.startswith("/"):
        return matched  # a template written in code, e.g. /api/v1/versions
    return path if path in routes else OTHER


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER


def _has_authorization(scope: Scope) -> bool:
    return any(name.lower() == b"authorization" for name, _ in scope.get("headers", ()))


class MetricsMiddleware:
    """Pure ASGI: counts and times every HTTP request by route template, method and status.

    Wraps the whole application (protocol endpoint and FastAPI alike) and sees the raw
    ``scope["path"]``. ``routes`` are exact paths of registered routes, a fallback for when the
    router did not record its match (the JSON API carries state paths in query strings and
    bodies, so its URLs have no parameters).
    """

    def __init__(self, app: ASGIApp, routes: Iterable[str]) -> None:
        self.app = app
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception before the response started ends as uvicorn's 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._observe(scope, status, time.perf_counter() - start)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route = route_template(scope, self.routes)
        method = method_label(scope["method"])
        HTTP_REQUESTS.labels(route, method, str(status)).inc()
        HTTP_DURATION.labels(route, method).observe(elapsed)
        if status == 401:
            auth_failed(
                "invalid-credentials" if _has_authorization(scope) else "missing-credentials"
            )
        elif status == 429:
            auth_failed("throttled")
        elif status == 423:
            LOCK_CONFLICTS.inc()


def api_route_paths(app: Any) -> frozenset[str]:
    """The paths of an application's registered routes (FastAPI/Starlette ``app.routes``)."""
    return frozenset(p for p in (getattr(r, "path", None) for r in app.routes) if p)


# -- the endpoint --------------------------------------------------------------------------------


def metrics_router(gate: Gate, clients: ClientResolver, public: bool) -> APIRouter:
    """``GET /metrics``: needs ``audit`` on ``**`` unless ``metrics_public`` is set. Like the
    JSON API it authenticates (401/429) and authorizes through the gate, but a scrape reads
    no state and is not recorded in the audit trail (docs/observability.md)."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if not public:
            facts = clients.facts(request)
            await run_in_threadpool(gate.permits, facts, Action.AUDIT)
        body = await run_in_threadpool(exposition)
        return Response(body, media_type=CONTENT_TYPE)

    return router
