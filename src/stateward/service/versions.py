"""Versions and their blobs, as every operation that reads or writes one needs them: loading a
version's verified body, staging a new blob before the transaction that points at it, inserting
the next version, and the policy checks a stored state must pass.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from stateward.common.types import Body
from stateward.config import Settings
from stateward.crypto.barrier import Barrier, BlobCorrupt, KeyRef
from stateward.crypto.providers.base import KeyDenied, KeyInvalid, KeyUnavailable
from stateward.domain import statefile
from stateward.domain.errors import Forbidden, NotFound, Unavailable
from stateward.domain.globs import glob_match
from stateward.domain.principal import Principal
from stateward.service import context
from stateward.service.cache import BodyCache
from stateward.service.uow import UnitOfWork
from stateward.service.views import VersionView, WriteOutcome
from stateward.storage import events_repo, keys_repo, states_repo
from stateward.storage.errors import StoreUnavailable
from stateward.storage.records import LockRecord, VersionRecord, WriteContext
from stateward.storage.transactions import Connection

log = logging.getLogger("stateward.service")


@dataclass
class StagedBlob:
    key: str
    size: int = 0
    ref: KeyRef | None = None
    keep: bool = False


@dataclass(frozen=True, slots=True)
class NewVersion:
    """What :meth:`VersionStore.insert` stores besides the body's blob."""

    body: Body
    md5: str  # hex
    sha256: str
    summary: statefile.StateSummary
    blob: StagedBlob
    lock_id: str | None = None
    kind: str = "write"  # write | rollback | import
    source_seq: int | None = None
    created_at: float | None = None  # imports keep the source's time


class VersionStore:
    def __init__(
        self,
        settings: Settings,
        uow: UnitOfWork,
        barrier: Barrier,
        cache: BodyCache,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.uow = uow
        self.barrier = barrier
        self.cache = cache
        self.clock = clock

    # -- reading ----------------------------------------------------------------------------

    def load(self, path: str, version: VersionRecord) -> bytes:
        """The verified body of a version (from the cache, or blob + checksum)."""
        cached = self.cache.get(version.blob_key)
        if cached is not None:
            return cached
        try:
            with self.key_errors(path):
                body = self.barrier.load(path, version.blob_key)
        except FileNotFoundError as exc:
            raise Unavailable(f"stored blob for {path} version {version.seq} is missing") from exc
        except BlobCorrupt as exc:
            log.error("blob of %s version %s fails: %s", path, version.seq, exc)
            raise Unavailable(
                f"stored blob for {path} version {version.seq} is unreadable ({exc})"
            ) from exc
        if hashlib.sha256(body).hexdigest() != version.sha256:
            raise Unavailable(f"stored blob for {path} version {version.seq} fails its checksum")
        self.cache.put(version.blob_key, body)
        return body

    def get(self, path: str, seq: int) -> tuple[VersionView, VersionRecord]:
        """A version of ``path`` (NotFound if there is none)."""
        with self.uow.read() as conn:
            state = states_repo.get_state(conn, path)
            version = states_repo.get_version(conn, path, seq)
        if state is None or version is None:
            raise NotFound(f"{path} has no version {seq}")
        current = state.current_seq if state.deleted_at is None else None
        return version_view(version, current), version

    @contextmanager
    def key_errors(self, path: str) -> Iterator[None]:
        """Key provider and blob store failures as service errors: nothing is written,
        nothing returned. KeyInvalid (a wrapped key that does not unwrap) is tampering or a
        wrong key: logged as an error and refused like a corrupt blob, never retried into a
        plaintext fallback."""
        try:
            with store_errors():
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

    # -- writing ----------------------------------------------------------------------------

    @contextmanager
    def staged(self, path: str, body: Body) -> Iterator[StagedBlob]:
        """Store the blob *before* the transaction that will point at it, and delete it again
        unless the caller marks it kept after the commit."""
        blob = StagedBlob(uuid.uuid4().hex)
        with self.key_errors(path):
            sealed = self.barrier.store(path, blob.key, body)
        blob.size, blob.ref = len(sealed.data), sealed.key
        try:
            yield blob
        finally:
            if not blob.keep:
                with store_errors():
                    self.barrier.blobs.delete(blob.key)

    def insert(
        self,
        conn: Connection,
        who: Principal,
        path: str,
        ctx: WriteContext | None,
        lock: LockRecord | None,
        new: NewVersion,
    ) -> WriteOutcome:
        """Insert the next version of ``path``; ``ctx`` is its write context read in this
        transaction."""
        now = self.clock()
        seq = 1 if ctx is None else int(ctx.next_seq)
        summary = new.summary
        context.note(
            version=seq,
            serial=summary.serial,
            lock_id=new.lock_id,
            resources=summary.resource_count,
            prev_resources=None if ctx is None or ctx.seq is None else ctx.resource_count,
        )
        client_version = lock.client_version if lock is not None else _ua_version(who.user_agent)
        if ctx is None:
            states_repo.insert_state(conn, path, now, current_seq=seq)
        states_repo.insert_version(
            conn,
            path=path,
            seq=seq,
            serial=summary.serial,
            lineage=summary.lineage,
            size=len(new.body),
            stored_size=new.blob.size,
            md5=new.md5,
            sha256=new.sha256,
            blob_key=new.blob.key,
            author=who.name,
            created_at=now if new.created_at is None else new.created_at,
            client_version=client_version,
            terraform_version=summary.terraform_version,
            lock_id=new.lock_id,
            resource_count=summary.resource_count,
            output_count=summary.output_count,
            client_encrypted=summary.client_encrypted,
            kind=new.kind,
            source_seq=new.source_seq,
        )
        if new.blob.ref is not None:
            keys_repo.insert_ref(conn, new.blob.key, path, new.blob.ref)
        if ctx is not None:
            if ctx.override_next_write:
                events_repo.record_event(
                    conn, now, who.name, "override-consumed", path, f"seq={seq}"
                )
            if ctx.deleted_at is not None:
                events_repo.record_event(conn, now, who.name, "recreate", path, f"seq={seq}")
            states_repo.advance_state(conn, path, seq, now)
        return WriteOutcome(created=True, seq=seq, serial=summary.serial)

    def remember(self, blob_key: str, body: Body) -> None:
        """Cache a just-written body (the GET after every Terraform write reads it)."""
        if len(body) <= self.cache.max_entry:
            self.cache.put(blob_key, bytes(body))

    def check_client_encryption(self, path: str, summary: statefile.StateSummary) -> None:
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

    def is_protected(self, path: str, flag: bool) -> bool:
        """The path's own flag, or a configured ``protected_paths`` glob."""
        return bool(flag) or any(glob_match(g, path) for g in self.settings.protected_paths)

    def delete_blobs(self, keys: list[str]) -> None:
        """After the commit that removed their versions."""
        with store_errors():
            for key in keys:
                self.cache.discard(key)
                self.barrier.blobs.delete(key)


@contextmanager
def store_errors() -> Iterator[None]:
    """A blob store that cannot be used as the service's Unavailable (503, with its retry)."""
    try:
        yield
    except StoreUnavailable as exc:
        raise Unavailable(str(exc), retry=exc.retry) from exc


def _ua_version(user_agent: str) -> str:
    for token in user_agent.split():
        name, _, ver = token.partition("/")
        if name.lower() in ("terraform", "opentofu", "tofu") and ver:
            return ver[:64]
    return ""


def version_view(r: VersionRecord, current: int | None) -> VersionView:
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
        secrets=r.secrets,
    )
