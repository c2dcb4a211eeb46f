"""Retention, purging of soft-deleted paths, and orphan-blob collection.

Metadata rows are removed in a transaction first and their blobs afterwards: a crash in
between leaves orphans (collected on the next run), never a version whose blob is gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, select

from stateward.config import RetentionRule
from stateward.domain.globs import first_match
from stateward.domain.principal import Principal
from stateward.service.views import MaintenanceReport
from stateward.storage import repo
from stateward.storage.schema import (
    blob_keys,
    locks,
    secret_findings,
    secret_scans,
    states,
    versions,
)

if TYPE_CHECKING:
    from stateward.service.base import ServiceBase

DAY = 86400.0


def purge_path(conn: Connection, path: str) -> list[str]:
    """Delete every row of ``path``; return the blob keys to remove after commit."""
    keys = list(conn.execute(select(versions.c.blob_key).where(versions.c.path == path)).scalars())
    for table in (blob_keys, secret_scans, secret_findings):
        conn.execute(delete(table).where(table.c.path == path))
    conn.execute(delete(versions).where(versions.c.path == path))
    conn.execute(delete(locks).where(locks.c.path == path))
    conn.execute(delete(states).where(states.c.path == path))
    return keys


def delete_blobs(service: ServiceBase, keys: Iterable[str]) -> None:
    for key in keys:
        service.cache.discard(key)
        service.barrier.blobs.delete(key)


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


def run(service: ServiceBase, who: Principal) -> MaintenanceReport:
    settings = service.settings
    now = service.clock()
    rules = [(r.path, r) for r in settings.retention]
    removed = purged = 0
    with service._write_tx() as conn:
        doomed: list[str] = []
        for st in repo.paths_with_versions(conn):
            expired = (
                st.deleted_at is not None
                and now - st.deleted_at > settings.delete_grace_days * DAY
                and not service.is_protected_row(st.path, st.protected)
            )
            if expired:
                doomed.extend(purge_path(conn, st.path))
                service.barrier.keys.forget_path(st.path)
                repo.record_event(conn, now, who.name, "purge-expired", st.path)
                purged += 1
                continue
            rule = first_match(rules, st.path)
            if rule is None:
                continue
            rows = conn.execute(
                select(versions.c.seq, versions.c.created_at, versions.c.blob_key).where(
                    versions.c.path == st.path
                )
            ).all()
            # A soft-deleted path keeps its last current version too, so restore works.
            seqs = expired_versions(
                [(r.seq, r.created_at) for r in rows], st.current_seq, rule, now
            )
            if seqs:
                wanted = set(seqs)
                doomed.extend(r.blob_key for r in rows if r.seq in wanted)
                repo.delete_versions(conn, st.path, seqs)
                repo.record_event(
                    conn, now, who.name, "retention", st.path, f"removed {len(seqs)} versions"
                )
                removed += len(seqs)
    delete_blobs(service, doomed)
    orphans = collect_orphans(service, settings.orphan_min_age_seconds)
    return MaintenanceReport(removed, purged, orphans)


def collect_orphans(service: ServiceBase, min_age: float) -> int:
    """Remove blobs no version points at, once older than ``min_age`` (a write in flight has
    stored its blob but not yet committed the version that references it)."""
    with service._read_tx() as conn:
        referenced = repo.all_blob_keys(conn)
    count = 0
    for key, age in list(service.barrier.blobs.list()):
        if key not in referenced and age >= min_age:
            # Re-check under a transaction: the blob may have been committed meanwhile.
            with service._read_tx() as conn:
                if (
                    conn.execute(select(versions.c.id).where(versions.c.blob_key == key)).first()
                    is not None
                ):
                    continue
            service.barrier.blobs.delete(key)
            count += 1
    collect_partial = getattr(service.barrier.blobs, "collect_partial", None)
    if collect_partial is not None:
        count += int(collect_partial(min_age))
    return count
