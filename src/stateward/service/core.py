"""The service façade: one object that wires the operation classes over one unit of work.

Transports and jobs never call it directly: every request or job step goes through the gate
(``gate/``), which authenticates, opens the audit context and records the outcome, and names
the operation to run as ``service.<group>.<method>``. Each group is a plain class in its own
module; what they share (settings, clock, unit of work, audit trail, authorization, versions)
is built here once and injected (``service/deps.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from stateward.config import Settings
from stateward.crypto.barrier import Barrier
from stateward.domain.errors import Unavailable
from stateward.domain.policy import PolicyConfig
from stateward.service.admin import AdminOps
from stateward.service.alerts import AlertOps
from stateward.service.audit import AuditOps
from stateward.service.authz import Authorizer
from stateward.service.cache import BodyCache
from stateward.service.deps import Deps
from stateward.service.history import HistoryOps
from stateward.service.imports import ImportOps
from stateward.service.keys import KeyOps
from stateward.service.locking import LockOps
from stateward.service.secrets import SecretOps
from stateward.service.tokens import TokenOps
from stateward.service.trail import AuditTrail
from stateward.service.uow import UnitOfWork
from stateward.service.versions import VersionStore
from stateward.service.writes import WriteOps
from stateward.storage import info_repo
from stateward.storage.leases import Lease
from stateward.storage.transactions import Engine

CACHE_BYTES = 64 * 1024 * 1024
CACHE_ENTRY = 4 * 1024 * 1024


class StateService:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        barrier: Barrier,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.barrier = barrier
        #: The time source (replaceable, e.g. by a test's fake clock: every part reads it
        #: through :meth:`now`).
        self.clock = clock
        now = self.now
        self.cache = BodyCache(CACHE_BYTES, CACHE_ENTRY)
        self.trail = AuditTrail(engine, now)
        self.uow = UnitOfWork(engine, self.trail)
        self.authz = Authorizer(PolicyConfig(roles=settings.roles), now)
        self.versions = VersionStore(settings, self.uow, barrier, self.cache, now)
        deps = Deps(settings, now, self.uow, self.trail, self.authz, self.versions, barrier)
        #: Reading and writing states (the protocol's GET and POST), rollback.
        self.writes = WriteOps(deps)
        #: The listing, a path's history, one version, a diff.
        self.history = HistoryOps(deps)
        #: Delete, restore, purge, protect, the guard override, events, maintenance.
        self.admin = AdminOps(deps)
        self.locks = LockOps(deps)
        self.tokens = TokenOps(deps)
        self.keys = KeyOps(deps, self.job_lease)
        self.audit = AuditOps(deps)
        self.alerts = AlertOps(deps)
        self.secrets = SecretOps(deps)
        self.imports = ImportOps(deps)

    def now(self) -> float:
        return self.clock()

    def job_lease(self, name: str) -> Lease:
        """The lease that runs background job ``name`` on one replica at a time
        (storage/leases.py); the job asks ``held()`` before each step."""
        return Lease(self.engine, name, ttl=self.settings.job_lease_seconds)

    def ready(self) -> bool:
        """The metadata store answers (``/readyz``)."""
        try:
            with self.uow.read() as conn:
                info_repo.ping(conn)
        except Unavailable:
            return False
        return True

    def kms_call_counts(self) -> list[tuple[str, str, str, int]]:
        """``(provider, kind, operation, calls)`` of every key provider that counts its calls
        to a remote KMS (the ``stateward_kms_calls`` counter)."""
        out: list[tuple[str, str, str, int]] = []
        for name, provider in sorted(self.barrier.keys.providers.items()):
            counts = getattr(provider, "call_counts", None)
            if counts is not None:
                out.extend((name, provider.kind, op, n) for op, n in sorted(counts().items()))
        return out

    def close(self) -> None:
        """Close the metadata store's connections."""
        self.engine.dispose()


__all__ = ["StateService"]
