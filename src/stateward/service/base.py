"""What every part of the service shares: transactions, blob loading, version inserts.

Every mutating operation runs its checks and its change inside one metadata transaction, and
write transactions run one at a time (``BEGIN IMMEDIATE`` on SQLite, a transaction-level
advisory lock on PostgreSQL: storage/engine.py), so a check can never be separated from the
change it guards, on one server or across replicas. Blobs are written *before* the
transaction that points at them: a crash in between leaves an orphan blob (collected later),
never a dangling pointer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Row
from sqlalchemy.exc import DataError, OperationalError

from stateward.common.types import Body
from stateward.config import Settings
from stateward.crypto.barrier import Barrier, BlobCorrupt, KeyRef
from stateward.crypto.providers.base import KeyDenied, KeyInvalid, KeyUnavailable
from stateward.domain import audit_chain as chain
from stateward.domain import statefile
from stateward.domain.actions import Action
from stateward.domain.audit_record import AuditRecord, Outcome
from stateward.domain.errors import BadRequest, Forbidden, NotFound, Unavailable
from stateward.domain.globs import glob_match
from stateward.domain.paths import validate_path
from stateward.domain.policy import (
    STORE_WIDE,
    Decision,
    PolicyConfig,
    ReadScope,
    decide,
    read_scope,
)
from stateward.domain.principal import Principal
from stateward.service import context as audit_context
from stateward.service.cache import BodyCache
from stateward.service.context import AuditContext
from stateward.service.views import VersionView, WriteOutcome
from stateward.storage import repo
from stateward.storage.engine import READ_ONLY
from stateward.storage.leases import Lease

log = logging.getLogger("stateward.service")
CACHE_BYTES = 64 * 1024 * 1024
CACHE_ENTRY = 4 * 1024 * 1024


class ServiceBase:
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
        self.cache = BodyCache(CACHE_BYTES, CACHE_ENTRY)
        self.policy = PolicyConfig(roles=settings.roles)
        #: Called with every committed audit record (sinks, alert rules); must not block.
        self.audit_listeners: list[Callable[[AuditRecord], None]] = []

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    def decide(self, who: Principal, action: Action, path: str = STORE_WIDE) -> Decision:
        """The policy's decision for ``who`` (no side effects; for filtering listings)."""
        return decide(
            self.policy,
            who.roles,
            action,
            path,
            source=who.source,
            now=self._now(),
            path_limits=who.paths,
        )

    def _authorize(self, who: Principal, action: Action, path: str = STORE_WIDE) -> None:
        """Refuse unless a rule allows ``action`` on ``path``. Called first in every
        operation, before the path is looked up, so a refusal reveals nothing about what
        exists; the reason is one line naming roles, action and path only. A malformed path
        is a 400 (input validation reveals nothing), checked first."""
        if path != STORE_WIDE:
            validate_path(path)
        self._mark(who, action, None if path == STORE_WIDE else path)
        decision = self.decide(who, action, path)
        if not decision.allowed:
            raise Forbidden(decision.reason)

    def _read_scope(self, who: Principal, path: str) -> ReadScope:
        validate_path(path)
        self._mark(who, Action.READ, path)
        scope, decision = read_scope(
            self.policy,
            who.roles,
            path,
            source=who.source,
            now=self._now(),
            path_limits=who.paths,
        )
        if scope is ReadScope.NONE:
            raise Forbidden(decision.reason)
        return scope

    @contextmanager
    def _write_tx(self) -> Iterator[Connection]:
        """A write transaction. The first one of an audited operation to commit also carries
        that operation's audit record, so a change and its record commit together or not at
        all (a failing audit insert fails the operation: fail closed)."""
        ctx = audit_context.current()
        pending: AuditRecord | None = None
        try:
            with self.engine.begin() as conn:
                yield conn
                if ctx is not None and not ctx.recorded and ctx.action is not None:
                    pending = self._append_audit(conn, self._audit_record(ctx, "ok", 200))
        except OperationalError as exc:
            raise Unavailable("metadata store is unavailable, retry later") from exc
        except DataError as exc:
            # A value the store refuses to hold (PostgreSQL: a NUL character in text, an
            # integer past 64 bits); SQLite stores the former. Never echo the value.
            raise BadRequest(_data_error_reason(exc)) from exc
        if pending is not None:
            assert ctx is not None
            ctx.recorded = True
            self._publish(pending)

    def _audit_record(
        self, ctx: AuditContext, outcome: Outcome, status: int, reason: str = ""
    ) -> AuditRecord:
        who = ctx.who
        facts = ctx.facts
        return AuditRecord(
            at=self.clock(),
            request_id=ctx.request_id,
            principal=who.name if who is not None else "anonymous",
            principal_kind=who.kind if who is not None else "anonymous",
            source=(who.source if who is not None else "") or ctx.source,
            user_agent=ctx.user_agent or (who.user_agent if who is not None else ""),
            action=ctx.action or ("request" if who is not None else "authenticate"),
            operation=ctx.operation,
            path=ctx.path,
            outcome=outcome,
            status=status,
            reason=" ".join(reason.split())[:500],
            lock_id=facts.get("lock_id"),
            serial=facts.get("serial"),
            version=facts.get("version"),
            bytes_in=int(facts.get("bytes_in", 0)),
            bytes_out=int(facts.get("bytes_out", 0)),
            resources=facts.get("resources"),
            prev_resources=facts.get("prev_resources"),
            claims=dict(who.claims) if who is not None else {},
        )

    def _append_audit(self, conn: Connection, record: AuditRecord) -> AuditRecord:
        """Link ``record`` to the chain head and insert it (inside the caller's transaction,
        which holds the write lock, so the chain stays one line under concurrency)."""
        head = repo.audit_head(conn)
        seq, prev = (1, chain.GENESIS) if head is None else (head[0] + 1, head[1])
        sealed = chain.seal(record, seq, prev)
        repo.insert_audit(
            conn,
            seq=seq,
            at=sealed.at,
            principal=sealed.principal[:512],
            action=sealed.action,
            path=sealed.path,
            outcome=sealed.outcome,
            prev_hash=sealed.prev_hash,
            hash=sealed.hash,
            record=json.dumps(sealed.to_dict(), sort_keys=True, separators=(",", ":")),
        )
        return sealed

    def _publish(self, record: AuditRecord) -> None:
        """Hand a committed record to the listeners (sinks, alert rules). Listeners must not
        block; one failing never affects the request or the others."""
        for listener in list(self.audit_listeners):
            try:
                listener(record)
            except Exception:
                log.exception("audit listener failed")

    def _mark(self, who: Principal, action: Action, path: str | None) -> None:
        """Tell the audit context which action the operation needs (first one wins)."""
        ctx = audit_context.current()
        if ctx is not None and ctx.action is None:
            ctx.who = ctx.who or who
            ctx.action = action.value
            ctx.path = path

    @contextmanager
    def _read_tx(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise Unavailable("metadata store is unavailable, retry later") from exc

    @contextmanager
    def _key_errors(self, path: str) -> Iterator[None]:
        """Key provider failures as service errors: nothing is written, nothing is returned.
        KeyInvalid (a wrapped key that does not unwrap) is tampering or a wrong key: logged as
        an error and refused like a corrupt blob, never retried into a plaintext fallback."""
        try:
            yield
        except KeyUnavailable as exc:
            log.warning("key service unavailable for %s: %s", path, exc)
            raise Unavailable(f"{exc}; retry later") from exc
        except KeyDenied as exc:
            log.error("key service refused for %s: %s", path, exc)
            raise Unavailable(str(exc), retry=False) from exc
        except KeyInvalid as exc:
            log.error("data key of %s does not unwrap: %s", path, exc)
            raise Unavailable(f"a stored data key of {path} does not unwrap", retry=False) from exc

    def _record(
        self, conn: Connection, who: Principal, action: str, path: str | None, detail: str = ""
    ) -> None:
        repo.record_event(conn, self.clock(), who.name, action, path, detail)

    def _load(self, path: str, row: Row[Any]) -> bytes:
        """The verified body of a version row (from cache, or blob + checksum)."""
        cached = self.cache.get(row.blob_key)
        if cached is not None:
            return cached
        try:
            with self._key_errors(path):
                body = self.barrier.load(path, row.blob_key)
        except FileNotFoundError as exc:
            raise Unavailable(f"stored blob for {path} version {row.seq} is missing") from exc
        except BlobCorrupt as exc:
            log.error("blob of %s version %s fails: %s", path, row.seq, exc)
            raise Unavailable(
                f"stored blob for {path} version {row.seq} is unreadable ({exc})"
            ) from exc
        if hashlib.sha256(body).hexdigest() != row.sha256:
            raise Unavailable(f"stored blob for {path} version {row.seq} fails its checksum")
        self.cache.put(row.blob_key, body)
        return body

    def get_version(self, who: Principal, path: str, seq: int) -> VersionView:
        """A version's metadata (needs ``history``)."""
        self._authorize(who, Action.HISTORY, path)
        view, _row = self._version_row(path, seq)
        return view

    def get_version_body(self, who: Principal, path: str, seq: int) -> tuple[VersionView, bytes]:
        """A version's metadata and content (needs ``read``: it is the whole state)."""
        self._authorize(who, Action.READ, path)
        view, row = self._version_row(path, seq)
        return view, self._load(path, row)

    def _version_row(self, path: str, seq: int) -> tuple[VersionView, Row[Any]]:
        validate_path(path)
        with self._read_tx() as conn:
            state = repo.get_state(conn, path)
            row = repo.get_version(conn, path, seq)
        if state is None or row is None:
            raise NotFound(f"{path} has no version {seq}")
        current = state.current_seq if state.deleted_at is None else None
        return version_view(row, current), row

    def _insert_version(
        self,
        conn: Connection,
        who: Principal,
        path: str,
        ctx: Row[Any] | None,
        lock: Row[Any] | None,
        body: Body,
        md5: str,
        sha: str,
        summary: statefile.StateSummary,
        blob_key: str,
        stored_size: int,
        lock_id: str | None,
        key_ref: KeyRef | None = None,
        kind: str = "write",
        source_seq: int | None = None,
        created_at: float | None = None,
    ) -> WriteOutcome:
        """Insert the next version; ``ctx`` is :func:`repo.write_context` read in this tx.
        ``created_at`` (imports: the source's own time) defaults to now."""
        now = self.clock()
        seq = 1 if ctx is None else int(ctx.next_seq)
        audit_context.note(
            version=seq,
            serial=summary.serial,
            lock_id=lock_id,
            resources=summary.resource_count,
            prev_resources=None if ctx is None or ctx.seq is None else ctx.resource_count,
        )
        client_version = lock.client_version if lock is not None else _ua_version(who.user_agent)
        if ctx is None:
            repo.insert_state(conn, path, now, current_seq=seq)
        repo.insert_version(
            conn,
            path=path,
            seq=seq,
            serial=summary.serial,
            lineage=summary.lineage,
            size=len(body),
            stored_size=stored_size,
            md5=md5,
            sha256=sha,
            blob_key=blob_key,
            author=who.name,
            created_at=now if created_at is None else created_at,
            client_version=client_version,
            terraform_version=summary.terraform_version,
            lock_id=lock_id,
            resource_count=summary.resource_count,
            output_count=summary.output_count,
            client_encrypted=summary.client_encrypted,
            kind=kind,
            source_seq=source_seq,
        )
        if key_ref is not None:
            repo.insert_blob_key(conn, blob_key, path, key_ref)
        if ctx is not None:
            if ctx.override_next_write:
                self._record(conn, who, "override-consumed", path, f"seq={seq}")
            if ctx.deleted_at is not None:
                self._record(conn, who, "recreate", path, f"seq={seq}")
            repo.advance_state(conn, path, seq, now)
        return WriteOutcome(created=True, seq=seq, serial=summary.serial)

    def is_protected_row(self, path: str, flag: bool) -> bool:
        return bool(flag) or any(glob_match(g, path) for g in self.settings.protected_paths)

    def job_lease(self, name: str) -> Lease:
        """The lease that runs background job ``name`` on one replica at a time
        (storage/leases.py); the caller asks ``held()`` before each step."""
        return Lease(self.engine, name, ttl=self.settings.job_lease_seconds)

    def state_counts(self) -> dict[str, int]:
        """Active and soft-deleted paths (the ``stateward_states`` gauge); internal."""
        with self._read_tx() as conn:
            return repo.count_states_by_status(conn)

    def kms_call_counts(self) -> list[tuple[str, str, str, int]]:
        """``(provider, kind, operation, calls)`` of every key provider that counts its calls
        to a remote KMS (the ``stateward_kms_calls`` counter); internal."""
        out: list[tuple[str, str, str, int]] = []
        for name, provider in sorted(self.barrier.keys.providers.items()):
            counts = getattr(provider, "call_counts", None)
            if counts is not None:
                out.extend((name, provider.kind, op, n) for op, n in sorted(counts().items()))
        return out

    def ready(self) -> bool:
        try:
            with self._read_tx() as conn:
                repo.ping(conn)
        except Unavailable:
            return False
        return True


def _data_error_reason(exc: DataError) -> str:
    text = str(exc.orig)
    if "NUL" in text:
        return "the request holds a NUL character, which the metadata store cannot hold"
    if "out of range" in text:
        return "the request holds a number out of the metadata store's range"
    return "the request holds a value the metadata store cannot hold"


def _ua_version(user_agent: str) -> str:
    for token in user_agent.split():
        name, _, ver = token.partition("/")
        if name.lower() in ("terraform", "opentofu", "tofu") and ver:
            return ver[:64]
    return ""


def version_view(r: Row[Any], current: int | None) -> VersionView:
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
        secrets=getattr(r, "secrets", None),
    )
