"""StateService: the one place where a state operation is checked, stored and recorded.

Transports (HTTP protocol, JSON API, CLI) call only this class. Every mutating operation runs
its checks and its change inside one metadata transaction (``BEGIN IMMEDIATE`` on SQLite,
row locks on PostgreSQL), so a check can never be separated from the change it guards.
Blobs are written *before* the transaction that points at them: a crash in between leaves an
orphan blob (collected later), never a dangling pointer.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError, OperationalError

from stateward import statefile
from stateward.config import Settings
from stateward.crypto.barrier import Barrier, BlobCorrupt
from stateward.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Locked,
    NotFound,
    TooLarge,
    Unavailable,
)
from stateward.globs import first_match, glob_match
from stateward.lockinfo import LockInfo, parse_lock_info
from stateward.paths import validate_path
from stateward.principal import Principal
from stateward.service import maintenance
from stateward.service.views import (
    EventView,
    LockView,
    MaintenanceReport,
    StateListing,
    StoredState,
    VersionView,
    WriteOutcome,
)
from stateward.storage import repo
from stateward.storage.engine import READ_ONLY
from stateward.storage.schema import locks
from stateward.types import Body


class StateService:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        barrier: Barrier,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.barrier = barrier
        self.clock = clock

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def _write_tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise Unavailable("metadata store is unavailable, retry later") from exc

    @contextmanager
    def _read_tx(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise Unavailable("metadata store is unavailable, retry later") from exc

    def _record(
        self, conn: Connection, who: Principal, action: str, path: str | None, detail: str = ""
    ) -> None:
        repo.record_event(conn, self.clock(), who.name, action, path, detail)

    # -- reading --------------------------------------------------------------------------

    def read(self, who: Principal, path: str) -> StoredState | None:
        """The current state at ``path``, or None if there is none (or it is soft-deleted)."""
        validate_path(path)
        with self._read_tx() as conn:
            row = repo.current_version(conn, path)
        if row is None:
            return None
        body = self._load(path, row)
        return StoredState(body, bytes.fromhex(row.md5), row.seq, row.serial)

    def _load(self, path: str, row: Row[Any]) -> bytes:
        try:
            body = self.barrier.load(path, row.blob_key)
        except FileNotFoundError as exc:
            raise Unavailable(f"stored blob for {path} version {row.seq} is missing") from exc
        except BlobCorrupt as exc:
            raise Unavailable(f"stored blob for {path} version {row.seq} is unreadable") from exc
        if hashlib.sha256(body).hexdigest() != row.sha256:
            raise Unavailable(f"stored blob for {path} version {row.seq} fails its checksum")
        return body

    # -- writing --------------------------------------------------------------------------

    def write(
        self, who: Principal, path: str, body: Body, lock_id: str | None = None
    ) -> WriteOutcome:
        """Store ``body`` as the new state of ``path`` if the lock and the guards allow it.

        An identical re-send of the current state is a success that creates nothing, which is
        what makes a retried POST idempotent.
        """
        validate_path(path)
        if len(body) > self.settings.max_body_bytes:
            raise TooLarge(
                f"state is larger than the limit of {self.settings.max_body_bytes} bytes"
            )
        summary = statefile.parse_state(body)
        sha = hashlib.sha256(body).hexdigest()
        # Cheap pre-check so refused and identical writes never cost a blob write.
        with self._read_tx() as conn:
            pre = self._check_write(conn, path, summary, sha, lock_id)
        if isinstance(pre, WriteOutcome):
            return pre
        blob_key = uuid.uuid4().hex
        stored_size = self.barrier.store(path, blob_key, body)
        try:
            with self._write_tx() as conn:
                checked = self._check_write(conn, path, summary, sha, lock_id)
                if isinstance(checked, WriteOutcome):
                    outcome = checked
                else:
                    outcome = self._insert_version(
                        conn,
                        who,
                        path,
                        body,
                        summary,
                        sha,
                        blob_key,
                        stored_size,
                        lock_id,
                        kind="write",
                        source_seq=None,
                    )
        except BaseException:
            self.barrier.blobs.delete(blob_key)
            raise
        if not outcome.created:
            self.barrier.blobs.delete(blob_key)
        return outcome

    def _check_write(
        self,
        conn: Connection,
        path: str,
        summary: statefile.StateSummary,
        sha: str,
        lock_id: str | None,
    ) -> WriteOutcome | Row[Any] | None:
        """Raise if the write is refused; return an outcome for an identical re-send, else the
        current version row (or None for an empty path)."""
        self._check_lock_for_write(conn, path, lock_id)
        state = repo.get_state(conn, path)
        current = repo.current_version(conn, path)
        if current is None:
            return None  # first write (or after a delete) accepts any lineage
        if current.sha256 == sha:
            return WriteOutcome(created=False, seq=current.seq, serial=current.serial)
        if state is not None and state.override_next_write:
            return current
        if summary.lineage != current.lineage:
            raise Conflict(
                f"lineage mismatch: {path} holds lineage {current.lineage}, the write has "
                f"{summary.lineage}; refusing to overwrite a different state"
            )
        if summary.serial < current.serial:
            raise Conflict(
                f"stale write: serial {summary.serial} is lower than the stored serial "
                f"{current.serial} of {path}"
            )
        if summary.serial == current.serial:
            raise Conflict(
                f"serial {summary.serial} of {path} already stored with different content; "
                "a changed state needs a higher serial"
            )
        return current

    def _check_lock_for_write(self, conn: Connection, path: str, lock_id: str | None) -> None:
        lock = repo.get_lock(conn, path)
        if lock is None:
            if lock_id is not None:
                raise Conflict(
                    f"lock {lock_id} on {path} is not held (released or broken); refusing the write"
                )
            return
        if lock_id is None:
            raise Conflict(
                f"{path} is locked by {lock.who or 'unknown'} (lock ID {lock.lock_id}); "
                "a write must carry that lock's ID"
            )
        if lock_id != lock.lock_id:
            raise Conflict(
                f"lock ID mismatch: {path} is locked with ID {lock.lock_id} by "
                f"{lock.who or 'unknown'}, the write carries {lock_id}"
            )

    def _insert_version(
        self,
        conn: Connection,
        who: Principal,
        path: str,
        body: Body,
        summary: statefile.StateSummary,
        sha: str,
        blob_key: str,
        stored_size: int,
        lock_id: str | None,
        kind: str,
        source_seq: int | None,
    ) -> WriteOutcome:
        now = self.clock()
        state = repo.ensure_state(conn, path, now)
        lock = repo.get_lock(conn, path)
        client_version = lock.client_version if lock is not None else _ua_version(who.user_agent)
        seq = state.next_seq
        repo.insert_version(
            conn,
            path=path,
            seq=seq,
            serial=summary.serial,
            lineage=summary.lineage,
            size=len(body),
            stored_size=stored_size,
            md5=hashlib.md5(body, usedforsecurity=False).hexdigest(),
            sha256=sha,
            blob_key=blob_key,
            author=who.name,
            created_at=now,
            client_version=client_version,
            terraform_version=summary.terraform_version,
            lock_id=lock_id,
            resource_count=summary.resource_count,
            output_count=summary.output_count,
            client_encrypted=summary.client_encrypted,
            kind=kind,
            source_seq=source_seq,
        )
        if state.override_next_write:
            self._record(conn, who, "override-consumed", path, f"seq={seq}")
        if state.deleted_at is not None:
            self._record(conn, who, "recreate", path, f"seq={seq}")
        repo.update_state(
            conn,
            path,
            current_seq=seq,
            next_seq=seq + 1,
            updated_at=now,
            deleted_at=None,
            deleted_by=None,
            override_next_write=False,
        )
        return WriteOutcome(created=True, seq=seq, serial=summary.serial)

    # -- locks ----------------------------------------------------------------------------

    def lock(self, who: Principal, path: str, body: Body) -> LockInfo:
        """Take the lock with the client's LockInfo; raise :class:`Locked` with the holder's.

        The primary key on ``locks.path`` makes the insert itself the compare-and-set: two
        LOCKs can never both succeed, whatever the interleaving or the number of replicas.
        """
        validate_path(path)
        info = parse_lock_info(body)
        lease = first_match([(r.path, r.seconds) for r in self.settings.lock_leases], path)
        with self._write_tx() as conn:
            held = repo.get_lock(conn, path)
            if held is not None and held.lock_id == info.id:
                return info  # a retried LOCK by the holder
            now = self.clock()
            if held is not None and lease is not None and now - held.acquired_at > lease:
                repo.delete_lock(conn, path, held.lock_id)
                self._record(
                    conn,
                    who,
                    "lock-lease-expired",
                    path,
                    f"broke lock {held.lock_id} held by {held.who} after {lease:g}s",
                )
            try:
                with conn.begin_nested():
                    conn.execute(
                        locks.insert().values(
                            path=path,
                            lock_id=info.id,
                            info=info.raw,
                            who=info.who,
                            operation=info.operation,
                            client_version=info.version[:64],
                            principal=who.name,
                            acquired_at=now,
                        )
                    )
            except IntegrityError:
                holder = repo.get_lock(conn, path)
                raw = holder.info if holder is not None else b"{}"
                who_ = holder.who if holder is not None else "unknown"
                raise Locked(f"{path} is locked by {who_}", bytes(raw)) from None
        return info

    def unlock(self, who: Principal, path: str, body: Body) -> None:
        """Release the lock. An empty body is Terraform's force-unlock (no ID on the wire)."""
        validate_path(path)
        force = not body.strip()
        info = None if force else parse_lock_info(body)
        with self._write_tx() as conn:
            held = repo.get_lock(conn, path)
            if held is None:
                return  # already released: a retried UNLOCK succeeds
            if info is not None and info.id != held.lock_id:
                raise Locked(
                    f"{path} is locked with a different ID by {held.who or 'unknown'}",
                    bytes(held.info),
                )
            repo.delete_lock(conn, path, held.lock_id)
            if force:
                self._record(
                    conn,
                    who,
                    "force-unlock",
                    path,
                    f"released lock {held.lock_id} held by {held.who}",
                )

    def get_lock(self, who: Principal, path: str) -> LockView | None:
        validate_path(path)
        with self._read_tx() as conn:
            row = repo.get_lock(conn, path)
        return None if row is None else self._lock_view(row)

    def get_lock_info(self, who: Principal, path: str) -> bytes | None:
        """The holder's raw LockInfo JSON (what Terraform expects to parse), or None."""
        validate_path(path)
        with self._read_tx() as conn:
            row = repo.get_lock(conn, path)
        return None if row is None else bytes(row.info)

    def list_locks(self, who: Principal) -> list[LockView]:
        with self._read_tx() as conn:
            return [self._lock_view(r) for r in repo.list_locks(conn)]

    def break_lock(self, who: Principal, path: str) -> LockView:
        """Administrative release of someone else's lock; always recorded."""
        validate_path(path)
        with self._write_tx() as conn:
            held = repo.get_lock(conn, path)
            if held is None:
                raise NotFound(f"{path} is not locked")
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

    # -- listing, history, versions -------------------------------------------------------

    def list_states(
        self, who: Principal, prefix: str = "", include_deleted: bool = False
    ) -> list[StateListing]:
        now = self.clock()
        with self._read_tx() as conn:
            rows = repo.list_states(conn, include_deleted)
        out = []
        for r in rows:
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
        validate_path(path)
        limit = max(1, min(limit, 1000))
        with self._read_tx() as conn:
            state = repo.get_state(conn, path)
            if state is None:
                raise NotFound(f"no state at {path}")
            rows = repo.list_versions(conn, path, limit, before)
        current = state.current_seq if state.deleted_at is None else None
        return [_version_view(r, current) for r in rows]

    def get_version(self, who: Principal, path: str, seq: int) -> tuple[VersionView, bytes]:
        validate_path(path)
        with self._read_tx() as conn:
            state = repo.get_state(conn, path)
            row = repo.get_version(conn, path, seq)
        if state is None or row is None:
            raise NotFound(f"{path} has no version {seq}")
        current = state.current_seq if state.deleted_at is None else None
        return _version_view(row, current), self._load(path, row)

    def diff(self, who: Principal, path: str, from_seq: int, to_seq: int) -> dict[str, Any]:
        _, a = self.get_version(who, path, from_seq)
        _, b = self.get_version(who, path, to_seq)
        result = statefile.diff_states(json.loads(a), json.loads(b))
        result.update(path=path, from_seq=from_seq, to_seq=to_seq)
        return result

    def rollback(
        self, who: Principal, path: str, seq: int, lock_id: str | None = None
    ) -> WriteOutcome:
        """Write the content of version ``seq`` as a new version (history is never rewritten).

        Refused while someone else holds the lock; the lineage/serial guards do not apply
        (going back is the point), but the lock does.
        """
        _, body = self.get_version(who, path, seq)
        summary = statefile.parse_state(body)
        sha = hashlib.sha256(body).hexdigest()
        blob_key = uuid.uuid4().hex
        stored_size = self.barrier.store(path, blob_key, body)
        outcome: WriteOutcome | None = None
        try:
            with self._write_tx() as conn:
                held = repo.get_lock(conn, path)
                if held is not None and held.lock_id != lock_id:
                    raise Locked(
                        f"{path} is locked by {held.who or 'unknown'}; rollback refused",
                        bytes(held.info),
                    )
                current = repo.current_version(conn, path)
                if current is not None and current.sha256 == sha:
                    outcome = WriteOutcome(False, current.seq, current.serial)
                else:
                    outcome = self._insert_version(
                        conn,
                        who,
                        path,
                        body,
                        summary,
                        sha,
                        blob_key,
                        stored_size,
                        lock_id,
                        kind="rollback",
                        source_seq=seq,
                    )
                    self._record(conn, who, "rollback", path, f"to seq={seq} as seq={outcome.seq}")
        finally:
            if outcome is None or not outcome.created:
                self.barrier.blobs.delete(blob_key)
        return outcome

    # -- deletion, protection, overrides --------------------------------------------------

    def is_protected_row(self, path: str, flag: bool) -> bool:
        return bool(flag) or any(glob_match(g, path) for g in self.settings.protected_paths)

    def delete(self, who: Principal, path: str) -> None:
        """Soft delete: the path disappears for clients; versions stay restorable."""
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
        validate_path(path)
        with self._write_tx() as conn:
            state = repo.get_state(conn, path)
            if state is None or state.deleted_at is None:
                raise NotFound(f"{path} is not a deleted state")
            repo.update_state(conn, path, deleted_at=None, deleted_by=None)
            self._record(conn, who, "restore", path)

    def purge(self, who: Principal, path: str) -> int:
        """Permanently remove a soft-deleted path and all its versions."""
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
            self._record(conn, who, "purge", path, f"removed {len(keys)} versions")
        maintenance.delete_blobs(self.barrier.blobs, keys)
        return len(keys)

    def set_protected(self, who: Principal, path: str, protected: bool) -> None:
        validate_path(path)
        with self._write_tx() as conn:
            repo.ensure_state(conn, path, self.clock())
            repo.update_state(conn, path, protected=protected)
            self._record(conn, who, "protect" if protected else "unprotect", path)

    def allow_next_write(self, who: Principal, path: str) -> None:
        """Accept the next write to ``path`` regardless of lineage/serial (``state push -force``).

        The lock check still applies; the override is consumed by the next accepted write.
        """
        validate_path(path)
        with self._write_tx() as conn:
            repo.ensure_state(conn, path, self.clock())
            repo.update_state(conn, path, override_next_write=True)
            self._record(conn, who, "override-next-write", path)

    def events(self, who: Principal, path: str | None = None, limit: int = 100) -> list[EventView]:
        if path is not None:
            validate_path(path)
        with self._read_tx() as conn:
            rows = repo.list_events(conn, path, max(1, min(limit, 10000)))
        return [EventView(r.id, r.at, r.principal, r.action, r.path, r.detail) for r in rows]

    # -- maintenance and health -----------------------------------------------------------

    def run_maintenance(self, who: Principal) -> MaintenanceReport:
        """Retention, purge of deleted paths past their grace period, orphan collection."""
        return maintenance.run(self, who)

    def ready(self) -> bool:
        try:
            with self._read_tx() as conn:
                repo.version_count(conn)
        except Unavailable:
            return False
        return True


def _ua_version(user_agent: str) -> str:
    for token in user_agent.split():
        name, _, ver = token.partition("/")
        if name.lower() in ("terraform", "opentofu", "tofu") and ver:
            return ver[:64]
    return ""


def _version_view(r: Row[Any], current: int | None) -> VersionView:
    return VersionView(
        path=r.path,
        seq=r.seq,
        serial=r.serial,
        lineage=r.lineage,
        size=r.size,
        stored_size=r.stored_size,
        md5=r.md5,
        sha256=r.sha256,
        author=r.author,
        created_at=r.created_at,
        client_version=r.client_version,
        terraform_version=r.terraform_version,
        lock_id=r.lock_id,
        resource_count=r.resource_count,
        output_count=r.output_count,
        client_encrypted=r.client_encrypted,
        kind=r.kind,
        source_seq=r.source_seq,
        current=r.seq == current,
    )


__all__ = ["BadRequest", "StateService"]
