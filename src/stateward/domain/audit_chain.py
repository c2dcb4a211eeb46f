"""The hash chain: ``hash = sha256(prev_hash || canonical(record))``.

The canonical form includes the record's own ``seq`` and ``prev_hash``, so a record moved,
removed or inserted breaks the chain at that point; editing any field breaks its own hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

from stateward.domain.audit_record import AuditRecord

GENESIS = "0" * 64


def seal(record: AuditRecord, seq: int, prev_hash: str) -> AuditRecord:
    linked = replace(record, seq=seq, prev_hash=prev_hash, hash="")
    digest = hashlib.sha256(prev_hash.encode() + linked.canonical()).hexdigest()
    return replace(linked, hash=digest)


_FIELDS = {f.name for f in fields(AuditRecord)}


def from_json(text: str) -> AuditRecord:
    doc: dict[str, Any] = json.loads(text)
    if set(doc) != _FIELDS:
        raise ValueError("record fields differ from the audit record format")
    return AuditRecord(**doc)


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int  # the stored seq of the first bad row (or the expected one when a row is missing)
    what: str


def verify(rows: Iterable[tuple[int, str, str, str]]) -> tuple[int, Problem | None]:
    """Check ``(seq, prev_hash, hash, record_json)`` rows in seq order.

    Returns (rows checked, first problem or None). Detects edited fields (own hash), deleted
    rows (seq gap / prev mismatch), inserted or reordered rows (prev mismatch), and a row whose
    columns disagree with its JSON."""
    expected_seq, prev = 1, GENESIS
    count = 0
    for seq, prev_col, hash_col, text in rows:
        count += 1
        try:
            record = from_json(text)
        except (ValueError, TypeError):
            return count, Problem(seq, "record does not parse")
        if seq != expected_seq or record.seq != seq:
            return count, Problem(seq, f"expected record {expected_seq} here (deleted or moved)")
        if record.prev_hash != prev or prev_col != prev:
            return count, Problem(seq, "previous-hash link broken (inserted, removed or reordered)")
        if seal(record, seq, prev).hash != record.hash or hash_col != record.hash:
            return count, Problem(seq, "hash mismatch (record modified)")
        prev = record.hash
        expected_seq += 1
    return count, None
