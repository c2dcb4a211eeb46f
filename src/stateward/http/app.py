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
from starlette.types import ASGIApp, Receive, Scope, Send

from stateward import __version__, metrics
from stateward.auth.authenticator import Authenticator
from stateward.domain.errors import ServiceError
from stateward.domain.principal import SYSTEM
from stateward.http import metrics as http_metrics
from stateward.http.api import build_api
from stateward.http.backend import BackendEndpoint, is_backend_path
from stateward.http.clientinfo import ClientResolver
from stateward.http.errors import error_headers, status_for
from stateward.http.headers import SecurityHeaders
from stateward.http.requestid import RequestIdMiddleware
from stateward.jobs.alerts import build_alert_follower
from stateward.jobs.follower import AuditFollower
from stateward.jobs.sinks import build_sink
from stateward.service import context as audit_context
from stateward.service.core import StateService
from stateward.service.secrets import SecretScanner
from stateward.service.views import MaintenanceReport
from stateward.storage.leases import Lease

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
) -> ASGIApp:
    settings = service.settings
    interval = settings.maintenance_interval_seconds
    auth = auth or Authenticator(service, settings)
    clients = ClientResolver(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = None
        if run_maintenance and interval > 0:
            lease = service.job_lease("maintenance")
            task = asyncio.create_task(_maintenance_loop(service, interval, lease))
        followers = start_followers(service) if run_maintenance else []
        scanner = SecretScanner(
            service,
            settings.audit_follow_interval_seconds,
            lease=service.job_lease("secret-scanner"),
        )
        if run_maintenance:
            scanner.start()
        yield
        for follower in followers:
            follower.stop()
        if run_maintenance:
            scanner.stop()
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
    app.state.service = service
    app.state.clients = clients
    app.include_router(build_api(service))

    @app.exception_handler(ServiceError)
    async def _service_error(_r: Request, exc: ServiceError) -> Response:
        return JSONResponse(
            {"error": str(exc)}, status_code=status_for(exc), headers=error_headers(exc)
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()))
        message = f"invalid request: {loc}: {first.get('msg', '')}"
        try:
            await run_in_threadpool(_record_invalid, service, request, message)
        except ServiceError as audit_exc:
            return await _service_error(request, audit_exc)
        return JSONResponse({"error": message}, status_code=400)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return PlainTextResponse("ok\n")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        ok = await run_in_threadpool(service.ready)
        return PlainTextResponse(
            "ready\n" if ok else "store unreachable\n", status_code=200 if ok else 503
        )

    # -- observability (docs/observability.md): /metrics, request IDs, request metrics --
    app.include_router(http_metrics.metrics_router(service, settings.metrics_public))
    metrics.bind_store(service.kms_call_counts, service.state_counts)

    backend = BackendEndpoint(service, settings.max_body_bytes, auth, clients)
    inner = SecurityHeaders(Dispatcher(backend, app), always_hsts=bool(settings.trusted_proxies))
    routes = http_metrics.api_route_paths(app)
    return RequestIdMiddleware(http_metrics.MetricsMiddleware(inner, routes))


def start_followers(service: StateService) -> list[AuditFollower]:
    """Background followers of the audit trail: the configured SIEM sinks, and the alert
    rules (``alerts``: stores, logs, counts and sends alerts to webhooks)."""
    followers: list[AuditFollower] = []
    interval = service.settings.audit_follow_interval_seconds
    sinks = [build_sink(c) for c in service.settings.audit_sinks]
    if sinks:
        lease = service.job_lease("audit-sinks")
        followers.append(
            AuditFollower(service.engine, "sinks", sinks, interval=interval, lease=lease)
        )
    alert_follower = build_alert_follower(service, service.job_lease("alerts"))
    if alert_follower is not None:
        followers.append(alert_follower)
    for follower in followers:
        follower.start()
    return followers


def _maintain(service: StateService) -> MaintenanceReport:
    with audit_context.begin("maintenance", "internal") as ctx:
        ctx.who = SYSTEM
        return service.audited(ctx, lambda: service.run_maintenance(SYSTEM))


def _record_invalid(service: StateService, request: Request, message: str) -> None:
    """An API request refused before it reached the service (unauthenticated: anonymous)."""
    source = request.client.host if request.client else ""
    operation = f"{request.method} {request.url.path[:64]}"
    with audit_context.begin(operation, source, request.headers.get("user-agent", "")) as ctx:
        ctx.action = "request"
        service.record_outcome(ctx, "failed", 400, message)


async def _maintenance_loop(service: StateService, interval: float, lease: Lease) -> None:
    """Retention and orphan collection every ``interval`` seconds, on the replica holding the
    ``maintenance`` lease. The lease is renewed at least every ``job_lease_seconds / 3`` while
    this replica leads, so it keeps the job between runs (runs stay ``interval`` apart)."""
    try:
        waited = 0.0
        while True:
            step = min(interval, lease.ttl / 3)
            await asyncio.sleep(step)
            waited += step
            if not await run_in_threadpool(lease.held):
                waited = 0.0  # another replica runs it: its clock, not ours
                continue
            if waited < interval:
                continue
            waited = 0.0
            try:
                report = await run_in_threadpool(_maintain, service)
                log.info("maintenance: %s", report.to_dict())
            except Exception:
                log.exception("maintenance run failed")
    finally:
        await run_in_threadpool(lease.release)
