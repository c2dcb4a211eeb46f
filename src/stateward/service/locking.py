"""Locks: take, release, force-release, list, break, and per-path leases."""

from __future__ import annotations

from typing import Any

from stateward import metrics
from stateward.common.types import Body
from stateward.domain.actions import Action
from stateward.domain.errors import Locked, NotFound
from stateward.domain.globs import first_match
from stateward.domain.lockinfo import LockInfo, parse_lock_info
from stateward.domain.principal import Principal
from stateward.service import context
from stateward.service.deps import Operations
from stateward.service.views import LockView, lock_view
from stateward.storage import locks_repo
from stateward.storage.records import LockRecord


class LockOps(Operations):
    def lock(self, who: Principal, path: str, body: Body) -> LockInfo:
        """Take the lock with the client's LockInfo; raise :class:`Locked` with the holder's.

        The insert itself is the compare-and-set (``INSERT … ON CONFLICT DO NOTHING`` on the
        lock row's primary key): two LOCKs can never both succeed, whatever the interleaving
        or the number of replicas.
        """
        path = self.authz.authorize(who, Action.LOCK, path)
        info = parse_lock_info(body)
        context.note(lock_id=info.id)
        with self.uow.write() as conn:
            now = self.clock()
            values: dict[str, Any] = dict(
                path=path,
                lock_id=info.id,
                info=info.raw,
                who=info.who,
                operation=info.operation,
                client_version=info.version[:64],
                principal=who.name,
                acquired_at=now,
            )
            if locks_repo.insert_if_free(conn, values):
                return info
            held = locks_repo.get(conn, path)
            if held is None:  # released between our insert and select (another replica)
                if locks_repo.insert_if_free(conn, values):
                    return info
                held = locks_repo.get(conn, path)
            if held is not None and held.lock_id == info.id:
                return info  # a retried LOCK by the holder
            rules = [(r.path, r.seconds) for r in self.settings.lock_leases]
            lease = first_match(rules, path)
            if held is not None and lease is not None and now - held.acquired_at > lease:
                locks_repo.delete_lock(conn, path, held.lock_id)
                self.event(
                    conn,
                    who,
                    "lock-lease-expired",
                    path,
                    f"broke lock {held.lock_id} held by {held.who} after {lease:g}s",
                )
                if locks_repo.insert_if_free(conn, values):
                    return info
                held = locks_repo.get(conn, path)
            raw = bytes(held.info) if held is not None else b"{}"
            holder = held.who if held is not None else "unknown"
            raise Locked(f"{path} is locked by {holder or 'unknown'}", raw)

    def unlock(self, who: Principal, path: str, body: Body) -> None:
        """Release the lock. An empty body is Terraform's force-unlock (no ID on the wire);
        OpenTofu's force-unlock sends the ID with every other field empty. Both need the
        ``force-unlock`` action; a holder's own UNLOCK (its full LockInfo) needs ``unlock``."""
        info = None if not body.strip() else parse_lock_info(body)
        force = info is None or not (info.operation or info.who or info.version)
        context.note(lock_id=info.id if info is not None else None)
        path = self.authz.authorize(who, Action.FORCE_UNLOCK if force else Action.UNLOCK, path)
        with self.uow.write() as conn:
            if info is not None:
                held = locks_repo.get(conn, path)
                if held is not None and held.lock_id == info.id:
                    metrics.lock_released(self.clock() - held.acquired_at)
                if locks_repo.delete_lock(conn, path, info.id):
                    if force:
                        self.event(conn, who, "force-unlock", path, f"released lock {info.id}")
                    return
                held = locks_repo.get(conn, path)
                if held is None:
                    return  # already released: a retried UNLOCK succeeds
                raise Locked(
                    f"{path} is locked with a different ID by {held.who or 'unknown'}",
                    bytes(held.info),
                )
            held = locks_repo.get(conn, path)
            if held is None:
                return
            context.note(lock_id=held.lock_id)
            metrics.lock_released(self.clock() - held.acquired_at)
            locks_repo.delete_lock(conn, path, held.lock_id)
            self.event(
                conn, who, "force-unlock", path, f"released lock {held.lock_id} held by {held.who}"
            )

    def get_lock(self, who: Principal, path: str) -> LockView | None:
        path = self.authz.authorize(who, Action.HISTORY, path)
        with self.uow.read() as conn:
            held = locks_repo.get(conn, path)
        return None if held is None else self._view(held)

    def get_lock_info(self, who: Principal, path: str) -> bytes | None:
        """The holder's raw LockInfo JSON (what Terraform expects to parse), or None."""
        path = self.authz.authorize(who, Action.READ, path)
        with self.uow.read() as conn:
            held = locks_repo.get(conn, path)
        return None if held is None else bytes(held.info)

    def list_locks(self, who: Principal) -> list[LockView]:
        """Held locks on the paths where ``who`` holds ``history`` (others are not shown)."""
        self.authz.mark(who, Action.HISTORY, None)
        with self.uow.read() as conn:
            held = locks_repo.list_all(conn)
        return [
            self._view(h) for h in held if self.authz.decide(who, Action.HISTORY, h.path).allowed
        ]

    def break_lock(self, who: Principal, path: str) -> LockView:
        """Administrative release of someone else's lock; always recorded."""
        path = self.authz.authorize(who, Action.ADMIN, path)
        with self.uow.write() as conn:
            held = locks_repo.get(conn, path)
            if held is None:
                raise NotFound(f"{path} is not locked")
            metrics.lock_released(self.clock() - held.acquired_at)
            locks_repo.delete_lock(conn, path, held.lock_id)
            self.event(
                conn, who, "break-lock", path, f"broke lock {held.lock_id} held by {held.who}"
            )
            return self._view(held)

    def _view(self, held: LockRecord) -> LockView:
        return lock_view(held, self.clock())
