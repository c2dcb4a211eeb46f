"""What every operation class shares, built once by the façade (``service/core.py``) and
injected: settings, the clock, the unit of work, the audit trail, authorization and versions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stateward.config import Settings
from stateward.crypto.barrier import Barrier
from stateward.domain.principal import Principal
from stateward.service.authz import Authorizer
from stateward.service.trail import AuditTrail
from stateward.service.uow import UnitOfWork
from stateward.service.versions import VersionStore
from stateward.storage import events_repo
from stateward.storage.transactions import Connection


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    clock: Callable[[], float]
    uow: UnitOfWork
    trail: AuditTrail
    authz: Authorizer
    versions: VersionStore
    barrier: Barrier


class Operations:
    """Base of the operation classes: the injected parts, and recording a path's events."""

    def __init__(self, deps: Deps) -> None:
        self.settings = deps.settings
        self.clock = deps.clock
        self.uow = deps.uow
        self.trail = deps.trail
        self.authz = deps.authz
        self.versions = deps.versions
        self.barrier = deps.barrier

    def event(
        self, conn: Connection, who: Principal, action: str, path: str | None, detail: str = ""
    ) -> None:
        """Record an administrative event (break-lock, delete, rollback …) in ``conn``'s
        transaction, beside the audit record."""
        events_repo.record_event(conn, self.clock(), who.name, action, path, detail)
