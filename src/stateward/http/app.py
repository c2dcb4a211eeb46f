"""The ASGI application: protocol routes, JSON API, health, metrics, and the background jobs.

Every route turns its request into one gate session (``gate/``); this module only assembles
them, and maps service errors to HTTP answers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from stateward import __version__, metrics
from stateward.domain.errors import BadRequest, ServiceError
from stateward.gate import Gate
from stateward.http import metrics as http_metrics
from stateward.http.api import build_api, caller_of
from stateward.http.backend import BackendEndpoint, is_backend_path
from stateward.http.clientinfo import ClientResolver
from stateward.http.errors import error_headers, status_for
from stateward.http.headers import SecurityHeaders
from stateward.http.requestid import RequestIdMiddleware
from stateward.jobs.runner import Jobs


class Dispatcher:
    """Sends protocol requests straight to the backend endpoint and everything else (JSON API,
    health, lifespan) to FastAPI: the hot path skips FastAPI's routing and middleware."""

    def __init__(self, backend: BackendEndpoint, api: FastAPI) -> None:
        self.backend = backend
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_backend_path(scope["path"]):
            await self.backend(scope, receive, send)
        else:
            await self.api(scope, receive, send)


def create_app(gate: Gate, run_jobs: bool = True) -> ASGIApp:
    settings = gate.settings
    clients = ClientResolver(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        jobs = Jobs(gate)
        if run_jobs:
            jobs.start()
        yield
        await jobs.stop()

    app = FastAPI(
        title="stateward",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.gate = gate
    app.state.clients = clients
    app.include_router(build_api(gate))

    @app.exception_handler(ServiceError)
    async def _service_error(_r: Request, exc: ServiceError) -> Response:
        return JSONResponse(
            {"error": str(exc)}, status_code=status_for(exc), headers=error_headers(exc)
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        """A request refused before it reached an operation: recorded as such (anonymous)."""
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()))
        message = f"invalid request: {loc}: {first.get('msg', '')}"
        try:
            async with gate.asession(caller_of(request)):
                raise BadRequest(message)
        except BadRequest:
            return JSONResponse({"error": message}, status_code=400)
        except ServiceError as audit_exc:  # the trail is down: fail closed
            return await _service_error(request, audit_exc)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return PlainTextResponse("ok\n")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        ok = await run_in_threadpool(gate.ops.ready)
        return PlainTextResponse(
            "ready\n" if ok else "store unreachable\n", status_code=200 if ok else 503
        )

    # -- observability (docs/observability.md): /metrics, request IDs, request metrics --
    app.include_router(http_metrics.metrics_router(gate, clients, settings.metrics_public))
    metrics.bind_store(gate.ops.kms_call_counts, gate.ops.history.state_counts)

    backend = BackendEndpoint(gate, settings.max_body_bytes, clients)
    inner = SecurityHeaders(Dispatcher(backend, app), always_hsts=bool(settings.trusted_proxies))
    routes = http_metrics.api_route_paths(app)
    return RequestIdMiddleware(http_metrics.MetricsMiddleware(inner, routes))
