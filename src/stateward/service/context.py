"""The audit context of the operation being run, carried in a context variable.

The gate (``gate/``) opens one per request or command, in the thread that runs the operation;
the service fills in what it learns (the action it authorized, the path, lock ID, serial,
version, byte counts) and, for operations that change something, writes the record in the same
transaction as the change (``service/uow.py``). Whatever was not recorded that way (reads,
refusals, failures) the gate records when the request ends. Nothing but the gate opens a
context for a request; the service opens child contexts for steps that deserve a record of
their own (``AuditTrail.child``).
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from stateward.domain.principal import Principal
from stateward.logs import current_request_id

_current: contextvars.ContextVar[AuditContext | None] = contextvars.ContextVar(
    "stateward_audit", default=None
)


@dataclass
class AuditContext:
    request_id: str
    operation: str
    source: str = ""
    user_agent: str = ""
    who: Principal | None = None
    action: str | None = None
    path: str | None = None
    recorded: bool = False
    facts: dict[str, Any] = field(default_factory=dict)


def current() -> AuditContext | None:
    return _current.get()


def note(**facts: Any) -> None:
    """Add facts (lock_id, serial, version, bytes_in, bytes_out) to the current record."""
    ctx = _current.get()
    if ctx is not None:
        ctx.facts.update({k: v for k, v in facts.items() if v is not None})


def new_request_id() -> str:
    return uuid.uuid4().hex


def new(
    operation: str, source: str = "", user_agent: str = "", request_id: str | None = None
) -> AuditContext:
    """A context for a new request (its ID: the given one, the HTTP request's, or fresh)."""
    rid = request_id or current_request_id() or new_request_id()
    return AuditContext(rid, operation, source, user_agent[:256])


def activate(ctx: AuditContext) -> contextvars.Token[AuditContext | None]:
    """Make ``ctx`` current in this thread (undo with :func:`deactivate`)."""
    return _current.set(ctx)


def deactivate(token: contextvars.Token[AuditContext | None]) -> None:
    _current.reset(token)


@contextmanager
def begin(
    operation: str, source: str = "", user_agent: str = "", request_id: str | None = None
) -> Iterator[AuditContext]:
    """A new context, current for the block."""
    ctx = new(operation, source, user_agent, request_id)
    token = activate(ctx)
    try:
        yield ctx
    finally:
        deactivate(token)
