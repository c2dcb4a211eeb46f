"""The secret scanner job: a thread of ``serve`` that scans every version without a scan yet
(``SecretOps.scan_pending``), on the replica holding the ``secret-scanner`` lease."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from stateward.jobs.lease import JobLease

log = logging.getLogger("stateward.secrets")


class ScanQueue(Protocol):
    """The versions waiting for a scan (``service/secrets.py``)."""

    def scan_pending(self, limit: int = 20, go_on: Callable[[], bool] | None = None) -> int: ...


class SecretScanner:
    """The background scanner thread of ``serve``."""

    def __init__(
        self, service: ScanQueue, interval: float = 1.0, lease: JobLease | None = None
    ) -> None:
        self.service = service
        self.interval = interval
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="secret-scanner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            lease = self.lease
            try:
                leading = lease is None or lease.held()
                go_on = None if lease is None else lease.held
                busy = leading and self.service.scan_pending(go_on=go_on) > 0
            except Exception:
                log.exception("secret scanner failed; retrying")
                busy = False
            if not busy:
                self._stop.wait(self.interval)
        if self.lease is not None:
            self.lease.release()
