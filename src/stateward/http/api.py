"""The JSON API under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``).

State paths travel as a ``path`` query parameter or body field rather than in the URL, so no
state name can ever collide with an API sub-resource.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from stateward.auth.authenticator import Authenticator
from stateward.http.clientinfo import ClientResolver
from stateward.principal import Principal
from stateward.service.core import StateService

PathQ = Annotated[str, Query(max_length=256, description="state path, e.g. team/app/env")]


def _who(request: Request) -> Principal:
    """Authenticate the caller (a sync dependency: FastAPI runs it in a worker thread)."""
    auth: Authenticator = request.app.state.auth
    clients: ClientResolver = request.app.state.clients
    return auth.authenticate(clients.facts(request))


# Module level on purpose: with postponed annotations FastAPI resolves ``Who`` through the
# module globals; a local alias stays an unresolved name and becomes a required query parameter.
Who = Annotated[Principal, Depends(_who)]


class PathBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(max_length=256)


class RollbackBody(PathBody):
    seq: int = Field(ge=1)
    lock_id: str | None = Field(default=None, max_length=256)


class ProtectBody(PathBody):
    protected: bool = True


def build_api(service: StateService) -> APIRouter:
    router = APIRouter(prefix="/api/v1")

    @router.get("/states")
    async def list_states(
        p: Who, prefix: str = "", include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        rows = await run_in_threadpool(service.list_states, p, prefix, include_deleted)
        return [r.to_dict() for r in rows]

    @router.get("/versions")
    async def history(
        p: Who, path: PathQ, limit: int = 100, before: int | None = None
    ) -> list[dict[str, Any]]:
        rows = await run_in_threadpool(service.history, p, path, limit, before)
        return [r.to_dict() for r in rows]

    @router.get("/version", response_model=None)
    async def version(
        p: Who, path: PathQ, seq: int, download: bool = False
    ) -> dict[str, Any] | Response:
        if download:
            _, body = await run_in_threadpool(service.get_version_body, p, path, seq)
            return Response(body, media_type="application/json")
        return (await run_in_threadpool(service.get_version, p, path, seq)).to_dict()

    @router.get("/diff")
    async def diff(
        p: Who,
        path: PathQ,
        from_seq: Annotated[int, Query(alias="from")],
        to_seq: Annotated[int, Query(alias="to")],
    ) -> dict[str, Any]:
        return await run_in_threadpool(service.diff, p, path, from_seq, to_seq)

    @router.post("/rollback")
    async def rollback(p: Who, body: RollbackBody) -> dict[str, Any]:
        out = await run_in_threadpool(service.rollback, p, body.path, body.seq, body.lock_id)
        return {"created": out.created, "seq": out.seq, "serial": out.serial}

    @router.get("/locks")
    async def list_locks(p: Who) -> list[dict[str, Any]]:
        return [v.to_dict() for v in await run_in_threadpool(service.list_locks, p)]

    @router.post("/locks/break")
    async def break_lock(p: Who, body: PathBody) -> dict[str, Any]:
        return (await run_in_threadpool(service.break_lock, p, body.path)).to_dict()

    @router.post("/delete")
    async def delete(p: Who, body: PathBody) -> dict[str, str]:
        await run_in_threadpool(service.delete, p, body.path)
        return {"deleted": body.path}

    @router.post("/restore")
    async def restore(p: Who, body: PathBody) -> dict[str, str]:
        await run_in_threadpool(service.restore, p, body.path)
        return {"restored": body.path}

    @router.post("/purge")
    async def purge(p: Who, body: PathBody) -> dict[str, Any]:
        n = await run_in_threadpool(service.purge, p, body.path)
        return {"purged": body.path, "versions_removed": n}

    @router.post("/protect")
    async def protect(p: Who, body: ProtectBody) -> dict[str, Any]:
        await run_in_threadpool(service.set_protected, p, body.path, body.protected)
        return {"path": body.path, "protected": body.protected}

    @router.post("/allow-next-write")
    async def allow_next_write(p: Who, body: PathBody) -> dict[str, str]:
        await run_in_threadpool(service.allow_next_write, p, body.path)
        return {"path": body.path, "override": "next write accepted regardless of guards"}

    @router.get("/events")
    async def events(p: Who, path: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [e.to_dict() for e in await run_in_threadpool(service.events, p, path, limit)]

    @router.post("/maintenance")
    async def maintenance(p: Who) -> dict[str, Any]:
        return (await run_in_threadpool(service.run_maintenance, p)).to_dict()

    return router
