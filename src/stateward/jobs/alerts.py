"""The alert follower: reads the audit trail (the ``alerts`` cursor), evaluates the rules,
checks held locks after each poll, and for every new alert stores it, logs one WARNING line,
counts it and queues it for the webhooks.

A first start begins at the current end of the trail (enabling alerts on a store with history
does not replay months of deletes as fresh alerts); later starts resume at the cursor, so
records written while the server was down (the offline CLI, another replica) still alert.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from stateward import metrics
from stateward.config import Settings
from stateward.domain.alerts import Alert, AlertDraft
from stateward.domain.audit_record import AuditRecord
from stateward.jobs.evaluator import AlertEvaluator
from stateward.jobs.follower import AuditFollower, TrailReader
from stateward.jobs.lease import JobLease
from stateward.jobs.webhook import WebhookConfigError, WebhookDispatcher
from stateward.service.views import LockView

log = logging.getLogger("stateward.alerts")
FOLLOWER = "alerts"


class AlertTrail(TrailReader, Protocol):
    """What the alert engine reads of the trail (``service/audit.py``, for jobs)."""

    def read_before(self, path: str, principal: str, since: float, before_seq: int) -> bool: ...

    def authentications_before(self, seq: int, window: float) -> list[AuditRecord]: ...


class AlertStore(Protocol):
    """Where alerts go, and the locks long-lock rules look at (``service/alerts.py``)."""

    def store_alert(self, draft: AlertDraft) -> Alert | None: ...

    def held_locks(self) -> list[LockView]: ...


class AlertEngine:
    def __init__(
        self,
        store: AlertStore,
        trail: AlertTrail,
        evaluator: AlertEvaluator,
        dispatcher: WebhookDispatcher,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.trail = trail
        self.clock = clock
        self.evaluator = evaluator
        self.dispatcher = dispatcher

    def handle(self, record: AuditRecord) -> None:
        """The follower's handler: raises (and the batch is retried) if an alert cannot be
        stored; the dedup key keeps the retry from storing anything twice."""
        for draft in self.evaluator.evaluate(record):
            self.raise_alert(draft)

    def idle(self) -> None:
        """After each poll: long-held locks, and forgetting quiet bursts."""
        now = self.clock()
        if self.evaluator.lock_rules:
            for draft in self.evaluator.check_locks(self.store.held_locks(), now):
                self.raise_alert(draft)
                self.evaluator.lock_alerted(draft.dedup)
        self.evaluator.prune(now)

    def raise_alert(self, draft: AlertDraft) -> Alert | None:
        alert = self.store.store_alert(draft)
        if alert is None:
            return None  # raised before (a redelivered record, another replica)
        log.warning(
            "alert #%d %s %s (rule %s): %s",
            alert.id,
            alert.severity,
            alert.kind,
            alert.rule,
            alert.summary,
        )
        metrics.alert_raised(alert.kind)
        self.dispatcher.send(alert, draft)
        return alert

    def reset(self) -> None:
        """Forget every in-memory counter (auth-failure windows, lock alerts already sent)."""
        old = self.evaluator
        self.evaluator = AlertEvaluator([*old.rules, *old.lock_rules], reader_seen=old.reader_seen)

    def prime(self, cursor: int) -> None:
        """Rebuild the auth-failure counters from the records just before the cursor."""
        window = self.evaluator.auth_window_seconds
        if window <= 0 or cursor <= 0:
            return
        for record in self.trail.authentications_before(cursor, window):
            self.evaluator.prime(record)


class AlertFollower(AuditFollower):
    """The ``alerts`` audit follower, owning its webhook threads."""

    def __init__(
        self,
        trail: AlertTrail,
        engine: AlertEngine,
        interval: float,
        lease: JobLease | None = None,
    ) -> None:
        super().__init__(
            trail,
            FOLLOWER,
            [engine.handle],
            interval=interval,
            on_idle=engine.idle,
            lease=lease,
        )
        self.alert_engine = engine

    def start(self) -> None:
        self.trail.start_follower_at_head(self.name)
        self.alert_engine.dispatcher.start()
        super().start()

    def on_lead(self) -> None:
        """Counters start afresh from the trail: another replica may have evaluated the
        records since this one last led."""
        self.alert_engine.reset()
        self.alert_engine.prime(self.cursor())

    def stop(self) -> None:
        super().stop()
        self.alert_engine.dispatcher.stop()


def build_alert_follower(
    store: AlertStore,
    trail: AlertTrail,
    settings: Settings,
    clock: Callable[[], float],
    lease: JobLease | None = None,
) -> AlertFollower | None:
    """The follower for the configured rules, or None without rules. Raises
    :class:`WebhookConfigError` when a webhook's secret cannot be loaded (the server does not
    start with an alert channel it cannot sign for)."""
    if not settings.alert_rules:
        return None
    try:
        dispatcher = WebhookDispatcher.from_configs(settings.alert_webhooks)
    except WebhookConfigError as exc:
        log.error("alerts: %s", exc)
        raise
    evaluator = AlertEvaluator(settings.alert_rules, reader_seen=trail.read_before)
    engine = AlertEngine(store, trail, evaluator, dispatcher, clock)
    return AlertFollower(trail, engine, settings.audit_follow_interval_seconds, lease)
