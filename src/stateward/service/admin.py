"""Administering paths: soft delete, restore, purge, protection, the one-shot guard override,
the events of a path, and maintenance (retention, purges, orphans)."""

from __future__ import annotations

from stateward.domain.actions import Action
from stateward.domain.errors import Conflict, Forbidden, Locked, NotFound
from stateward.domain.principal import Principal
from stateward.service import maintenance
from stateward.service.deps import Operations
from stateward.service.views import EventView, MaintenanceReport
from stateward.storage import events_repo, locks_repo, states_repo

MAX_EVENTS = 10000


class AdminOps(Operations):
    def delete(self, who: Principal, path: str) -> None:
        """Soft delete: the path disappears for clients; versions stay restorable."""
        path = self.authz.authorize(who, Action.DELETE, path)
        with self.uow.write() as conn:
            state = states_repo.get_state(conn, path)
            if state is None or state.deleted_at is not None or state.current_seq is None:
                raise NotFound(f"no state at {path}")
            if self.versions.is_protected(path, state.protected):
                raise Forbidden(f"{path} is protected; deleting it is refused")
            held = locks_repo.get(conn, path)
            if held is not None:
                raise Locked(
                    f"{path} is locked by {held.who or 'unknown'}; delete refused", bytes(held.info)
                )
            states_repo.update_state(conn, path, deleted_at=self.clock(), deleted_by=who.name)
            self.event(conn, who, "delete", path, f"soft-deleted at seq={state.current_seq}")

    def restore(self, who: Principal, path: str) -> None:
        path = self.authz.authorize(who, Action.ADMIN, path)
        with self.uow.write() as conn:
            state = states_repo.get_state(conn, path)
            if state is None or state.deleted_at is None:
                raise NotFound(f"{path} is not a deleted state")
            states_repo.update_state(conn, path, deleted_at=None, deleted_by=None)
            self.event(conn, who, "restore", path)

    def purge(self, who: Principal, path: str) -> int:
        """Permanently remove a soft-deleted path and all its versions."""
        path = self.authz.authorize(who, Action.ADMIN, path)
        with self.uow.write() as conn:
            state = states_repo.get_state(conn, path)
            if state is None:
                raise NotFound(f"no state at {path}")
            if state.deleted_at is None:
                raise Conflict(f"{path} is not deleted; delete it before purging")
            if self.versions.is_protected(path, state.protected):
                raise Forbidden(f"{path} is protected; purging it is refused")
            keys = states_repo.purge_path(conn, path)
            self.barrier.keys.forget_path(path)  # crypto-shredding: no cached copy survives
            self.event(conn, who, "purge", path, f"removed {len(keys)} versions")
        self.versions.delete_blobs(keys)
        return len(keys)

    def set_protected(self, who: Principal, path: str, protected: bool) -> None:
        path = self.authz.authorize(who, Action.ADMIN, path)
        with self.uow.write() as conn:
            states_repo.ensure_state(conn, path, self.clock())
            states_repo.update_state(conn, path, protected=protected)
            self.event(conn, who, "protect" if protected else "unprotect", path)

    def allow_next_write(self, who: Principal, path: str) -> None:
        """Accept the next write to ``path`` regardless of lineage/serial (``state push -force``).

        The lock check still applies; the override is consumed by the next accepted write.
        """
        path = self.authz.authorize(who, Action.ADMIN, path)
        with self.uow.write() as conn:
            states_repo.ensure_state(conn, path, self.clock())
            states_repo.update_state(conn, path, override_next_write=True)
            self.event(conn, who, "override-next-write", path)

    def events(self, who: Principal, path: str | None = None, limit: int = 100) -> list[EventView]:
        """Recorded events of one path, or of the whole store (needs ``audit`` on ``**``)."""
        if path is None:
            self.authz.authorize_store(who, Action.AUDIT)
        else:
            path = self.authz.authorize(who, Action.AUDIT, path)
        with self.uow.read() as conn:
            rows = events_repo.list_events(conn, path, max(1, min(limit, MAX_EVENTS)))
        return [EventView(r.id, r.at, r.principal, r.action, r.path, r.detail) for r in rows]

    def run_maintenance(self, who: Principal) -> MaintenanceReport:
        """Retention, purge of deleted paths past their grace period, orphan collection."""
        self.authz.authorize_store(who, Action.ADMIN)
        return maintenance.run(self, who)
