"""The gate: the one door into the service (docs/architecture.md).

Every request of every transport (the ``http`` protocol endpoint, the JSON API, the CLI) and
every job step that acts on states becomes one *session* here:

1. the session opens the request's audit context (operation, source, user agent, request ID);
2. it authenticates the caller's credentials through the authenticator registered for their
   type (tokens, CI OIDC and client certificates today), unless the caller is already known
   (the offline CLI, jobs);
3. the transport may ask it to authorize an action before doing work of its own (a POST is
   authorized before its body is read); every operation authorizes itself as its first step;
4. it runs the operation, named as ``service.<group>.<method>`` with its arguments (typed
   through ``ParamSpec``: mypy checks them against the operation's signature);
5. it records the outcome exactly once: an operation that changed something recorded itself
   in its own transaction, anything else -- a read, a refusal, a failure -- is recorded when the
   session closes, before the transport answers. If that record cannot be written, the
   request fails (fail closed).

Transports translate; they never open an audit context, authenticate, or call the service
themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextvars import Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio.to_thread

from stateward.config import Settings
from stateward.domain.actions import Action
from stateward.domain.audit_record import Outcome
from stateward.domain.errors import ServiceError, Unauthorized
from stateward.domain.paths import StatePath
from stateward.domain.policy import STORE_WIDE
from stateward.domain.principal import SYSTEM, Principal
from stateward.service import context
from stateward.service.context import AuditContext
from stateward.service.core import StateService

P = ParamSpec("P")
T = TypeVar("T")

#: Turns one kind of credentials into a principal, or raises Unauthorized/Throttled/Unavailable.
Authenticate = Callable[[Any], Principal]
NO_CREDENTIALS = "authentication required: send a stateward token or CI OIDC token as the password"


@dataclass(frozen=True, slots=True)
class Caller:
    """What a transport knows of a request before the gate: what is being called, from where,
    and by whom when that is already known."""

    operation: str  # "GET /state", "POST /api/v1/rollback", "cli rollback", "job maintenance"
    source: str = ""
    user_agent: str = ""
    #: Known without credentials: the offline CLI (``cli:<user>``), jobs (``system:…``).
    principal: Principal | None = None
    #: The state path the request names, when the transport can tell (audited even when the
    #: request is refused before an operation runs).
    path: str | None = None
    request_id: str | None = None

    @classmethod
    def job(cls, name: str, principal: Principal = SYSTEM) -> Caller:
        """A background job's step (recorded with ``name`` as its operation)."""
        return cls(name[:64], "internal", principal=principal)


class Session:
    """One request through the gate. Use it as a context manager (``with gate.session(c)``):
    leaving the block records the outcome, or raises Unavailable when it cannot be recorded."""

    def __init__(self, gate: Gate, caller: Caller) -> None:
        self.gate = gate
        self.ctx = context.new(
            caller.operation, caller.source, caller.user_agent, caller.request_id
        )
        self.ctx.path = caller.path
        self.ctx.who = caller.principal
        self.used = False
        self._credentials: object | None = None
        self._tried = caller.principal is not None

    # -- the steps -----------------------------------------------------------------------------

    def identify(
        self, credentials: object, *, source: str | None = None, user_agent: str | None = None
    ) -> None:
        """The request's credentials (authenticated on first need), and its client as
        resolved by the transport (behind a trusted proxy: the forwarded address)."""
        self._credentials = credentials
        if source is not None:
            self.ctx.source = source
        if user_agent is not None:
            self.ctx.user_agent = user_agent[:256]

    def authenticate(self) -> Principal:
        """The caller's principal, authenticating its credentials the first time."""
        self.used = True
        if self.ctx.who is not None:
            return self.ctx.who
        self._tried = True
        self.ctx.who = self.gate.authenticate(self._credentials)
        return self.ctx.who

    def authorize(self, action: Action, path: str) -> StatePath:
        """Refuse now unless the caller may do ``action`` on ``path`` (before a transport
        spends memory or time on the request); the operation still checks for itself."""
        who = self.authenticate()
        return self.gate.ops.authz.authorize(who, action, path)

    def run(
        self, op: Callable[Concatenate[Principal, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``op(principal, *args, **kwargs)`` inside this session."""
        return op(self.authenticate(), *args, **kwargs)

    def note(self, **facts: Any) -> None:
        """Facts for the record (``bytes_in``, ``lock_id`` …) known to the transport."""
        self.ctx.facts.update({k: v for k, v in facts.items() if v is not None})

    def close(self, exc: BaseException | None) -> None:
        """Record the outcome unless the operation recorded itself; raises Unavailable if the
        record cannot be written (the transport then fails the request)."""
        ctx = self.ctx
        if ctx.recorded or (exc is None and not self.used):
            return
        if ctx.action is None and ctx.who is None and not self._tried:
            ctx.action = "request"  # refused by the transport before authentication
        trail = self.gate.ops.trail
        if exc is None:
            trail.record_outcome(ctx, "ok", 200)
        elif isinstance(exc, ServiceError):
            outcome: Outcome = "denied" if exc.denied else "failed"
            trail.record_outcome(ctx, outcome, exc.status, str(exc))
        else:
            trail.record_outcome(ctx, "failed", 500, "internal error")

    # -- as a context manager ------------------------------------------------------------------

    def __enter__(self) -> Session:
        self._token: Token[AuditContext | None] = context.activate(self.ctx)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close(exc)
        finally:
            context.deactivate(self._token)


class AsyncSession:
    """A :class:`Session` for an asyncio transport: each step that may block (the store, a key
    service, an identity provider) runs in a worker thread, inside the session's context."""

    def __init__(self, gate: Gate, caller: Caller) -> None:
        self.session = Session(gate, caller)

    @property
    def ctx(self) -> AuditContext:
        return self.session.ctx

    def identify(
        self, credentials: object, *, source: str | None = None, user_agent: str | None = None
    ) -> None:
        self.session.identify(credentials, source=source, user_agent=user_agent)

    def note(self, **facts: Any) -> None:
        self.session.note(**facts)

    async def authenticate(self) -> Principal:
        return await self._in_thread(self.session.authenticate)

    async def authorize(self, action: Action, path: str) -> StatePath:
        return await self._in_thread(self.session.authorize, action, path)

    async def run(
        self, op: Callable[Concatenate[Principal, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return await self._in_thread(functools.partial(self.session.run, op, *args, **kwargs))

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        def call() -> T:
            token = context.activate(self.session.ctx)
            try:
                return fn(*args)
            finally:
                context.deactivate(token)

        return await anyio.to_thread.run_sync(call)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._in_thread(self.session.close, exc)


class Gate:
    def __init__(
        self,
        service: StateService,
        authenticators: Mapping[type, Authenticate] | None = None,
    ) -> None:
        self._service = service
        self._authenticators = dict(authenticators or {})

    @property
    def ops(self) -> StateService:
        """The operations a session may run (``gate.ops.writes.write`` …): name them, pass
        them to :meth:`Session.run`; never call them directly from a transport."""
        return self._service

    @property
    def settings(self) -> Settings:
        return self._service.settings

    def session(self, caller: Caller) -> Session:
        return Session(self, caller)

    def asession(self, caller: Caller) -> AsyncSession:
        return AsyncSession(self, caller)

    def call(
        self,
        caller: Caller,
        op: Callable[Concatenate[Principal, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """One operation as one session (the common case)."""
        with self.session(caller) as s:
            return s.run(op, *args, **kwargs)

    def authenticate(self, credentials: object | None) -> Principal:
        if credentials is None:
            raise Unauthorized(NO_CREDENTIALS)
        authenticate = self._authenticators.get(type(credentials))
        if authenticate is None:
            raise Unauthorized("this kind of credentials is not accepted here")
        return authenticate(credentials)

    def permits(self, credentials: object, action: Action, path: str = STORE_WIDE) -> Principal:
        """Authenticate and authorize without running an operation or writing a record: for
        requests that read no state and change nothing (``/metrics`` scrapes, which would
        otherwise fill the trail with a record every 15 seconds)."""
        who = self.authenticate(credentials)
        if path == STORE_WIDE:
            self._service.authz.authorize_store(who, action)
        else:
            self._service.authz.authorize(who, action, path)
        return who
