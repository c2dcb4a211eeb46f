"""Leases: which replica runs a background job right now.

Replicas sharing one store must not all run the same job: two secret scanners would scan (and
record) every version twice, two audit followers would ship every record twice to the SIEM,
two retention runs would race each other deleting blobs. Each job therefore runs only on the
replica holding its lease, a row in ``leases`` taken and renewed by compare-and-set inside a
write transaction — write transactions are serialized on both stores (storage/engine.py), so
two replicas can never both see the row free. No consensus protocol of our own: the
database's write lock is the arbiter.

A lease lasts ``ttl`` seconds from its last renewal, by the holder's clock: a replica that
dies (or hangs) loses its jobs to another replica within one ``ttl``. Keep the replicas'
clocks in sync (NTP); skew larger than the ``ttl`` could let two replicas hold one lease.
Jobs are written to stay correct if that ever happens (idempotent steps, re-checks inside
their write transactions): the lease is about not doing work twice, never about safety.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Engine, delete, insert, select, update

from stateward.storage.engine import READ_ONLY
from stateward.storage.schema import leases

log = logging.getLogger("stateward")

#: This process's name in ``leases.holder``: host, pid and a random part (pids are reused).
REPLICA_ID = f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

DEFAULT_TTL = 30.0


class Lease:
    """One job's lease, as seen by one replica. :meth:`held` is called before each step of
    the job; it renews the lease once a third of the ``ttl`` has passed, and a replica without
    the lease asks again only every ``ttl / 3``: a job costs one write transaction per replica
    every ``ttl / 3`` seconds, however often it steps."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        ttl: float = DEFAULT_TTL,
        holder: str = REPLICA_ID,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.name = name
        self.ttl = ttl
        self.holder = holder
        self.clock = clock
        self._until = 0.0  # our lease's expiry as last written; 0: not held
        self._next_try = 0.0  # not held: when to ask again

    def held(self) -> bool:
        """Take or renew the lease if possible; True while this replica holds it.

        A store that cannot be reached counts as not held (the job waits, fail closed)."""
        now = self.clock()
        if self._until - now > self.ttl * 2 / 3:
            return True
        if self._until == 0.0 and now < self._next_try:
            return False  # another replica has it: ask again every ttl / 3, not every step
        try:
            ok = self._claim(now)
        except Exception as exc:  # the store is down: the job pauses, the server serves on
            log.warning("lease %s: cannot reach the store (%s)", self.name, type(exc).__name__)
            ok = False
        self._until = now + self.ttl if ok else 0.0
        self._next_try = now + self.ttl / 3
        return ok

    def holder_now(self) -> str | None:
        """Who holds the lease (any replica), or None if it is free or expired."""
        with self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                row = conn.execute(select(leases).where(leases.c.name == self.name)).first()
        if row is None or row.expires_at <= self.clock():
            return None
        return str(row.holder)

    def release(self) -> None:
        """Give the lease up (on shutdown), so another replica takes over at once."""
        self._until = 0.0
        self._next_try = 0.0
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    delete(leases).where(leases.c.name == self.name, leases.c.holder == self.holder)
                )
        except Exception as exc:  # it expires by itself
            log.warning("lease %s: release failed (%s)", self.name, type(exc).__name__)

    def _claim(self, now: float) -> bool:
        with self.engine.begin() as conn:  # a write transaction: serialized across replicas
            row = conn.execute(select(leases).where(leases.c.name == self.name)).first()
            if row is None:
                conn.execute(
                    insert(leases).values(
                        name=self.name,
                        holder=self.holder,
                        acquired_at=now,
                        expires_at=now + self.ttl,
                    )
                )
            elif row.holder == self.holder or row.expires_at <= now:
                if row.holder != self.holder:
                    log.info("lease %s: taking over from %s", self.name, row.holder)
                conn.execute(
                    update(leases)
                    .where(leases.c.name == self.name)
                    .values(
                        holder=self.holder,
                        acquired_at=row.acquired_at if row.holder == self.holder else now,
                        expires_at=now + self.ttl,
                    )
                )
            else:
                return False
        return True
