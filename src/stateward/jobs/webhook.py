"""Webhook delivery: a signed JSON POST per alert, retried with exponential backoff, on one
background thread per webhook with a bounded queue (never on the request path; a receiver that
is slow or down delays only its own queue).

Signature (docs/alerts.md): ``X-Stateward-Timestamp: <unix seconds>`` and
``X-Stateward-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`` over the
exact body bytes. Each attempt is signed afresh (its own timestamp); ``X-Stateward-Delivery``
stays the same across the attempts of one alert, so a receiver can drop a repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import os
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from stateward import __version__
from stateward.config.alerts import MIN_SECRET_BYTES, SEVERITY_RANK, WebhookConfig
from stateward.domain.alerts import Alert, AlertDraft, iso

log = logging.getLogger("stateward.alerts")
QUEUE_SIZE = 1000
MAX_RESPONSE = 64 * 1024
SIGNATURE_HEADER = "X-Stateward-Signature"
TIMESTAMP_HEADER = "X-Stateward-Timestamp"
DELIVERY_HEADER = "X-Stateward-Delivery"


class WebhookConfigError(Exception):
    """A webhook's secret cannot be loaded; the message names the webhook, never the secret."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Stateward-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float | None = None,
    tolerance: float = 300.0,
) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse stale timestamps."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def payload(alert: Alert, draft: AlertDraft) -> dict[str, Any]:
    """The JSON body: the alert, a Slack/Teams-compatible ``text``, and the audit record that
    raised it (names, numbers and one-line reasons only: never state content or credentials).
    """
    record = None
    if draft.record is not None:
        record = draft.record.to_dict()
        record.pop("prev_hash", None)
    return {
        "type": "stateward.alert",
        "id": alert.id,
        "at": alert.at,
        "time": iso(alert.at),
        "rule": alert.rule,
        "kind": alert.kind,
        "severity": alert.severity,
        "path": alert.path,
        "principal": alert.principal,
        "summary": alert.summary,
        "audit_seq": alert.audit_seq,
        "text": f"[stateward] {alert.severity.upper()} {alert.kind}: {alert.summary}",
        "details": draft.details,
        "audit": record,
    }


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def load_secret(config: WebhookConfig, env: Mapping[str, str]) -> bytes:
    if config.secret_env is not None:
        value = env.get(config.secret_env)
        if value is None:
            raise WebhookConfigError(
                f"webhook {config.label}: environment variable {config.secret_env} is not set"
            )
        secret = value.strip().encode()
    else:
        assert config.secret_file is not None
        try:
            secret = config.secret_file.read_bytes().strip()
        except OSError as exc:
            raise WebhookConfigError(
                f"webhook {config.label}: cannot read secret_file {config.secret_file}: "
                f"{exc.strerror}"
            ) from None
    if len(secret) < MIN_SECRET_BYTES:
        raise WebhookConfigError(
            f"webhook {config.label}: the secret is shorter than {MIN_SECRET_BYTES} bytes"
        )
    return secret


class WebhookSender:
    """One webhook: its queue, its thread, its retries."""

    def __init__(
        self,
        config: WebhookConfig,
        secret: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.label = config.label
        self._secret = secret
        self._clock = clock
        self._queue: queue.Queue[tuple[int, bytes, str]] = queue.Queue(maxsize=QUEUE_SIZE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        parts = urlsplit(config.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._tls: ssl.SSLContext | None = None
        if self._https:
            cafile = str(config.ca_file) if config.ca_file is not None else None
            self._tls = ssl.create_default_context(cafile=cafile)
        #: Counters for tests and status output.
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def wants(self, alert: Alert) -> bool:
        if self.config.kinds and alert.kind not in self.config.kinds:
            return False
        return SEVERITY_RANK[alert.severity] >= SEVERITY_RANK[self.config.min_severity]

    def submit(self, alert_id: int, body: bytes) -> bool:
        """Queue one alert; False (logged) when the queue is full: the alert stays stored."""
        try:
            self._queue.put_nowait((alert_id, body, uuid.uuid4().hex))
        except queue.Full:
            self.dropped += 1
            log.warning(
                "webhook %s: queue full (%d), alert #%d not sent (it is stored)",
                self.label,
                QUEUE_SIZE,
                alert_id,
            )
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"alert-webhook-{self._host}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        left = self._queue.qsize()
        if left:
            log.warning("webhook %s: stopping with %d alert(s) not sent", self.label, left)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                alert_id, body, delivery = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.deliver(alert_id, body, delivery)
            except Exception:  # never let one alert kill the thread
                log.exception("webhook %s: alert #%d delivery crashed", self.label, alert_id)

    def deliver(self, alert_id: int, body: bytes, delivery: str) -> bool:
        """POST with up to ``max_attempts`` attempts; retried on network errors, timeouts,
        5xx, 408 and 429, after ``backoff_seconds``, doubling each time."""
        attempts = self.config.max_attempts
        delay = self.config.backoff_seconds
        problem = ""
        for attempt in range(1, attempts + 1):
            try:
                status = self._post(body, delivery)
            except (OSError, http.client.HTTPException) as exc:
                problem, retry = f"{type(exc).__name__}: {exc}"[:200], True
            else:
                if 200 <= status < 300:
                    self.delivered += 1
                    log.info("webhook %s: alert #%d delivered", self.label, alert_id)
                    return True
                problem, retry = f"HTTP {status}", status >= 500 or status in (408, 429)
            if not retry:
                break
            if attempt < attempts:
                log.warning(
                    "webhook %s: alert #%d attempt %d/%d failed (%s); retrying in %gs",
                    self.label,
                    alert_id,
                    attempt,
                    attempts,
                    problem,
                    delay,
                )
                if self._stop.wait(delay):
                    break
                delay *= 2
        self.failed += 1
        log.error("webhook %s: alert #%d not delivered (%s)", self.label, alert_id, problem)
        return False

    def _post(self, body: bytes, delivery: str) -> int:
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"stateward/{__version__}",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            DELIVERY_HEADER: delivery,
        }
        timeout = self.config.timeout_seconds
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._tls
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            conn.request("POST", self._target, body=body, headers=headers)
            response = conn.getresponse()
            response.read(MAX_RESPONSE)
            return response.status
        finally:
            conn.close()


class WebhookDispatcher:
    """Every configured webhook; :meth:`send` only queues (it never blocks)."""

    def __init__(self, senders: Sequence[WebhookSender]) -> None:
        self.senders = list(senders)

    @classmethod
    def from_configs(
        cls, configs: Sequence[WebhookConfig], env: Mapping[str, str] | None = None
    ) -> WebhookDispatcher:
        env = os.environ if env is None else env
        return cls([WebhookSender(c, load_secret(c, env)) for c in configs])

    def send(self, alert: Alert, draft: AlertDraft) -> None:
        targets = [s for s in self.senders if s.wants(alert)]
        if not targets:
            return
        body = encode(payload(alert, draft))
        for sender in targets:
            sender.submit(alert.id, body)

    def start(self) -> None:
        for sender in self.senders:
            sender.start()

    def stop(self) -> None:
        for sender in self.senders:
            sender.stop()
