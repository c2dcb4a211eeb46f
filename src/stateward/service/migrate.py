"""Moving a whole store to another (``stateward migrate-store``)."""

from __future__ import annotations

from collections.abc import Iterable

from stateward.domain import audit_chain
from stateward.storage.copy import AuditCheck


def chain_check(rows: Iterable[tuple[int, str, str, str]]) -> AuditCheck:
    """The domain's audit chain rules, as the storage copy's verification step."""
    checked, problem = audit_chain.verify(rows)
    if problem is None:
        return AuditCheck(checked)
    return AuditCheck(checked, problem.seq, problem.what)
