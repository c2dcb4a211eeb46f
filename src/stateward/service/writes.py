"""Reading and writing states: the protocol's GET and POST, and rollback."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row

from stateward.common.types import Body
from stateward.crypto.barrier import KeyRef
from stateward.domain import statefile
from stateward.domain.actions import Action
from stateward.domain.errors import BadRequest, Conflict, Forbidden, Locked, TooLarge
from stateward.domain.globs import glob_match
from stateward.domain.paths import validate_path
from stateward.domain.policy import ReadScope, outputs_only
from stateward.domain.principal import Principal
from stateward.service import context as audit_context
from stateward.service.base import ServiceBase
from stateward.service.views import StoredState, WriteOutcome
from stateward.storage import repo

#: Bodies at least this large get a read-only pre-check, so a refused or identical upload
#: never costs a blob write; small ones go straight to the (re-checking) write transaction.
PRECHECK_BYTES = 1024 * 1024


@dataclass
class _StagedBlob:
    key: str
    size: int = 0
    ref: KeyRef | None = None
    keep: bool = False


class WriteOps(ServiceBase):
    @contextmanager
    def _staged_blob(self, path: str, body: Body) -> Iterator[_StagedBlob]:
        """Store the blob *before* the transaction that will point at it (DESIGN.md's
        invariant) and delete it again unless the caller marks it kept after the commit."""
        blob = _StagedBlob(uuid.uuid4().hex)
        with self._key_errors(path):
            sealed = self.barrier.store(path, blob.key, body)
        blob.size, blob.ref = len(sealed.data), sealed.key
        try:
            yield blob
        finally:
            if not blob.keep:
                self.barrier.blobs.delete(blob.key)

    def _check_client_encryption(self, path: str, summary: statefile.StateSummary) -> None:
        """``[[client_encryption]]``: refuse what the path's policy does not allow."""
        for rule in self.settings.client_encryption:
            if not any(glob_match(g, path) for g in rule.paths):
                continue
            where = ", ".join(rule.paths)
            if not summary.client_encrypted:
                raise Forbidden(
                    f"client_encryption policy for {where} requires OpenTofu client-side "
                    f"encryption; refusing a plaintext state for {path}"
                )
            allowed = set(rule.key_providers)
            used = set(summary.client_key_providers)
            if allowed and (not used or not used <= allowed):
                raise Forbidden(
                    f"client_encryption policy for {where} allows only key providers "
                    f"{', '.join(sorted(allowed))}; this state uses "
                    f"{', '.join(sorted(used)) or 'none'}"
                )
            return

    def read(self, who: Principal, path: str) -> StoredState | None:
        """The current state at ``path``, or None if there is none (or it is soft-deleted).

        A principal with ``read`` gets the stored bytes. One with only ``read-outputs`` (or
        ``read-sensitive-outputs``) gets a valid state holding the outputs and no resources,
        which is all ``terraform_remote_state`` needs.
        """
        scope = self._read_scope(who, path)
        validate_path(path)
        with self._read_tx() as conn:
            row = repo.current_version(conn, path)
        if row is None:
            return None
        body = self._load(path, row)
        if scope is ReadScope.FULL:
            state = StoredState(body, bytes.fromhex(row.md5), row.seq, row.serial)
        else:
            state = _outputs_view(path, body, row, scope is ReadScope.OUTPUTS_WITH_SENSITIVE)
        audit_context.note(version=row.seq, serial=row.serial, bytes_out=len(state.body))
        return state

    def write(
        self,
        who: Principal,
        path: str,
        body: Body,
        lock_id: str | None = None,
        content_md5: bytes | None = None,
    ) -> WriteOutcome:
        """Store ``body`` as the new state of ``path`` if the lock and the guards allow it.

        ``content_md5`` is the digest the client declared (Content-MD5); it must match. An
        identical re-send of the current state is a success that creates nothing, which is
        what makes a retried POST idempotent.
        """
        self._authorize(who, Action.WRITE, path)
        validate_path(path)
        limit = self.settings.max_body_bytes
        if len(body) > limit:
            raise TooLarge(f"state is larger than the limit of {limit} bytes")
        md5 = hashlib.md5(body, usedforsecurity=False).digest()
        if content_md5 is not None and not hmac.compare_digest(md5, content_md5):
            raise BadRequest("Content-MD5 does not match the body; the upload was corrupted")
        summary = statefile.parse_state(body)
        audit_context.note(lock_id=lock_id, serial=summary.serial, resources=summary.resource_count)
        self._check_client_encryption(path, summary)
        sha = hashlib.sha256(body).hexdigest()
        if len(body) >= PRECHECK_BYTES:
            with self._read_tx() as conn:
                pre = self._check_write(conn, path, summary, sha, lock_id)
            if isinstance(pre[0], WriteOutcome):
                return pre[0]
        with self._staged_blob(path, body) as blob:
            with self._write_tx() as conn:
                checked, ctx, lock = self._check_write(conn, path, summary, sha, lock_id)
                if checked is not None:
                    return checked
                outcome = self._insert_version(
                    conn,
                    who,
                    path,
                    ctx,
                    lock,
                    body,
                    md5.hex(),
                    sha,
                    summary,
                    blob.key,
                    blob.size,
                    lock_id,
                    key_ref=blob.ref,
                )
            blob.keep = True
        if len(body) <= self.cache.max_entry:
            self.cache.put(blob.key, bytes(body))
        return outcome

    def _check_write(
        self,
        conn: Connection,
        path: str,
        summary: statefile.StateSummary,
        sha: str,
        lock_id: str | None,
    ) -> tuple[WriteOutcome | None, Row[Any] | None, Row[Any] | None]:
        """Raise if the write is refused. Returns (outcome for an identical re-send or None,
        the path's write context, the held lock) for :meth:`_insert_version`."""
        lock = repo.get_lock(conn, path)
        _check_lock_for_write(path, lock, lock_id)
        ctx = repo.write_context(conn, path)
        if ctx is None or ctx.deleted_at is not None or ctx.seq is None:
            return None, ctx, lock  # first write (or after a delete) accepts any lineage
        if ctx.sha256 == sha:
            return WriteOutcome(created=False, seq=ctx.seq, serial=ctx.serial), ctx, lock
        if not ctx.override_next_write:
            _check_guards(path, ctx, summary)
        return None, ctx, lock

    def rollback(
        self, who: Principal, path: str, seq: int, lock_id: str | None = None
    ) -> WriteOutcome:
        """Write the content of version ``seq`` as a new version (history is never rewritten).

        Refused while someone else holds the lock; the lineage/serial guards do not apply
        (going back is the point), but the lock does.
        """
        self._authorize(who, Action.ROLLBACK, path)
        view, row = self._version_row(path, seq)
        body = self._load(path, row)
        summary = statefile.parse_state(body)
        self._check_client_encryption(path, summary)
        with self._staged_blob(path, body) as blob:
            with self._write_tx() as conn:
                held = repo.get_lock(conn, path)
                if held is not None and held.lock_id != lock_id:
                    raise Locked(
                        f"{path} is locked by {held.who or 'unknown'}; rollback refused",
                        bytes(held.info),
                    )
                ctx = repo.write_context(conn, path)
                live = ctx is not None and ctx.deleted_at is None and ctx.seq is not None
                if live and ctx.sha256 == view.sha256:
                    return WriteOutcome(False, ctx.seq, ctx.serial)
                outcome = self._insert_version(
                    conn,
                    who,
                    path,
                    ctx,
                    held,
                    body,
                    view.md5,
                    view.sha256,
                    summary,
                    blob.key,
                    blob.size,
                    lock_id,
                    key_ref=blob.ref,
                    kind="rollback",
                    source_seq=seq,
                )
                self._record(conn, who, "rollback", path, f"to seq={seq} as seq={outcome.seq}")
            blob.keep = True
        return outcome


def _outputs_view(path: str, body: bytes, row: Row[Any], sensitive: bool) -> StoredState:
    """The outputs-only rendering of a stored state (new bytes, so a new Content-MD5)."""
    if row.client_encrypted:
        raise Forbidden(
            f"{path} is encrypted by its client: outputs-only reads need the read action"
        )
    try:
        doc = json.loads(body)
        view = outputs_only(doc, include_sensitive=sensitive)
    except ValueError:
        raise Forbidden(f"{path} cannot be reduced to its outputs; that needs read") from None
    out = (json.dumps(view, indent=2) + "\n").encode()
    return StoredState(out, hashlib.md5(out, usedforsecurity=False).digest(), row.seq, row.serial)


def _check_lock_for_write(path: str, lock: Row[Any] | None, lock_id: str | None) -> None:
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


def _check_guards(path: str, ctx: Row[Any], summary: statefile.StateSummary) -> None:
    if summary.lineage != ctx.lineage:
        raise Conflict(
            f"lineage mismatch: {path} holds lineage {ctx.lineage}, the write has "
            f"{summary.lineage}; refusing to overwrite a different state"
        )
    if summary.serial < ctx.serial:
        raise Conflict(
            f"stale write: serial {summary.serial} is lower than the stored serial "
            f"{ctx.serial} of {path}"
        )
    if summary.serial == ctx.serial:
        raise Conflict(
            f"serial {summary.serial} of {path} already stored with different content; "
            "a changed state needs a higher serial"
        )
