"""The maintenance job: retention, purges of expired deletes and orphan collection every
``maintenance_interval_seconds``, on the replica holding the ``maintenance`` lease. Each run is
one operation through the gate, by the system principal, recorded in the audit trail."""

from __future__ import annotations

import logging

import anyio
import anyio.to_thread

from stateward.gate import Caller, Gate
from stateward.jobs.lease import JobLease
from stateward.service.views import MaintenanceReport

log = logging.getLogger("stateward")


def run_once(gate: Gate) -> MaintenanceReport:
    return gate.call(Caller.job("maintenance"), gate.ops.admin.run_maintenance)


async def maintenance_loop(gate: Gate, interval: float, lease: JobLease) -> None:
    """Run every ``interval`` seconds while this replica holds ``lease``. The lease is renewed
    at least every ``ttl / 3`` while this replica leads, so it keeps the job between runs
    (runs stay ``interval`` apart)."""
    try:
        waited = 0.0
        while True:
            step = min(interval, lease.ttl / 3)
            await anyio.sleep(step)
            waited += step
            if not await anyio.to_thread.run_sync(lease.held):
                waited = 0.0  # another replica runs it: its clock, not ours
                continue
            if waited < interval:
                continue
            waited = 0.0
            try:
                report = await anyio.to_thread.run_sync(run_once, gate)
                log.info("maintenance: %s", report.to_dict())
            except Exception:
                log.exception("maintenance run failed")
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lease.release)
