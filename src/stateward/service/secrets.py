"""Secret detection on stored states: background scans of every version, on-demand scans, and
sanitized copies for sharing a state with support.

Scanning runs off the request path: the scanner thread (``serve``) picks up every version that
has no scan row yet, whoever wrote it, so a 100 MB state (about 6 s to scan) never slows a
write. Findings are stored as location + kind + rule, never a value (``secretscan``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stateward.domain.actions import Action
from stateward.domain.errors import NotFound
from stateward.domain.principal import Principal
from stateward.domain.secretscan import Finding, sanitize_fully, scan_report
from stateward.service.deps import Operations
from stateward.storage import secrets_repo, states_repo

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


class SecretOps(Operations):
    def scan_state(self, who: Principal, path: str, seq: int | None = None) -> ScanResult:
        """Findings of a version (default: current). Needs ``history``: locations and kinds are
        metadata, not content."""
        path = self.authz.authorize(who, Action.HISTORY, path)
        seq = self._resolve_seq(path, seq)
        _view, version = self.versions.get(path, seq)
        report = scan_report(self.versions.load(path, version))
        return ScanResult(path, seq, list(report.findings), report.note)

    def sanitized_state(self, who: Principal, path: str, seq: int | None = None) -> bytes:
        """The version with every finding's value replaced by ``REDACTED(<kind>)``. Needs
        ``read``: everything else in the state is still there."""
        path = self.authz.authorize(who, Action.READ, path)
        seq = self._resolve_seq(path, seq)
        _view, version = self.versions.get(path, seq)
        return sanitize_fully(self.versions.load(path, version))

    def _resolve_seq(self, path: str, seq: int | None) -> int:
        if seq is not None:
            return seq
        with self.uow.read() as conn:
            version = states_repo.current_version(conn, path)
        if version is None:
            raise NotFound(f"no state at {path}")
        return version.seq

    def scan_pending(self, limit: int = 20, go_on: Callable[[], bool] | None = None) -> int:
        """Scan up to ``limit`` versions that have no scan yet (the background scanner); stop
        early once ``go_on`` says no (this replica lost the scanner's lease)."""
        with self.uow.read() as conn:
            pending = secrets_repo.unscanned(conn, limit)
        done = 0
        for version in pending:
            if go_on is not None and not go_on():
                break
            try:
                report = scan_report(self.versions.load(version.path, version))
                findings, note = list(report.findings), report.note
            except Exception as exc:  # unreadable blob, key down: record and move on
                log.warning(
                    "secret scan of %s version %s failed: %s", version.path, version.seq, exc
                )
                findings, note = [], f"not scanned: {type(exc).__name__}"
            with self.uow.write() as conn:
                if not states_repo.version_exists(conn, version.id):
                    continue  # purged meanwhile
                if secrets_repo.scanned(conn, version.path, version.seq):
                    continue  # scanned meanwhile (another replica, a `state scan`)
                secrets_repo.save_scan(
                    conn,
                    version.path,
                    version.seq,
                    [(f.location, f.kind, f.rule) for f in findings],
                    note or "",
                    self.clock(),
                )
            done += 1
        return done

    def stored_findings(self, who: Principal, path: str, seq: int) -> list[dict[str, str]]:
        path = self.authz.authorize(who, Action.HISTORY, path)
        with self.uow.read() as conn:
            rows = secrets_repo.findings(conn, path, seq)
        return [{"location": loc, "kind": kind, "rule": rule} for loc, kind, rule in rows]
