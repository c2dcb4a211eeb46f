"""Following the audit trail: a background thread that hands every new record, in chain order,
to handlers (SIEM sinks, alert rules), whoever wrote it (this server, the offline CLI).

Progress is a cursor per follower kept in the database, so a restart resumes where it stopped
and a record is delivered at least once. Handlers run off the request path: a slow or failing
sink never delays or fails a request. A handler that raises stops the batch; the cursor stays
before the failed record and the batch is retried on the next poll.

With several replicas on one store, a follower with a lease (``jobs/lease.py``) polls only
while its replica holds the lease: one replica ships each record, and when it dies another
resumes from the shared cursor (still at least once: the records of the last unsaved batch
may be shipped again).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from stateward.domain.audit_record import AuditRecord
from stateward.jobs.lease import JobLease

log = logging.getLogger("stateward.audit")
Handler = Callable[[AuditRecord], None]
BATCH = 500


class TrailReader(Protocol):
    """What a follower reads of the trail (``service/audit.py``'s bookkeeping for jobs)."""

    def follower_cursor(self, name: str) -> int: ...

    def save_follower_cursor(self, name: str, seq: int) -> None: ...

    def start_follower_at_head(self, name: str) -> None: ...

    def records_after(self, after: int, limit: int) -> list[tuple[int, AuditRecord]]: ...


class AuditFollower:
    def __init__(
        self,
        trail: TrailReader,
        name: str,
        handlers: Sequence[Handler],
        interval: float = 1.0,
        on_idle: Callable[[], None] | None = None,
        lease: JobLease | None = None,
    ) -> None:
        self.trail = trail
        self.name = name
        self.handlers = list(handlers)
        self.interval = interval
        self.on_idle = on_idle
        self.lease = lease
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def cursor(self) -> int:
        return self.trail.follower_cursor(self.name)

    def _save(self, seq: int) -> None:
        self.trail.save_follower_cursor(self.name, seq)

    def poll_once(self) -> int:
        """Deliver every record after the cursor; returns how many were delivered."""
        after = self.cursor()
        delivered = 0
        while True:
            rows = self.trail.records_after(after, BATCH)
            if not rows:
                break
            for seq, record in rows:
                for handler in self.handlers:
                    handler(record)
                after = seq
                delivered += 1
            self._save(after)
            if len(rows) < BATCH:
                break
        if self.on_idle is not None:
            self.on_idle()
        return delivered

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"audit-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def on_lead(self) -> None:
        """Called when this replica starts following (at start, or on taking the lease over):
        a hook for followers keeping state in memory that must be rebuilt from the trail."""

    def _run(self) -> None:
        leading = False
        while not self._stop.is_set():
            try:
                if self.lease is None or self.lease.held():
                    if not leading:
                        self.on_lead()
                        leading = True
                    self.poll_once()
                else:
                    leading = False
            except Exception:
                log.exception("audit follower %s failed; retrying", self.name)
            self._stop.wait(self.interval)
        if self.lease is not None:
            self.lease.release()
