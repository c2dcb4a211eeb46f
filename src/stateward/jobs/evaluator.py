"""Which audit records (and held locks) raise which alerts. No I/O of its own: the engine feeds
records in chain order and stores what comes out, so the logic is tested with fixed times.

State kept in memory (and rebuilt from the trail at start-up where it matters):

- ``auth-failures``: the newest failure times per (rule, source) and overall, and when each
  last alerted, so a burst alerts once rather than on every further failure;
- ``unknown-network``: when each (rule, source, principal) last alerted (``repeat_minutes``);
- ``long-lock``: which locks have alerted, so a lock alerts once per lock ID (the database's
  unique dedup key makes that hold across restarts too).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from stateward.config.alerts import (
    AlertRule,
    AuthFailuresRule,
    DecryptionFailureRule,
    EventRule,
    GuardRefusalRule,
    LongLockRule,
    MassDestroyRule,
    RareReaderRule,
    UnknownNetworkRule,
    principal_matches,
)
from stateward.domain.alerts import AlertDraft, dedup_key, iso, one_line
from stateward.domain.audit_record import AuditRecord
from stateward.domain.globs import glob_match
from stateward.domain.policy_model import parse_source
from stateward.service.views import LockView

#: ``(path, principal, since, before_seq) -> bool``: did ``principal`` successfully read
#: ``path`` at or after ``since``, in a record before ``before_seq``?
ReaderSeen = Callable[[str, str, float, int], bool]

GUARD_REASON = re.compile(r"^(lineage mismatch|stale write|serial [0-9]+ of .* already stored)")
BREAK_LOCK_OPERATIONS = frozenset({"POST /api/v1/locks/break", "cli locks break"})
#: Tracked sources per rule before the oldest are dropped (a spray from many addresses).
MAX_KEYS = 10_000
_VERB = {
    "delete": "deleted",
    "rollback": "rolled back",
    "force-unlock": "force-unlocked",
    "break-lock": "broke the lock on",
}


def outside_windows(rule: AlertRule, at: float) -> bool:
    """True if ``at`` is outside every ``outside_windows`` window (always, when none)."""
    if not rule.outside_windows:
        return True
    when = dt.datetime.fromtimestamp(at, dt.UTC)
    return not any(w.contains(when) for w in rule.outside_windows)


def in_scope(rule: AlertRule, path: str | None, principal: str | None) -> bool:
    if rule.paths and (path is None or not any(glob_match(g, path) for g in rule.paths)):
        return False
    return not (
        rule.ignore_principals
        and principal is not None
        and principal_matches(rule.ignore_principals, principal)
    )


def _from(record: AuditRecord) -> str:
    return f"from {record.source or 'unknown'}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class AlertEvaluator:
    def __init__(self, rules: Sequence[AlertRule], reader_seen: ReaderSeen | None = None) -> None:
        self.rules = [r for r in rules if not isinstance(r, LongLockRule)]
        self.lock_rules = [r for r in rules if isinstance(r, LongLockRule)]
        self.reader_seen = reader_seen
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._burst_at: dict[tuple[str, str], float] = {}
        self._network_at: dict[tuple[str, str, str], float] = {}
        self._locks_alerted: set[str] = set()

    @property
    def auth_window_seconds(self) -> float:
        """The longest auth-failure window (how much history start-up replays)."""
        return max(
            (r.window_minutes * 60 for r in self.rules if isinstance(r, AuthFailuresRule)),
            default=0.0,
        )

    # -- audit records -------------------------------------------------------------------------

    def evaluate(self, record: AuditRecord) -> list[AlertDraft]:
        """The alerts ``record`` raises, rule by rule in configuration order."""
        out: list[AlertDraft] = []
        for rule in self.rules:
            if not in_scope(rule, record.path, record.principal):
                continue
            draft = self._match(rule, record)
            if draft is not None and outside_windows(rule, draft.at):
                out.append(draft)
        return out

    def prime(self, record: AuditRecord) -> None:
        """Replay an already-evaluated record into the burst counters (start-up), raising
        nothing: a burst that alerted before a restart does not alert again after it."""
        for rule in self.rules:
            if isinstance(rule, AuthFailuresRule) and in_scope(rule, record.path, record.principal):
                self._auth_failures(rule, record)

    def _match(self, rule: AlertRule, r: AuditRecord) -> AlertDraft | None:
        if isinstance(rule, EventRule):
            return self._event(rule, r)
        if isinstance(rule, UnknownNetworkRule):
            return self._unknown_network(rule, r)
        if isinstance(rule, AuthFailuresRule):
            return self._auth_failures(rule, r)
        if isinstance(rule, MassDestroyRule):
            return self._mass_destroy(rule, r)
        if isinstance(rule, GuardRefusalRule):
            return self._guard_refusal(rule, r)
        if isinstance(rule, DecryptionFailureRule):
            return self._decryption_failure(rule, r)
        if isinstance(rule, RareReaderRule):
            return self._rare_reader(rule, r)
        return None

    def _draft(
        self,
        rule: AlertRule,
        r: AuditRecord,
        summary: str,
        key: tuple[Any, ...] | None = None,
        principal: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AlertDraft:
        if rule.outside_windows:  # evaluate() keeps the draft only when outside them
            summary += " (outside the change windows)"
        return AlertDraft(
            rule=rule.name,
            kind=rule.kind,
            severity=rule.level,
            at=r.at,
            path=r.path,
            principal=principal if principal is not None else r.principal,
            summary=one_line(summary),
            audit_seq=r.seq,
            dedup=dedup_key(rule.name, "seq", r.seq, *(key or ())),
            record=r,
            details=details or {},
        )

    def _event(self, rule: EventRule, r: AuditRecord) -> AlertDraft | None:
        if r.outcome != "ok":
            return None
        if rule.kind == "break-lock":
            if r.action != "admin" or r.operation not in BREAK_LOCK_OPERATIONS:
                return None
        elif r.action != rule.kind:
            return None
        text = f"{r.principal} {_VERB[rule.kind]} {r.path or '?'}"
        if r.lock_id and rule.kind in ("force-unlock", "break-lock"):
            text += f" (lock {r.lock_id})"
        if rule.kind == "rollback" and r.version is not None:
            text += f" (new version {r.version})"
        return self._draft(rule, r, f"{text} {_from(r)} via {r.operation}")

    def _unknown_network(self, rule: UnknownNetworkRule, r: AuditRecord) -> AlertDraft | None:
        if r.outcome not in ("ok", "denied"):
            return None
        addr = parse_source(r.source)  # None for "cli", "internal" and anything not an IP
        if addr is None or any(addr in net for net in rule.allowed_cidrs):
            return None
        key = (rule.name, str(addr), r.principal)
        last = self._network_at.get(key)
        if last is not None and rule.repeat_minutes and r.at - last < rule.repeat_minutes * 60:
            return None
        self._network_at[key] = r.at
        self._cap(self._network_at)
        what = r.path or r.operation
        return self._draft(
            rule,
            r,
            f"{r.principal} {'was refused' if r.outcome == 'denied' else 'did'} {r.action} "
            f"{what} from {addr}, outside the allowed networks",
        )

    def _auth_failures(self, rule: AuthFailuresRule, r: AuditRecord) -> AlertDraft | None:
        if r.action != "authenticate" or r.outcome != "denied":
            return None
        window = rule.window_minutes * 60
        source = r.source or "unknown"
        result: AlertDraft | None = None
        for scope, threshold in ((f"source {source}", rule.count), ("overall", rule.overall_count)):
            if threshold is None:
                continue
            key = (rule.name, scope)
            times = self._failures.get(key)
            if times is None:
                times = self._failures[key] = deque(maxlen=threshold)
                self._cap(self._failures)
            times.append(r.at)
            # the newest ``threshold`` failures all within the window: a burst
            if len(times) < threshold or times[0] <= r.at - window:
                continue
            last = self._burst_at.get(key)
            if last is not None and r.at - last < window:
                continue  # the same burst: alerted already
            self._burst_at[key] = r.at
            self._cap(self._burst_at)
            if result is None:  # one record raises one alert, naming the narrower scope
                where = f"from {source}" if scope != "overall" else "from all addresses"
                result = self._draft(
                    rule,
                    r,
                    f"{threshold} failed authentications {where} within "
                    f"{rule.window_minutes:g} min (last: {r.status} on {r.operation})",
                    key=(scope,),
                    principal=r.principal,
                    details={
                        "scope": scope,
                        "count": threshold,
                        "window_minutes": rule.window_minutes,
                        "first_at": iso(times[0]),
                    },
                )
        return result

    def _mass_destroy(self, rule: MassDestroyRule, r: AuditRecord) -> AlertDraft | None:
        if r.action != "write" or r.outcome != "ok":
            return None
        new, prev = r.resources, r.prev_resources
        if new is None or prev is None or prev < rule.min_resources or new >= prev:
            return None
        drop = (prev - new) * 100.0 / prev
        if drop <= rule.percent:
            return None
        return self._draft(
            rule,
            r,
            f"{r.principal} wrote {r.path or '?'} with {new} managed resources, down from "
            f"{prev} (-{drop:.0f}%) {_from(r)}",
            details={"resources": new, "prev_resources": prev, "drop_percent": round(drop, 1)},
        )

    def _guard_refusal(self, rule: GuardRefusalRule, r: AuditRecord) -> AlertDraft | None:
        if r.action != "write" or r.outcome != "failed" or r.status != 409:
            return None
        if not (rule.lock_conflicts or GUARD_REASON.match(r.reason)):
            return None
        return self._draft(
            rule, r, f"write by {r.principal} to {r.path or '?'} refused {_from(r)}: {r.reason}"
        )

    def _decryption_failure(self, rule: DecryptionFailureRule, r: AuditRecord) -> AlertDraft | None:
        if r.status != 503 or not ("unreadable" in r.reason or "does not unwrap" in r.reason):
            return None
        return self._draft(
            rule,
            r,
            f"{r.operation} of {r.path or '-'} by {r.principal} failed {_from(r)}: {r.reason}",
        )

    def _rare_reader(self, rule: RareReaderRule, r: AuditRecord) -> AlertDraft | None:
        if r.action != "read" or r.outcome != "ok" or r.path is None or self.reader_seen is None:
            return None
        if self.reader_seen(r.path, r.principal, r.at - rule.days * 86_400, r.seq):
            return None
        return self._draft(
            rule,
            r,
            f"{r.principal} read {r.path} {_from(r)}, its first read of it in {rule.days:g} days",
        )

    @staticmethod
    def _cap(table: dict[Any, Any]) -> None:
        """Bound memory under a spray from many addresses: drop the oldest-inserted entries."""
        while len(table) > MAX_KEYS:
            del table[next(iter(table))]

    def prune(self, now: float) -> None:
        """Forget bursts and sources that are quiet for longer than their windows."""
        windows = {
            r.name: r.window_minutes * 60 for r in self.rules if isinstance(r, AuthFailuresRule)
        }
        for key, times in list(self._failures.items()):
            if not times or times[-1] <= now - windows.get(key[0], 0.0):
                del self._failures[key]
        for key, at in list(self._burst_at.items()):
            if at <= now - windows.get(key[0], 0.0):
                del self._burst_at[key]
        repeats = {
            r.name: r.repeat_minutes * 60 for r in self.rules if isinstance(r, UnknownNetworkRule)
        }
        for nkey, at in list(self._network_at.items()):
            if at <= now - repeats.get(nkey[0], 0.0):
                del self._network_at[nkey]

    # -- held locks ----------------------------------------------------------------------------

    def check_locks(self, locks: Iterable[LockView], now: float) -> list[AlertDraft]:
        """Locks held longer than a long-lock rule allows that have not alerted yet. The
        caller marks each stored one (:meth:`lock_alerted`), so a failed store is retried."""
        out: list[AlertDraft] = []
        held: set[str] = set()
        views = list(locks)
        for rule in self.lock_rules:
            for lock in views:
                key = dedup_key(rule.name, "lock", lock.path, lock.id)
                held.add(key)
                if key in self._locks_alerted or lock.age_seconds <= rule.seconds:
                    continue
                if not in_scope(rule, lock.path, lock.principal):
                    continue
                if not outside_windows(rule, now):
                    continue  # checked again later: alerts if still held after the window
                summary = (
                    f"{lock.path} locked for {_duration(lock.age_seconds)} (over "
                    f"{_duration(rule.seconds)}) by {lock.who or 'unknown'} as "
                    f"{lock.principal}, {lock.operation or 'unknown operation'}, lock {lock.id}"
                )
                out.append(
                    AlertDraft(
                        rule=rule.name,
                        kind=rule.kind,
                        severity=rule.level,
                        at=now,
                        path=lock.path,
                        principal=lock.principal,
                        summary=one_line(summary),
                        audit_seq=None,
                        dedup=key,
                        details={"lock": lock.to_dict()},
                    )
                )
        self._locks_alerted &= held  # released locks are forgotten
        return out

    def lock_alerted(self, key: str) -> None:
        self._locks_alerted.add(key)
