"""The JSON API under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``).

State paths travel as a ``path`` query parameter or body field rather than in the URL, so no
state name can ever collide with an API sub-resource.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from stateward.domain.principal import Principal
from stateward.gate import Caller, Gate
from stateward.http.clientinfo import ClientResolver

PathQ = Annotated[str, Query(max_length=256, description="state path, e.g. team/app/env")]

P = ParamSpec("P")
T = TypeVar("T")


def caller_of(request: Request) -> Caller:
    """The gate's view of an API request before its client is resolved."""
    return Caller(
        f"{request.method} {request.url.path[:64]}",
        request.client.host if request.client else "",
        request.headers.get("user-agent", ""),
    )


async def _call(
    request: Request,
    op: Callable[Concatenate[Principal, P], T],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """One API request as one gate session: resolve the client, run ``op``."""
    gate: Gate = request.app.state.gate
    clients: ClientResolver = request.app.state.clients
    async with gate.asession(caller_of(request)) as session:
        facts = clients.facts(request)
        session.identify(facts, source=facts.source, user_agent=facts.user_agent)
        return await session.run(op, *args, **kwargs)


class PathBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(max_length=256)


class RollbackBody(PathBody):
    seq: int = Field(ge=1)
    lock_id: str | None = Field(default=None, max_length=256)


class ProtectBody(PathBody):
    protected: bool = True


class AckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[int] = Field(min_length=1, max_length=1000)


def build_api(gate: Gate) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    ops = gate.ops

    @router.get("/states")
    async def list_states(
        request: Request, prefix: str = "", include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        rows = await _call(request, ops.history.list_states, prefix, include_deleted)
        return [r.to_dict() for r in rows]

    @router.get("/versions")
    async def history(
        request: Request, path: PathQ, limit: int = 100, before: int | None = None
    ) -> list[dict[str, Any]]:
        rows = await _call(request, ops.history.history, path, limit, before)
        return [r.to_dict() for r in rows]

    @router.get("/version", response_model=None)
    async def version(
        request: Request, path: PathQ, seq: int, download: bool = False, sanitized: bool = False
    ) -> dict[str, Any] | Response:
        if sanitized:
            body = await _call(request, ops.secrets.sanitized_state, path, seq)
            return Response(body, media_type="application/json")
        if download:
            _, body = await _call(request, ops.history.get_version_body, path, seq)
            return Response(body, media_type="application/json")
        return (await _call(request, ops.history.get_version, path, seq)).to_dict()

    @router.get("/findings")
    async def findings(request: Request, path: PathQ, seq: int) -> list[dict[str, str]]:
        return await _call(request, ops.secrets.stored_findings, path, seq)

    @router.get("/diff")
    async def diff(
        request: Request,
        path: PathQ,
        from_seq: Annotated[int, Query(alias="from")],
        to_seq: Annotated[int, Query(alias="to")],
    ) -> dict[str, Any]:
        return await _call(request, ops.history.diff, path, from_seq, to_seq)

    @router.post("/rollback")
    async def rollback(request: Request, body: RollbackBody) -> dict[str, Any]:
        out = await _call(request, ops.writes.rollback, body.path, body.seq, body.lock_id)
        return {"created": out.created, "seq": out.seq, "serial": out.serial}

    @router.get("/locks")
    async def list_locks(request: Request) -> list[dict[str, Any]]:
        return [v.to_dict() for v in await _call(request, ops.locks.list_locks)]

    @router.post("/locks/break")
    async def break_lock(request: Request, body: PathBody) -> dict[str, Any]:
        return (await _call(request, ops.locks.break_lock, body.path)).to_dict()

    @router.post("/delete")
    async def delete(request: Request, body: PathBody) -> dict[str, str]:
        await _call(request, ops.admin.delete, body.path)
        return {"deleted": body.path}

    @router.post("/restore")
    async def restore(request: Request, body: PathBody) -> dict[str, str]:
        await _call(request, ops.admin.restore, body.path)
        return {"restored": body.path}

    @router.post("/purge")
    async def purge(request: Request, body: PathBody) -> dict[str, Any]:
        n = await _call(request, ops.admin.purge, body.path)
        return {"purged": body.path, "versions_removed": n}

    @router.post("/protect")
    async def protect(request: Request, body: ProtectBody) -> dict[str, Any]:
        await _call(request, ops.admin.set_protected, body.path, body.protected)
        return {"path": body.path, "protected": body.protected}

    @router.post("/allow-next-write")
    async def allow_next_write(request: Request, body: PathBody) -> dict[str, str]:
        await _call(request, ops.admin.allow_next_write, body.path)
        return {"path": body.path, "override": "next write accepted regardless of guards"}

    @router.get("/events")
    async def events(
        request: Request, path: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return [e.to_dict() for e in await _call(request, ops.admin.events, path, limit)]

    @router.post("/maintenance")
    async def maintenance(request: Request) -> dict[str, Any]:
        return (await _call(request, ops.admin.run_maintenance)).to_dict()

    @router.get("/alerts")
    async def list_alerts(
        request: Request,
        include_acknowledged: Annotated[bool, Query(alias="all")] = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        rows = await _call(request, ops.alerts.list_alerts, include_acknowledged, limit)
        return [a.to_dict() for a in rows]

    @router.post("/alerts/ack")
    async def ack_alerts(request: Request, body: AckBody) -> dict[str, Any]:
        return (await _call(request, ops.alerts.acknowledge_alerts, body.ids)).to_dict()

    return router
