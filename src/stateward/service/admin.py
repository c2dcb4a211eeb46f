"""Listing, history, diff, deletion, protection, overrides, events and maintenance."""

from __future__ import annotations

import json
from typing import Any

from stateward.domain import statefile
from stateward.domain.actions import Action
from stateward.domain.errors import Conflict, Forbidden, Locked, NotFound
from stateward.domain.globs import glob_match
from stateward.domain.paths import validate_path
from stateward.domain.policy import STORE_WIDE
from stateward.domain.principal import Principal
from stateward.service import maintenance
from stateward.service.base import ServiceBase, version_view
from stateward.service.views import EventView, MaintenanceReport, StateListing, VersionView
from stateward.storage import repo


class AdminOps(ServiceBase):
    def list_states(
        self, who: Principal, prefix: str = "", include_deleted: bool = False
    ) -> list[StateListing]:
        self._mark(who, Action.READ_OUTPUTS, None)
        now = self.clock()
        with self._read_tx() as conn:
            rows = repo.list_states(conn, include_deleted)
        out = []
        for r in rows:
            if not self.decide(who, Action.READ_OUTPUTS, r.path).allowed:
                continue  # listings are filtered, not refused: unseen paths stay unseen
            if prefix and not (
                r.path == prefix
                or r.path.startswith(prefix.rstrip("/") + "/")
                or glob_match(prefix, r.path)
            ):
                continue
            out.append(
                StateListing(
                    path=r.path,
                    serial=r.serial,
                    seq=r.current_seq,
                    size=r.size,
                    last_writer=r.author,
                    updated_at=r.updated_at,
                    protected=self.is_protected_row(r.path, r.protected),
                    deleted_at=r.deleted_at,
                    lock_id=r.lock_id,
                    lock_who=r.lock_who,
                    lock_age_seconds=None
                    if r.lock_acquired_at is None
                    else now - r.lock_acquired_at,
                )
            )
        return out

    def history(
        self, who: Principal, path: str, limit: int = 100, before: int | None = None
    ) -> list[VersionView]:
        self._authorize(who, Action.HISTORY, path)
        validate_path(path)
        limit = max(1, min(limit, 1000))
        with self._read_tx() as conn:
            state = repo.get_state(conn, path)
            if state is None:
                raise NotFound(f"no state at {path}")
            rows = repo.list_versions(conn, path, limit, before)
        current = state.current_seq if state.deleted_at is None else None
        return [version_view(r, current) for r in rows]

    def diff(self, who: Principal, path: str, from_seq: int, to_seq: int) -> dict[str, Any]:
        self._authorize(who, Action.HISTORY, path)
        a = self._load(path, self._version_row(path, from_seq)[1])
        b = self._load(path, self._version_row(path, to_seq)[1])
        result = statefile.diff_states(json.loads(a), json.loads(b))
        result.update(path=path, from_seq=from_seq, to_seq=to_seq)
        return result

    def delete(self, who: Principal, path: str) -> None:
        """Soft delete: the path disappears for clients; versions stay restorable."""
        self._authorize(who, Action.DELETE, path)
        validate_path(path)
        with self._write_tx() as conn:
            state = repo.get_state(conn, path)
            if state is None or state.deleted_at is not None or state.current_seq is None:
                raise NotFound(f"no state at {path}")
            if self.is_protected_row(path, state.protected):
                raise Forbidden(f"{path} is protected; deleting it is refused")
            held = repo.get_lock(conn, path)
            if held is not None:
                raise Locked(
                    f"{path} is locked by {held.who or 'unknown'}; delete refused", bytes(held.info)
                )
            repo.update_state(conn, path, deleted_at=self.clock(), deleted_by=who.name)
            self._record(conn, who, "delete", path, f"soft-deleted at seq={state.current_seq}")

    def restore(self, who: Principal, path: str) -> None:
        self._authorize(who, Action.ADMIN, path)
        validate_path(path)
        with self._write_tx() as conn:
            state = repo.get_state(conn, path)
            if state is None or state.deleted_at is None:
                raise NotFound(f"{path} is not a deleted state")
            repo.update_state(conn, path, deleted_at=None, deleted_by=None)
            self._record(conn, who, "restore", path)

    def purge(self, who: Principal, path: str) -> int:
        """Permanently remove a soft-deleted path and all its versions."""
        self._authorize(who, Action.ADMIN, path)
        validate_path(path)
        with self._write_tx() as conn:
            state = repo.get_state(conn, path)
            if state is None:
                raise NotFound(f"no state at {path}")
            if state.deleted_at is None:
                raise Conflict(f"{path} is not deleted; delete it before purging")
            if self.is_protected_row(path, state.protected):
                raise Forbidden(f"{path} is protected; purging it is refused")
            keys = maintenance.purge_path(conn, path)
            self.barrier.keys.forget_path(path)  # crypto-shredding: no cached copy survives
            self._record(conn, who, "purge", path, f"removed {len(keys)} versions")
        maintenance.delete_blobs(self, keys)
        return len(keys)

    def set_protected(self, who: Principal, path: str, protected: bool) -> None:
        self._authorize(who, Action.ADMIN, path)
        validate_path(path)
        with self._write_tx() as conn:
            repo.ensure_state(conn, path, self.clock())
            repo.update_state(conn, path, protected=protected)
            self._record(conn, who, "protect" if protected else "unprotect", path)

    def allow_next_write(self, who: Principal, path: str) -> None:
        """Accept the next write to ``path`` regardless of lineage/serial (``state push -force``).

        The lock check still applies; the override is consumed by the next accepted write.
        """
        self._authorize(who, Action.ADMIN, path)
        validate_path(path)
        with self._write_tx() as conn:
            repo.ensure_state(conn, path, self.clock())
            repo.update_state(conn, path, override_next_write=True)
            self._record(conn, who, "override-next-write", path)

    def events(self, who: Principal, path: str | None = None, limit: int = 100) -> list[EventView]:
        """Recorded events of one path, or of the whole store (needs ``audit`` on ``**``)."""
        self._authorize(who, Action.AUDIT, STORE_WIDE if path is None else path)
        if path is not None:
            validate_path(path)
        with self._read_tx() as conn:
            rows = repo.list_events(conn, path, max(1, min(limit, 10000)))
        return [EventView(r.id, r.at, r.principal, r.action, r.path, r.detail) for r in rows]

    def run_maintenance(self, who: Principal) -> MaintenanceReport:
        """Retention, purge of deleted paths past their grace period, orphan collection."""
        self._authorize(who, Action.ADMIN)
        return maintenance.run(self, who)
