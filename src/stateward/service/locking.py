"""Locks: take, release, force-release, list, break, and per-path leases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from stateward import metrics
from stateward.common.types import Body
from stateward.domain.actions import Action
from stateward.domain.errors import Locked, NotFound
from stateward.domain.globs import first_match
from stateward.domain.lockinfo import LockInfo, parse_lock_info
from stateward.domain.paths import validate_path
from stateward.domain.principal import Principal
from stateward.service import context as audit_context
from stateward.service.base import ServiceBase
from stateward.service.views import LockView
from stateward.storage import repo


class LockOps(ServiceBase):
    def lock(self, who: Principal, path: str, body: Body) -> LockInfo:
        """Take the lock with the client's LockInfo; raise :class:`Locked` with the holder's.

        The insert itself is the compare-and-set (``INSERT … ON CONFLICT DO NOTHING`` on the
        lock row's primary key): two LOCKs can never both succeed, whatever the interleaving
        or the number of replicas.
        """
        self._authorize(who, Action.LOCK, path)
        validate_path(path)
        info = parse_lock_info(body)
        audit_context.note(lock_id=info.id)
        with self._write_tx() as conn:
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
            if repo.insert_lock_if_absent(conn, values):
                return info
            held = repo.get_lock(conn, path)
            if held is None:  # released between our insert and select (another replica)
                if repo.insert_lock_if_absent(conn, values):
                    return info
                held = repo.get_lock(conn, path)
            if held is not None and held.lock_id == info.id:
                return info  # a retried LOCK by the holder
            rules = [(r.path, r.seconds) for r in self.settings.lock_leases]
            lease = first_match(rules, path)
            if held is not None and lease is not None and now - held.acquired_at > lease:
                repo.delete_lock(conn, path, held.lock_id)
                self._record(
                    conn,
                    who,
                    "lock-lease-expired",
                    path,
                    f"broke lock {held.lock_id} held by {held.who} after {lease:g}s",
                )
                if repo.insert_lock_if_absent(conn, values):
                    return info
                held = repo.get_lock(conn, path)
            raw = bytes(held.info) if held is not None else b"{}"
            holder = held.who if held is not None else "unknown"
            raise Locked(f"{path} is locked by {holder or 'unknown'}", raw)

    def unlock(self, who: Principal, path: str, body: Body) -> None:
        """Release the lock. An empty body is Terraform's force-unlock (no ID on the wire);
        OpenTofu's force-unlock sends the ID with every other field empty. Both need the
        ``force-unlock`` action; a holder's own UNLOCK (its full LockInfo) needs ``unlock``."""
        info = None if not body.strip() else parse_lock_info(body)
        force = info is None or not (info.operation or info.who or info.version)
        audit_context.note(lock_id=info.id if info is not None else None)
        self._authorize(who, Action.FORCE_UNLOCK if force else Action.UNLOCK, path)
        validate_path(path)
        with self._write_tx() as conn:
            if info is not None:
                held = repo.get_lock(conn, path)
                if held is not None and held.lock_id == info.id:
                    metrics.lock_released(self.clock() - held.acquired_at)
                if repo.delete_lock(conn, path, info.id):
                    if force:
                        self._record(conn, who, "force-unlock", path, f"released lock {info.id}")
                    return
                held = repo.get_lock(conn, path)
                if held is None:
                    return  # already released: a retried UNLOCK succeeds
                raise Locked(
                    f"{path} is locked with a different ID by {held.who or 'unknown'}",
                    bytes(held.info),
                )
            held = repo.get_lock(conn, path)
            if held is None:
                return
            audit_context.note(lock_id=held.lock_id)
            metrics.lock_released(self.clock() - held.acquired_at)
            repo.delete_lock(conn, path, held.lock_id)
            self._record(
                conn,
                who,
                "force-unlock",
                path,
                f"released lock {held.lock_id} held by {held.who}",
            )

    def get_lock(self, who: Principal, path: str) -> LockView | None:
        self._authorize(who, Action.HISTORY, path)
        validate_path(path)
        with self._read_tx() as conn:
            row = repo.get_lock(conn, path)
        return None if row is None else self._lock_view(row)

    def get_lock_info(self, who: Principal, path: str) -> bytes | None:
        """The holder's raw LockInfo JSON (what Terraform expects to parse), or None."""
        self._authorize(who, Action.READ, path)
        validate_path(path)
        with self._read_tx() as conn:
            row = repo.get_lock(conn, path)
        return None if row is None else bytes(row.info)

    def list_locks(self, who: Principal) -> list[LockView]:
        """Held locks on the paths where ``who`` holds ``history`` (others are not shown)."""
        self._mark(who, Action.HISTORY, None)
        with self._read_tx() as conn:
            rows = repo.list_locks(conn)
        return [
            self._lock_view(r) for r in rows if self.decide(who, Action.HISTORY, r.path).allowed
        ]

    def break_lock(self, who: Principal, path: str) -> LockView:
        """Administrative release of someone else's lock; always recorded."""
        self._authorize(who, Action.ADMIN, path)
        validate_path(path)
        with self._write_tx() as conn:
            held = repo.get_lock(conn, path)
            if held is None:
                raise NotFound(f"{path} is not locked")
            metrics.lock_released(self.clock() - held.acquired_at)
            repo.delete_lock(conn, path, held.lock_id)
            self._record(
                conn, who, "break-lock", path, f"broke lock {held.lock_id} held by {held.who}"
            )
            return self._lock_view(held)

    def _lock_view(self, row: Row[Any]) -> LockView:
        return LockView(
            path=row.path,
            id=row.lock_id,
            who=row.who,
            operation=row.operation,
            client_version=row.client_version,
            principal=row.principal,
            acquired_at=row.acquired_at,
            age_seconds=max(0.0, self.clock() - row.acquired_at),
        )
