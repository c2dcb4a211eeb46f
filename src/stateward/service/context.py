"""The audit context of one request or CLI command, carried in a context variable.

Transports open a context (:func:`begin`) in the worker thread that authenticates and calls
the service; the service fills in what it learns (the action it authorized, the path, lock ID,
serial, version, byte counts) and, for operations that change something, writes the record in
the same transaction as the change. Whatever was not recorded that way (reads, refusals,
failures) is recorded by the transport right after the call (:mod:`stateward.service.audit`).
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


@contextmanager
def begin(
    operation: str, source: str = "", user_agent: str = "", request_id: str | None = None
) -> Iterator[AuditContext]:
    rid = request_id or current_request_id() or new_request_id()  # X-Request-ID when in HTTP
    ctx = AuditContext(rid, operation, source, user_agent[:256])
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
