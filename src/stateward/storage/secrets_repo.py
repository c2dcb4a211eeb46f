"""``secret_scans`` (one row per scanned version) and ``secret_findings`` (location + kind +
rule of each finding, never a value)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, delete, insert, select

from stateward.storage.records import VersionRecord, record
from stateward.storage.schema import secret_findings, secret_scans, versions


def unscanned(conn: Connection, limit: int) -> list[VersionRecord]:
    """Up to ``limit`` versions without a scan row, oldest first."""
    rows = conn.execute(
        select(versions)
        .select_from(
            versions.outerjoin(
                secret_scans,
                (secret_scans.c.path == versions.c.path) & (secret_scans.c.seq == versions.c.seq),
            )
        )
        .where(secret_scans.c.seq.is_(None))
        .order_by(versions.c.id)
        .limit(limit)
    )
    return [record(VersionRecord, r) for r in rows]


def scanned(conn: Connection, path: str, seq: int) -> bool:
    stmt = select(secret_scans.c.seq).where(secret_scans.c.path == path, secret_scans.c.seq == seq)
    return conn.execute(stmt).first() is not None


def save_scan(
    conn: Connection,
    path: str,
    seq: int,
    findings: Sequence[tuple[str, str, str]],
    note: str,
    at: float,
) -> None:
    """Store a version's scan: ``findings`` as ``(location, kind, rule)``."""
    conn.execute(
        delete(secret_findings).where(secret_findings.c.path == path, secret_findings.c.seq == seq)
    )
    if findings:
        conn.execute(
            insert(secret_findings),
            [
                {"path": path, "seq": seq, "location": loc[:2000], "kind": kind, "rule": rule}
                for loc, kind, rule in findings
            ],
        )
    conn.execute(
        insert(secret_scans).values(
            path=path, seq=seq, scanned_at=at, findings=len(findings), note=note[:256]
        )
    )


def findings(conn: Connection, path: str, seq: int) -> list[tuple[str, str, str]]:
    """``(location, kind, rule)`` of a version's stored findings, in the order found."""
    rows = conn.execute(
        select(secret_findings.c.location, secret_findings.c.kind, secret_findings.c.rule)
        .where(secret_findings.c.path == path, secret_findings.c.seq == seq)
        .order_by(secret_findings.c.id)
    )
    return [(str(r.location), str(r.kind), str(r.rule)) for r in rows]
