"""Prometheus metrics: the ``/metrics`` endpoint, the HTTP middleware and the hooks.

Everything lives in this module's own :data:`REGISTRY` (never ``prometheus_client``'s global
one), so nothing another library registers leaks into the exposition.

Label values are bounded by construction -- a metric label never carries a state path, a token
name, a principal or anything else a client chooses:

- ``route`` is a *template*: ``/state/{path}``, ``/state/{path}/lock``, the path of a
  registered FastAPI route (``/api/v1/versions``, ``/healthz``, ``/metrics`` ...), or ``other``;
- ``method`` is one of :data:`METHODS` or ``other``; ``status`` is the numeric HTTP status;
- ``reason`` (auth failures) is one of :data:`AUTH_FAILURE_REASONS`;
- ``rule_kind`` (alerts) is a short token, at most :data:`MAX_ALERT_KINDS` distinct ones;
- KMS labels name configured key providers (config-bounded) and provider API operations.

Hooks for other code (cheap, thread-safe, never raise): :func:`auth_failed`,
:func:`lock_conflict`, :func:`audit_write_failed`, :func:`alert_raised`. The HTTP middleware
already counts HTTP 401/429 as auth failures and HTTP 423 as lock conflicts, so code on the
request path must not call :func:`auth_failed` / :func:`lock_conflict` for refusals that end as
those statuses (that would count them twice).
"""

from __future__ import annotations

import logging
import platform
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from stateward import __version__

log = logging.getLogger("stateward.metrics")

#: The Prometheus text format this module serves (0.0.4: every Prometheus version reads it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: ``*_created`` samples would double the number of series for no operational value.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "LOCK", "UNLOCK", "OPTIONS", "PATCH"})
STATE_ROUTE = "/state/{path}"
LOCK_ROUTE = "/state/{path}/lock"
OTHER = "other"

AUTH_FAILURE_REASONS = (
    "missing-credentials",  # HTTP 401 on a request without an Authorization header
    "invalid-credentials",  # HTTP 401 with one: unknown, expired, revoked, malformed
    "throttled",  # HTTP 429: the address or claimed token name is blocked
    "issuer-unavailable",  # an OIDC issuer's keys could not be fetched (hook only)
    OTHER,
)
MAX_ALERT_KINDS = 32
_KIND_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")

#: Request latency buckets (seconds): protocol reads are milliseconds, KMS-backed writes of
#: large states can take seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "stateward_http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "stateward_http_request_duration_seconds",
    "Time from receiving a request to sending the last byte of its response.",
    ["route", "method"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
AUTH_FAILURES = Counter(
    "stateward_auth_failures",
    "Refused authentications, by bounded reason.",
    ["reason"],
    registry=REGISTRY,
)
LOCK_CONFLICTS = Counter(
    "stateward_lock_conflicts",
    "Requests refused because another holder has the state locked (HTTP 423).",
    registry=REGISTRY,
)
AUDIT_WRITE_FAILURES = Counter(
    "stateward_audit_write_failures",
    "Audit records that could not be written.",
    registry=REGISTRY,
)
ALERTS = Counter(
    "stateward_alerts",
    "Alerts raised, by rule kind.",
    ["rule_kind"],
    registry=REGISTRY,
)
LOCK_HELD = Histogram(
    "stateward_lock_held_seconds",
    "How long state locks were held, observed when they are released (unlock, force-unlock, "
    "break-lock): what other clients of the path waited for at most.",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
    registry=REGISTRY,
)
BUILD = Info("stateward_build", "The running stateward build.", registry=REGISTRY)
BUILD.info({"version": __version__, "python": platform.python_version()})
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

for _reason in AUTH_FAILURE_REASONS:  # present at 0 from the start, so rate() works at once
    AUTH_FAILURES.labels(_reason)

_alert_kinds: set[str] = set()
_alert_lock = threading.Lock()


# -- hooks ---------------------------------------------------------------------------------------


def auth_failed(reason: str) -> None:
    """Count one refused authentication; ``reason`` outside the bounded set counts as other."""
    AUTH_FAILURES.labels(reason if reason in AUTH_FAILURE_REASONS else OTHER).inc()


def lock_conflict() -> None:
    """Count one lock conflict (HTTP 423 responses are counted by the middleware already)."""
    LOCK_CONFLICTS.inc()


def lock_released(held_seconds: float) -> None:
    """Observe how long a released lock was held."""
    LOCK_HELD.observe(max(0.0, held_seconds))


def audit_write_failed() -> None:
    """Count one audit record that could not be written."""
    AUDIT_WRITE_FAILURES.inc()


def alert_raised(rule_kind: str) -> None:
    """Count one alert. ``rule_kind`` must be a short lowercase token (``[a-z0-9_.-]``); beyond
    :data:`MAX_ALERT_KINDS` distinct kinds, or for anything else, it counts as ``other``."""
    kind = rule_kind if _KIND_RE.fullmatch(rule_kind) else OTHER
    with _alert_lock:
        if kind not in _alert_kinds:
            if len(_alert_kinds) >= MAX_ALERT_KINDS:
                kind = OTHER
            else:
                _alert_kinds.add(kind)
    ALERTS.labels(kind).inc()


# -- collectors read on scrape -------------------------------------------------------------------


#: ``(provider, provider_kind, operation, count)`` for every KMS call counter.
KmsCounts = Callable[[], Iterable[tuple[str, str, str, int]]]
#: ``{"active": n, "deleted": m}``: state paths with a current version, by status.
StateCounts = Callable[[], Mapping[str, int]]


class StoreCollector:
    """KMS call counts and the number of states, read through the bound callables on each
    scrape (the composition root binds them to the running service; nothing here knows it).

    Key providers that call a remote KMS keep cumulative per-operation counters; local ones
    (key file, passphrase) report none. The state count is one query, cached for
    :attr:`ttl` seconds."""

    def __init__(self, ttl: float = 15.0) -> None:
        self.kms_counts: KmsCounts | None = None
        self.state_counts: StateCounts | None = None
        self.ttl = ttl
        self._lock = threading.Lock()
        self._counts: tuple[float, dict[str, int]] | None = None

    def bind(self, kms_counts: KmsCounts | None, state_counts: StateCounts | None) -> None:
        with self._lock:
            self.kms_counts = kms_counts
            self.state_counts = state_counts
            self._counts = None

    def describe(self) -> Iterable[Metric]:
        return ()  # dynamic: no names reserved at registration

    def collect(self) -> Iterator[Metric]:
        kms_counts, state_counts = self.kms_counts, self.state_counts
        if kms_counts is None or state_counts is None:
            return
        kms = CounterMetricFamily(
            "stateward_kms_calls",
            "API calls made to a key management service, by key provider and operation.",
            labels=["provider", "provider_kind", "operation"],
        )
        for name, kind, operation, n in sorted(kms_counts()):
            kms.add_metric([name, kind, operation], n)
        yield kms
        by_status = self._state_counts(state_counts)
        if by_status is not None:
            gauge = GaugeMetricFamily(
                "stateward_states",
                "State paths with a current version: active, or soft-deleted (restorable).",
                labels=["status"],
            )
            for status in ("active", "deleted"):
                gauge.add_metric([status], by_status.get(status, 0))
            yield gauge

    def _state_counts(self, state_counts: StateCounts) -> dict[str, int] | None:
        now = time.monotonic()
        with self._lock:
            if self._counts is not None and now - self._counts[0] < self.ttl:
                return self._counts[1]
        try:
            counts = dict(state_counts())
        except Exception as exc:  # a scrape must not fail because the store is busy
            log.warning("metrics: cannot count states: %s", type(exc).__name__)
            return None
        with self._lock:
            self._counts = (now, counts)
        return counts


COLLECTOR = StoreCollector()
REGISTRY.register(COLLECTOR)


def bind_store(kms_counts: KmsCounts | None, state_counts: StateCounts | None) -> None:
    """Read KMS counters and state counts through these callables (one store per process; the
    last bound wins; ``None`` unbinds)."""
    COLLECTOR.bind(kms_counts, state_counts)


def exposition() -> bytes:
    """The current metrics in the Prometheus text format (blocking: call from a thread)."""
    return generate_latest(REGISTRY)
