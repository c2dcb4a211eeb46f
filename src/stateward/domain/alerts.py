"""An alert as stored and shown, and the draft a rule produces before it is stored.

Alerts never hold state content, tokens or keys: the summary is built from audit record
fields (principal, path, source, lock ID, counts, one-line reasons) that are themselves free of
secrets, flattened to one line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from stateward.common.text import one_line as _one_line
from stateward.domain.audit_record import AuditRecord

SUMMARY_MAX = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")




def one_line(text: str, limit: int = SUMMARY_MAX) -> str:
    """An alert summary: one line of at most :data:`SUMMARY_MAX` characters."""
    return _one_line(text, limit)


def dedup_key(*parts: object) -> str:
    """What makes an alert unique (rule + audit seq, rule + lock ID ...): stored hashed in a
    unique column, so an audit record delivered twice never raises two alerts."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def iso(ts: float) -> str:
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True, slots=True)
class AlertDraft:
    """What a rule raised; becomes an :class:`Alert` once stored (and only if new)."""

    rule: str
    kind: str
    severity: str
    at: float  # the event's time: the audit record's, or when a long lock was seen
    path: str | None
    principal: str | None
    summary: str
    audit_seq: int | None
    dedup: str
    record: AuditRecord | None = None
    #: Extra non-secret facts for webhooks (the lock of a long-lock alert, burst counts).
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    at: float
    rule: str
    kind: str
    severity: str
    path: str | None
    principal: str | None
    summary: str
    audit_seq: int | None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AckResult:
    acknowledged: list[int]  # acknowledged now
    already: list[int]  # were acknowledged before

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
