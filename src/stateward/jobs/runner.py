"""Starting and stopping every background job of ``serve``: the maintenance loop, the audit
followers (SIEM sinks, alert rules) and the secret scanner, each under its lease so that one
replica at a time runs it."""

from __future__ import annotations

import asyncio
import contextlib

from stateward.gate import Gate
from stateward.jobs.alerts import build_alert_follower
from stateward.jobs.follower import AuditFollower
from stateward.jobs.maintenance import maintenance_loop
from stateward.jobs.scanner import SecretScanner
from stateward.jobs.sinks import build_sink


class Jobs:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self._task: asyncio.Task[None] | None = None
        self._followers: list[AuditFollower] = []
        self._scanner: SecretScanner | None = None

    def start(self) -> None:
        """Start every job (inside the server's event loop)."""
        ops, settings = self.gate.ops, self.gate.settings
        if settings.maintenance_interval_seconds > 0:
            lease = ops.job_lease("maintenance")
            loop = maintenance_loop(self.gate, settings.maintenance_interval_seconds, lease)
            self._task = asyncio.create_task(loop)
        self._followers = start_followers(self.gate)
        self._scanner = SecretScanner(
            ops.secrets,
            settings.audit_follow_interval_seconds,
            lease=ops.job_lease("secret-scanner"),
        )
        self._scanner.start()

    async def stop(self) -> None:
        for follower in self._followers:
            follower.stop()
        if self._scanner is not None:
            self._scanner.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def start_followers(gate: Gate) -> list[AuditFollower]:
    """Background followers of the audit trail: the configured SIEM sinks, and the alert
    rules (``alerts``: stores, logs, counts and sends alerts to webhooks)."""
    ops, settings = gate.ops, gate.settings
    followers: list[AuditFollower] = []
    interval = settings.audit_follow_interval_seconds
    sinks = [build_sink(c) for c in settings.audit_sinks]
    if sinks:
        lease = ops.job_lease("audit-sinks")
        followers.append(AuditFollower(ops.audit, "sinks", sinks, interval=interval, lease=lease))
    alert_follower = build_alert_follower(
        ops.alerts, ops.audit, settings, ops.clock, ops.job_lease("alerts")
    )
    if alert_follower is not None:
        followers.append(alert_follower)
    for follower in followers:
        follower.start()
    return followers
