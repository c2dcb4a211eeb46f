"""The alert follower: reads the audit trail (the ``alerts`` cursor), evaluates the rules,
checks held locks after each poll, and for every new alert stores it, logs one WARNING line,
counts it and queues it for the webhooks.

A first start begins at the current end of the trail (enabling alerts on a store with history
does not replay months of deletes as fresh alerts); later starts resume at the cursor, so
records written while the server was down (the offline CLI, another replica) still alert.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import Engine, insert, select

from stateward.domain import audit_chain as chain
from stateward.domain.alerts import Alert, AlertDraft
from stateward.domain.audit_record import AuditRecord
from stateward.domain.principal import SYSTEM
from stateward.jobs.evaluator import AlertEvaluator
from stateward.jobs.follower import AuditFollower
from stateward.jobs.webhook import WebhookConfigError, WebhookDispatcher
from stateward.storage.leases import Lease
from stateward.storage.schema import audit, audit_cursors

if TYPE_CHECKING:
    from stateward.service.core import StateService

log = logging.getLogger("stateward.alerts")
FOLLOWER = "alerts"


def _count(kind: str) -> None:
    """``stateward_alerts_total{kind}`` when the metrics module is present."""
    try:
        from stateward import metrics
    except ImportError:  # pragma: no cover - metrics are optional
        return
    raised = getattr(metrics, "alert_raised", None)
    if raised is not None:
        raised(kind)


class AlertEngine:
    def __init__(
        self,
        service: StateService,
        evaluator: AlertEvaluator,
        dispatcher: WebhookDispatcher,
    ) -> None:
        self.service = service
        self.evaluator = evaluator
        self.dispatcher = dispatcher

    def handle(self, record: AuditRecord) -> None:
        """The follower's handler: raises (and the batch is retried) if an alert cannot be
        stored; the dedup key keeps the retry from storing anything twice."""
        for draft in self.evaluator.evaluate(record):
            self.raise_alert(draft)

    def idle(self) -> None:
        """After each poll: long-held locks, and forgetting quiet bursts."""
        now = self.service.clock()
        if self.evaluator.lock_rules:
            for draft in self.evaluator.check_locks(self.service.list_locks(SYSTEM), now):
                self.raise_alert(draft)
                self.evaluator.lock_alerted(draft.dedup)
        self.evaluator.prune(now)

    def raise_alert(self, draft: AlertDraft) -> Alert | None:
        alert = self.service.store_alert(draft)
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
        _count(alert.kind)
        self.dispatcher.send(alert, draft)
        return alert

    def reset(self) -> None:
        """Forget every in-memory counter (auth-failure windows, lock alerts already sent)."""
        old = self.evaluator
        self.evaluator = AlertEvaluator([*old.rules, *old.lock_rules], reader_seen=old.reader_seen)

    def prime(self, engine: Engine, cursor: int) -> None:
        """Rebuild the auth-failure counters from the records just before the cursor."""
        window = self.evaluator.auth_window_seconds
        if window <= 0 or cursor <= 0:
            return
        with engine.connect() as conn:
            last = conn.execute(select(audit.c.at).where(audit.c.seq == cursor)).first()
            if last is None:
                return
            rows = conn.execute(
                select(audit.c.record)
                .where(
                    audit.c.seq <= cursor,
                    audit.c.at >= float(last.at) - window,
                    audit.c.action == "authenticate",
                )
                .order_by(audit.c.seq)
            ).all()
        for row in rows:
            self.evaluator.prime(chain.from_json(row.record))


class AlertFollower(AuditFollower):
    """The ``alerts`` audit follower, owning its webhook threads."""

    def __init__(
        self,
        service: StateService,
        engine: AlertEngine,
        interval: float,
        lease: Lease | None = None,
    ) -> None:
        super().__init__(
            service.engine,
            FOLLOWER,
            [engine.handle],
            interval=interval,
            on_idle=engine.idle,
            lease=lease,
        )
        self.alert_engine = engine

    def start(self) -> None:
        start_at_head(self.engine, self.name)
        self.alert_engine.dispatcher.start()
        super().start()

    def on_lead(self) -> None:
        """Counters start afresh from the trail: another replica may have evaluated the
        records since this one last led."""
        self.alert_engine.reset()
        self.alert_engine.prime(self.engine, self.cursor())

    def stop(self) -> None:
        super().stop()
        self.alert_engine.dispatcher.stop()


def start_at_head(engine: Engine, name: str) -> None:
    """A follower seen for the first time starts after the newest record."""
    with engine.begin() as conn:
        if conn.execute(select(audit_cursors.c.seq).where(audit_cursors.c.name == name)).first():
            return
        head = conn.execute(select(audit.c.seq).order_by(audit.c.seq.desc()).limit(1)).first()
        conn.execute(insert(audit_cursors).values(name=name, seq=0 if head is None else head.seq))


def build_alert_follower(service: StateService, lease: Lease | None = None) -> AlertFollower | None:
    """The follower for the configured rules, or None without rules. Raises
    :class:`WebhookConfigError` when a webhook's secret cannot be loaded (the server does not
    start with an alert channel it cannot sign for)."""
    settings = service.settings
    if not settings.alert_rules:
        return None
    try:
        dispatcher = WebhookDispatcher.from_configs(settings.alert_webhooks)
    except WebhookConfigError as exc:
        log.error("alerts: %s", exc)
        raise
    evaluator = AlertEvaluator(settings.alert_rules, reader_seen=service.read_before)
    engine = AlertEngine(service, evaluator, dispatcher)
    return AlertFollower(service, engine, settings.audit_follow_interval_seconds, lease)
