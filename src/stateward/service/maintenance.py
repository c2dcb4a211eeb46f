"""Retention, purging of soft-deleted paths, and orphan-blob collection.

Metadata rows are removed in a transaction first and their blobs afterwards: a crash in
between leaves orphans (collected on the next run), never a version whose blob is gone.
"""

from __future__ import annotations

from stateward.config import RetentionRule
from stateward.domain.globs import first_match
from stateward.domain.principal import Principal
from stateward.service.deps import Operations
from stateward.service.versions import store_errors
from stateward.service.views import MaintenanceReport
from stateward.storage import states_repo

DAY = 86400.0


def expired_versions(
    rows: list[tuple[int, float]], current: int | None, rule: RetentionRule, now: float
) -> list[int]:
    """Seqs that ``rule`` lets go: not current, not among the newest N, not younger than D days.

    With only one of N / D set, only that one keeps versions. ``rows`` is (seq, created_at).
    """
    newest_first = sorted(rows, key=lambda r: r[0], reverse=True)
    out = []
    for rank, (seq, created_at) in enumerate(newest_first):
        if seq == current:
            continue
        keep_by_count = rule.keep_versions is not None and rank < rule.keep_versions
        keep_by_age = rule.keep_days is not None and now - created_at < rule.keep_days * DAY
        if not (keep_by_count or keep_by_age):
            out.append(seq)
    return out


def run(ops: Operations, who: Principal) -> MaintenanceReport:
    settings = ops.settings
    now = ops.clock()
    rules = [(r.path, r) for r in settings.retention]
    removed = purged = 0
    with ops.uow.write() as conn:
        doomed: list[str] = []
        for st in states_repo.all_states(conn):
            expired = (
                st.deleted_at is not None
                and now - st.deleted_at > settings.delete_grace_days * DAY
                and not ops.versions.is_protected(st.path, st.protected)
            )
            if expired:
                doomed.extend(states_repo.purge_path(conn, st.path))
                ops.barrier.keys.forget_path(st.path)
                ops.event(conn, who, "purge-expired", st.path)
                purged += 1
                continue
            rule = first_match(rules, st.path)
            if rule is None:
                continue
            rows = states_repo.version_ages(conn, st.path)
            # A soft-deleted path keeps its last current version too, so restore works.
            seqs = expired_versions([(s, at) for s, at, _ in rows], st.current_seq, rule, now)
            if seqs:
                wanted = set(seqs)
                doomed.extend(key for s, _, key in rows if s in wanted)
                states_repo.delete_versions(conn, st.path, seqs)
                ops.event(conn, who, "retention", st.path, f"removed {len(seqs)} versions")
                removed += len(seqs)
    ops.versions.delete_blobs(doomed)
    orphans = collect_orphans(ops, settings.orphan_min_age_seconds)
    return MaintenanceReport(removed, purged, orphans)


def collect_orphans(ops: Operations, min_age: float) -> int:
    """Remove blobs no version points at, once older than ``min_age`` (a write in flight has
    stored its blob but not yet committed the version that references it)."""
    with ops.uow.read() as conn:
        referenced = states_repo.all_blob_keys(conn)
    with store_errors():
        return _collect(ops, referenced, min_age)


def _collect(ops: Operations, referenced: set[str], min_age: float) -> int:
    blobs = ops.barrier.blobs
    count = 0
    for key, age in list(blobs.list()):
        if key not in referenced and age >= min_age:
            # Re-check under a transaction: the blob may have been committed meanwhile.
            with ops.uow.read() as conn:
                if states_repo.blob_referenced(conn, key):
                    continue
            blobs.delete(key)
            count += 1
    collect_partial = getattr(blobs, "collect_partial", None)
    if collect_partial is not None:
        count += int(collect_partial(min_age))
    return count
