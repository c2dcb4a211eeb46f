"""Key management: status, rotation and rewrap of the data keys protecting stored blobs.

Rotation starts using a new KEK version for new data keys; ``rewrap`` then moves every stored
data key onto the current version of the provider that now governs its path, so old KEK
versions become unreferenced and can be retired. A rewrap changes only a blob's key header
(the ciphertext stays), except when a path moved to a *different* provider or its blob is an
unencrypted blob of an earlier release: then the blob is re-encrypted under a fresh data key.
The blob is replaced atomically under the same key and its key reference updated afterwards,
so an interrupted rewrap just resumes: the work list is computed from the references.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stateward.crypto.barrier import FORMAT_SEALED, BlobCorrupt, KeyRef, parse_header, rewrap_blob
from stateward.crypto.keyring import context_for
from stateward.crypto.providers.local import KeyfileProvider
from stateward.domain.actions import Action
from stateward.domain.errors import BadRequest, Conflict, NotFound, Unavailable
from stateward.domain.principal import Principal
from stateward.service.deps import Deps, Operations
from stateward.storage import keys_repo, states_repo
from stateward.storage.leases import Lease


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    name: str
    kind: str
    current_version: str
    #: key version -> number of stored blobs whose data key it wraps
    references: dict[str, int]
    #: versions the provider still holds (key files only); unreferenced old ones may be retired
    versions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "current_version": self.current_version,
            "references": self.references,
            "versions": self.versions,
        }


@dataclass(frozen=True, slots=True)
class KeyStatus:
    providers: list[ProviderStatus]
    #: blobs stored unencrypted by an earlier release (``keys rewrap`` encrypts them)
    unencrypted: int
    #: blobs whose key is not the current version of the provider governing their path
    stale: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "providers": [p.to_dict() for p in self.providers],
            "unencrypted": self.unencrypted,
            "stale": self.stale,
        }


Progress = Callable[[int, int], None]


class KeyOps(Operations):
    def __init__(self, deps: Deps, job_lease: Callable[[str], Lease]) -> None:
        super().__init__(deps)
        self.job_lease = job_lease

    def key_status(self, who: Principal) -> KeyStatus:
        self.authz.authorize_store(who, Action.ADMIN)
        with self.uow.read() as conn:
            refs = keys_repo.reference_counts(conn)
            total = states_repo.count_versions(conn)
        keyring = self.barrier.keys
        out = []
        for name in sorted(set(keyring.providers) | {p for p, _ in refs}):
            provider = keyring.providers.get(name)
            held = provider.versions() if isinstance(provider, KeyfileProvider) else []
            out.append(
                ProviderStatus(
                    name=name,
                    kind=provider.kind if provider is not None else "(not configured)",
                    current_version=provider.current_version() if provider is not None else "",
                    references={v: n for (p, v), n in sorted(refs.items()) if p == name},
                    versions=held,
                )
            )
        return KeyStatus(out, total - sum(refs.values()), len(self._rewrap_work()))

    def rotate_key(self, who: Principal, provider_name: str) -> str:
        """Start a new KEK version for new data keys (key files; KMS keys rotate in the KMS)."""
        self.authz.authorize_store(who, Action.ADMIN)
        provider = self.barrier.keys.providers.get(provider_name)
        if provider is None:
            raise NotFound(f"no key provider named {provider_name}")
        if not isinstance(provider, KeyfileProvider):
            raise BadRequest(
                f"key provider {provider_name} ({provider.kind}) rotates in its key service or "
                "configuration; run 'stateward keys rewrap' after rotating it there"
            )
        version = provider.rotate()
        self.barrier.keys.clear()
        with self.uow.write() as conn:
            self.event(conn, who, "key-rotate", None, f"provider={provider_name} v={version}")
        return version

    def retire_key(self, who: Principal, provider_name: str, version: str) -> None:
        """Remove an old key-file version once no stored data key references it."""
        self.authz.authorize_store(who, Action.ADMIN)
        provider = self.barrier.keys.providers.get(provider_name)
        if not isinstance(provider, KeyfileProvider):
            raise BadRequest(f"{provider_name} is not a key-file provider")
        with self.uow.read() as conn:
            used = keys_repo.version_in_use(conn, provider_name, version)
        if used:
            raise Conflict(f"key version {version} still protects stored data; rewrap first")
        provider.retire(version)
        with self.uow.write() as conn:
            self.event(conn, who, "key-retire", None, f"provider={provider_name} v={version}")

    def _rewrap_work(self) -> list[tuple[str, str, int]]:
        """(blob key, path, seq) of every blob not under its path's current key."""
        keyring = self.barrier.keys
        with self.uow.read() as conn:
            rows = keys_repo.all_refs(conn)
        work = []
        for r in rows:
            target = keyring.provider_for(r.path)
            if r.provider != target.name or r.key_version != target.current_version():
                work.append((r.blob_key, r.path, r.seq))
        return work

    def rewrap(self, who: Principal, progress: Progress | None = None) -> int:
        """Move every stored data key onto its path's current KEK; returns blobs changed."""
        self.authz.authorize_store(who, Action.ADMIN)
        # One rewrap at a time across the CLI and every replica: two would rewrite each blob
        # twice (correct, as each rewrite re-checks the version, but twice the KMS calls).
        lease = self.job_lease("key-rewrap")
        if not lease.held():
            raise Conflict(
                f"another key rewrap is running ({lease.holder_now() or 'just finished'}); "
                "retry when it ends"
            )
        try:
            return self._rewrap_all(who, lease, progress)
        finally:
            lease.release()

    def _rewrap_all(self, who: Principal, lease: Lease, progress: Progress | None) -> int:
        work = self._rewrap_work()
        done = 0
        for blob_key, path, seq in work:
            if not lease.held():
                raise Unavailable("key rewrap stopped: lost its lease (store unreachable?)")
            with self.versions.key_errors(path):
                ref = self._rewrap_one(blob_key, path, seq)
            with self.uow.write() as conn:
                keys_repo.delete_ref(conn, blob_key)
                if states_repo.blob_referenced(conn, blob_key):  # not purged meanwhile
                    keys_repo.insert_ref(conn, blob_key, path, ref)
            self.versions.cache.discard(blob_key)
            done += 1
            if progress is not None:
                progress(done, len(work))
        with self.uow.write() as conn:
            self.event(conn, who, "key-rewrap", None, f"rewrapped {done} blobs")
        return done

    def _rewrap_one(self, blob_key: str, path: str, seq: int) -> KeyRef:
        store = self.barrier.blobs
        try:
            blob = store.get(blob_key)
        except FileNotFoundError:
            raise Unavailable(f"stored blob for {path} version {seq} is missing") from None
        target = self.barrier.keys.provider_for(path)
        try:
            if len(blob) > 3 and blob[3] == FORMAT_SEALED:
                ref, wrapped, _ = parse_header(blob)
                if ref.provider == target.name:
                    new = target.rewrap(wrapped, context_for(path))
                    out = KeyRef(target.name, target.kind, new.key_id, new.key_version)
                    store.put(blob_key, rewrap_blob(blob, out, new.wrapped))
                    return out
            body = self.barrier.open(path, blob_key, blob)  # other provider or unencrypted
        except BlobCorrupt as exc:
            raise Unavailable(
                f"stored blob for {path} version {seq} is unreadable ({exc})"
            ) from exc
        dk = target.generate(context_for(path))
        sealed = self.barrier.seal_with(path, blob_key, body, target, dk.plaintext, dk.wrapped,
                                        dk.key_id, dk.key_version)  # fmt: skip
        store.put(blob_key, sealed.data)
        return sealed.key
