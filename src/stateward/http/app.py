"""The ASGI application: protocol routes, JSON API, health, and the maintenance loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from stateward import __version__
from stateward.auth.authenticator import Authenticator
from stateward.errors import ServiceError
from stateward.http.api import build_api
from stateward.http.backend import BackendEndpoint, is_backend_path
from stateward.http.clientinfo import ClientResolver
from stateward.http.errors import error_headers, status_for
from stateward.http.headers import SecurityHeaders
from stateward.principal import SYSTEM
from stateward.service.core import StateService

log = logging.getLogger("stateward")


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


def create_app(
    service: StateService,
    run_maintenance: bool = True,
    auth: Authenticator | None = None,
) -> SecurityHeaders:
    settings = service.settings
    interval = settings.maintenance_interval_seconds
    auth = auth or Authenticator(service, settings)
    clients = ClientResolver(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = None
        if run_maintenance and interval > 0:
            task = asyncio.create_task(_maintenance_loop(service, interval))
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="stateward",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.auth = auth
    app.state.clients = clients
    app.include_router(build_api(service))

    @app.exception_handler(ServiceError)
    async def _service_error(_r: Request, exc: ServiceError) -> Response:
        return JSONResponse(
            {"error": str(exc)}, status_code=status_for(exc), headers=error_headers(exc)
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            {"error": f"invalid request: {loc}: {first.get('msg', '')}"}, status_code=400
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return PlainTextResponse("ok\n")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        ok = await run_in_threadpool(service.ready)
        return PlainTextResponse(
            "ready\n" if ok else "store unreachable\n", status_code=200 if ok else 503
        )

    backend = BackendEndpoint(service, settings.max_body_bytes, auth, clients)
    return SecurityHeaders(Dispatcher(backend, app), always_hsts=bool(settings.trusted_proxies))


async def _maintenance_loop(service: StateService, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            report = await run_in_threadpool(service.run_maintenance, SYSTEM)
            log.info("maintenance: %s", report.to_dict())
        except Exception:
            log.exception("maintenance run failed")
