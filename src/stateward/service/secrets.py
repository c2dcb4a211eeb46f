"""Secret detection on stored states: background scans of every version, on-demand scans, and
sanitized copies for sharing a state with support.

Scanning runs off the request path: the scanner thread (``serve``) picks up every version that
has no scan row yet, whoever wrote it, so a 100 MB state (about 6 s to scan) never slows a
write. Findings are stored as location + kind + rule, never a value (``secretscan``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from stateward.domain.actions import Action
from stateward.domain.errors import NotFound
from stateward.domain.principal import Principal
from stateward.domain.secretscan import Finding, sanitize_fully, scan_report
from stateward.service.base import ServiceBase
from stateward.storage import repo
from stateward.storage.leases import Lease
from stateward.storage.schema import secret_findings, secret_scans, versions

log = logging.getLogger("stateward.secrets")


@dataclass(frozen=True, slots=True)
class ScanResult:
    path: str
    seq: int
    findings: list[Finding]
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "seq": self.seq,
            "note": self.note,
            "findings": [
                {"location": f.location, "kind": f.kind, "rule": f.rule} for f in self.findings
            ],
        }


class SecretOps(ServiceBase):
    def scan_state(self, who: Principal, path: str, seq: int | None = None) -> ScanResult:
        """Findings of a version (default: current). Needs ``history``: locations and kinds are
        metadata, not content."""
        self._authorize(who, Action.HISTORY, path)
        seq = self._resolve_seq(path, seq)
        _view, row = self._version_row(path, seq)
        report = scan_report(self._load(path, row))
        return ScanResult(path, seq, list(report.findings), report.note)

    def sanitized_state(self, who: Principal, path: str, seq: int | None = None) -> bytes:
        """The version with every finding's value replaced by ``REDACTED(<kind>)``. Needs
        ``read``: everything else in the state is still there."""
        self._authorize(who, Action.READ, path)
        seq = self._resolve_seq(path, seq)
        _view, row = self._version_row(path, seq)
        return sanitize_fully(self._load(path, row))

    def _resolve_seq(self, path: str, seq: int | None) -> int:
        if seq is not None:
            return seq
        state = self.read_current_seq(path)
        if state is None:
            raise NotFound(f"no state at {path}")
        return state

    def read_current_seq(self, path: str) -> int | None:
        with self._read_tx() as conn:
            row = repo.current_version(conn, path)
        return None if row is None else int(row.seq)

    def scan_pending(self, limit: int = 20, go_on: Callable[[], bool] | None = None) -> int:
        """Scan up to ``limit`` versions that have no scan yet (the background scanner); stop
        early once ``go_on`` says no (this replica lost the scanner's lease)."""
        with self._read_tx() as conn:
            rows = conn.execute(
                select(versions)
                .select_from(
                    versions.outerjoin(
                        secret_scans,
                        (secret_scans.c.path == versions.c.path)
                        & (secret_scans.c.seq == versions.c.seq),
                    )
                )
                .where(secret_scans.c.seq.is_(None))
                .order_by(versions.c.id)
                .limit(limit)
            ).all()
        done = 0
        for row in rows:
            if go_on is not None and not go_on():
                break
            try:
                report = scan_report(self._load(row.path, row))
                findings, note = list(report.findings), report.note
            except Exception as exc:  # unreadable blob, key down: record and move on
                log.warning("secret scan of %s version %s failed: %s", row.path, row.seq, exc)
                findings, note = [], f"not scanned: {type(exc).__name__}"
            with self._write_tx() as conn:
                if (
                    conn.execute(select(versions.c.id).where(versions.c.id == row.id)).first()
                    is None
                ):
                    continue  # purged meanwhile
                if (
                    conn.execute(
                        select(secret_scans.c.seq).where(
                            secret_scans.c.path == row.path, secret_scans.c.seq == row.seq
                        )
                    ).first()
                    is not None
                ):
                    continue  # scanned meanwhile (another replica, a `state scan`)
                conn.execute(
                    delete(secret_findings).where(
                        secret_findings.c.path == row.path, secret_findings.c.seq == row.seq
                    )
                )
                if findings:
                    conn.execute(
                        insert(secret_findings),
                        [
                            {"path": row.path, "seq": row.seq, "location": f.location[:2000],
                             "kind": f.kind, "rule": f.rule}
                            for f in findings
                        ],
                    )  # fmt: skip
                conn.execute(
                    insert(secret_scans).values(
                        path=row.path,
                        seq=row.seq,
                        scanned_at=self.clock(),
                        findings=len(findings),
                        note=(note or "")[:256],
                    )
                )
            done += 1
        return done

    def stored_findings(self, who: Principal, path: str, seq: int) -> list[dict[str, str]]:
        self._authorize(who, Action.HISTORY, path)
        with self._read_tx() as conn:
            rows = conn.execute(
                select(secret_findings.c.location, secret_findings.c.kind, secret_findings.c.rule)
                .where(secret_findings.c.path == path, secret_findings.c.seq == seq)
                .order_by(secret_findings.c.id)
            ).all()
        return [{"location": r.location, "kind": r.kind, "rule": r.rule} for r in rows]


class SecretScanner:
    """The background scanner thread of ``serve``."""

    def __init__(
        self, service: SecretOps, interval: float = 1.0, lease: Lease | None = None
    ) -> None:
        self.service = service
        self.interval = interval
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="secret-scanner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            lease = self.lease
            try:
                leading = lease is None or lease.held()
                go_on = None if lease is None else lease.held
                busy = leading and self.service.scan_pending(go_on=go_on) > 0
            except Exception:
                log.exception("secret scanner failed; retrying")
                busy = False
            if not busy:
                self._stop.wait(self.interval)
        if self.lease is not None:
            self.lease.release()
