"""Reading and writing states: the protocol's GET and POST, and rollback."""

from __future__ import annotations

import hashlib
import hmac
import json

from stateward.common.types import Body
from stateward.domain import statefile
from stateward.domain.actions import Action
from stateward.domain.errors import BadRequest, Forbidden, Locked, TooLarge
from stateward.domain.guards import check_lineage_serial, check_lock_for_write
from stateward.domain.paths import StatePath
from stateward.domain.policy import ReadScope, outputs_only
from stateward.domain.principal import Principal
from stateward.service import context
from stateward.service.deps import Operations
from stateward.service.versions import NewVersion
from stateward.service.views import StoredState, WriteOutcome
from stateward.storage import locks_repo, states_repo
from stateward.storage.records import LockRecord, VersionRecord, WriteContext
from stateward.storage.transactions import Connection

#: Bodies at least this large get a read-only pre-check, so a refused or identical upload
#: never costs a blob write; small ones go straight to the (re-checking) write transaction.
PRECHECK_BYTES = 1024 * 1024


class WriteOps(Operations):
    def read(self, who: Principal, path: str) -> StoredState | None:
        """The current state at ``path``, or None if there is none (or it is soft-deleted).

        A principal with ``read`` gets the stored bytes. One with only ``read-outputs`` (or
        ``read-sensitive-outputs``) gets a valid state holding the outputs and no resources,
        which is all ``terraform_remote_state`` needs.
        """
        scope, path = self.authz.read_scope(who, path)
        with self.uow.read() as conn:
            version = states_repo.current_version(conn, path)
        if version is None:
            return None
        body = self.versions.load(path, version)
        if scope is ReadScope.FULL:
            state = StoredState(body, bytes.fromhex(version.md5), version.seq, version.serial)
        else:
            state = _outputs_view(path, body, version, scope is ReadScope.OUTPUTS_WITH_SENSITIVE)
        context.note(version=version.seq, serial=version.serial, bytes_out=len(state.body))
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
        path = self.authz.authorize(who, Action.WRITE, path)
        limit = self.settings.max_body_bytes
        if len(body) > limit:
            raise TooLarge(f"state is larger than the limit of {limit} bytes")
        md5 = hashlib.md5(body, usedforsecurity=False).digest()
        if content_md5 is not None and not hmac.compare_digest(md5, content_md5):
            raise BadRequest("Content-MD5 does not match the body; the upload was corrupted")
        summary = statefile.parse_state(body)
        context.note(lock_id=lock_id, serial=summary.serial, resources=summary.resource_count)
        self.versions.check_client_encryption(path, summary)
        sha = hashlib.sha256(body).hexdigest()
        if len(body) >= PRECHECK_BYTES:
            with self.uow.read() as conn:
                same, _ctx, _lock = self._check(conn, path, summary, sha, lock_id)
            if same is not None:
                return same
        with self.versions.staged(path, body) as blob:
            with self.uow.write() as conn:
                same, ctx, lock = self._check(conn, path, summary, sha, lock_id)
                if same is not None:
                    return same
                new = NewVersion(body, md5.hex(), sha, summary, blob, lock_id)
                outcome = self.versions.insert(conn, who, path, ctx, lock, new)
            blob.keep = True
        self.versions.remember(blob.key, body)
        return outcome

    def _check(
        self,
        conn: Connection,
        path: StatePath,
        summary: statefile.StateSummary,
        sha: str,
        lock_id: str | None,
    ) -> tuple[WriteOutcome | None, WriteContext | None, LockRecord | None]:
        """Raise if the write is refused. Returns (the outcome of an identical re-send or
        None, the path's write context, the held lock) for the insert."""
        lock = locks_repo.get(conn, path)
        check_lock_for_write(path, lock, lock_id)
        ctx = states_repo.write_context(conn, path)
        if ctx is None or not ctx.live:
            return None, ctx, lock  # first write (or after a delete) accepts any lineage
        assert ctx.seq is not None and ctx.serial is not None
        if ctx.sha256 == sha:
            return WriteOutcome(created=False, seq=ctx.seq, serial=ctx.serial), ctx, lock
        if not ctx.override_next_write:
            check_lineage_serial(path, ctx, summary)
        return None, ctx, lock

    def rollback(
        self, who: Principal, path: str, seq: int, lock_id: str | None = None
    ) -> WriteOutcome:
        """Write the content of version ``seq`` as a new version (history is never rewritten).

        Refused while someone else holds the lock; the lineage/serial guards do not apply
        (going back is the point), but the lock does.
        """
        path = self.authz.authorize(who, Action.ROLLBACK, path)
        view, version = self.versions.get(path, seq)
        body = self.versions.load(path, version)
        summary = statefile.parse_state(body)
        self.versions.check_client_encryption(path, summary)
        with self.versions.staged(path, body) as blob:
            with self.uow.write() as conn:
                held = locks_repo.get(conn, path)
                if held is not None and held.lock_id != lock_id:
                    raise Locked(
                        f"{path} is locked by {held.who or 'unknown'}; rollback refused",
                        bytes(held.info),
                    )
                ctx = states_repo.write_context(conn, path)
                if ctx is not None and ctx.live and ctx.sha256 == view.sha256:
                    assert ctx.seq is not None and ctx.serial is not None
                    return WriteOutcome(False, ctx.seq, ctx.serial)
                new = NewVersion(body, view.md5, view.sha256, summary, blob, lock_id,
                                 kind="rollback", source_seq=seq)  # fmt: skip
                outcome = self.versions.insert(conn, who, path, ctx, held, new)
                self.event(conn, who, "rollback", path, f"to seq={seq} as seq={outcome.seq}")
            blob.keep = True
        return outcome


def _outputs_view(path: str, body: bytes, version: VersionRecord, sensitive: bool) -> StoredState:
    """The outputs-only rendering of a stored state (new bytes, so a new Content-MD5)."""
    if version.client_encrypted:
        raise Forbidden(
            f"{path} is encrypted by its client: outputs-only reads need the read action"
        )
    try:
        doc = json.loads(body)
        view = outputs_only(doc, include_sensitive=sensitive)
    except ValueError:
        raise Forbidden(f"{path} cannot be reduced to its outputs; that needs read") from None
    out = (json.dumps(view, indent=2) + "\n").encode()
    md5 = hashlib.md5(out, usedforsecurity=False).digest()
    return StoredState(out, md5, version.seq, version.serial)
