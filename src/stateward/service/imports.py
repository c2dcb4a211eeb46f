"""Importing history from elsewhere (an S3 backend's bucket, local state files).

:meth:`ImportOps.import_state` writes a path's source versions, oldest first, as stateward
versions of kind ``import``: every check of a write applies (admin on the path, the lock, the
size limit, a valid state, the client-encryption policy, encryption at rest, the audit record in
the same transaction) except the lineage/serial guards -- an imported history may go backwards,
as ``state push -force`` can.

Resumable without bookkeeping (:func:`resume_point`): a path that already has ``n`` versions
whose SHA-256s equal the first ``n`` (distinct) source versions continues with the next one.
Otherwise -- retention removed some of the path's versions (imported versions keep their old
source times, so ``keep_days`` removes them; ``keep_versions`` removes the oldest) -- the
path's versions must be a subsequence of the source's ending at a source version equal to the
path's current one: the import continues after the last such source version. A path whose
history differs is refused, unless its current version already equals the source's current one
(nothing would change). Consecutive identical source versions count once (an identical write
creates nothing). Each version commits on its own, so an interrupted import leaves a prefix of
the source history that the next run continues.

The source version's own time (S3 ``LastModified``, a file's mtime) becomes the version's
``created_at``: history shows when a state was really written, and retention by age treats
imported versions by their real age (the current version is always kept).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from stateward.common.text import source_ref
from stateward.domain import statefile
from stateward.domain.actions import Action
from stateward.domain.audit_record import Outcome
from stateward.domain.errors import Conflict, Locked, ServiceError, TooLarge
from stateward.domain.principal import Principal
from stateward.service import context
from stateward.service.deps import Operations
from stateward.service.versions import NewVersion, StagedBlob
from stateward.storage import locks_repo, states_repo
from stateward.storage.transactions import Connection

KIND = "import"


@dataclass(frozen=True, slots=True)
class ImportSource:
    """One version of a state at the source, handed over oldest first."""

    #: Where it came from, e.g. ``s3://bucket/key?versionId=…`` or ``file:///…`` (never
    #: content); recorded in the audit trail and the path's events.
    ref: str
    body: bytes = field(repr=False)
    #: The source's time of the version (unix seconds), kept as the version's time.
    created_at: float | None = None


@dataclass(frozen=True, slots=True)
class ImportResult:
    path: str
    #: Source versions (after collapsing consecutive duplicates) already in stateward, or up
    #: to the one the import continued after (some of them may have gone by retention).
    present: int
    #: Versions created, by seq (empty in a dry run).
    imported: tuple[int, ...]
    #: Versions that were imported, or in a dry run would be.
    pending: int
    #: Consecutive identical source versions counted once.
    duplicates: int = 0
    #: The path's history differs from the source's, but its current version equals the
    #: source's current one: nothing to do.
    current_matches: bool = False
    dry_run: bool = False

    @property
    def up_to_date(self) -> bool:
        return self.pending == 0




class ImportOps(Operations):
    def import_state(
        self,
        who: Principal,
        path: str,
        sources: Iterable[ImportSource],
        *,
        dry_run: bool = False,
    ) -> ImportResult:
        """Import ``sources`` (oldest first) as the history of ``path``; needs ``admin``.

        ``sources`` is consumed lazily (one body in memory at a time). When the path's
        history continues the source's after a gap (retention), the source is read a second
        time to import the versions after it: pass an iterable that starts over at each
        ``iter()`` (a list; a one-shot iterator's remaining versions are held in memory).
        Raises Forbidden, Locked (the path's lock is held), Conflict (a different history, or
        the path or the source changed during the import), TooLarge or BadRequest (a version
        is refused: the versions before it stay, and a later run is refused at the same
        version until its cause is fixed). A refusal is recorded in the audit trail for the
        path; each imported version is recorded with its source.
        """
        if context.current() is not None:
            self.authz.mark(who, Action.ADMIN, None)  # the command as a whole (recorded by it)
        with self.trail.child(who, "") as ctx:
            try:
                return self._import(who, path, sources, dry_run)
            except ServiceError as exc:
                if ctx is not None and not ctx.recorded:
                    outcome: Outcome = "denied" if exc.denied else "failed"
                    self.trail.record_outcome(ctx, outcome, exc.status, str(exc))
                raise

    def _import(
        self,
        who: Principal,
        path: str,
        sources: Iterable[ImportSource],
        dry_run: bool,
    ) -> ImportResult:
        path = self.authz.authorize(who, Action.ADMIN, path)
        with self.uow.read() as conn:
            _refuse_if_locked(conn, path)
            existing = states_repo.version_digests(conn, path)
        n = len(existing)
        first_pass = iter(sources)
        one_shot = first_pass is sources
        seen: list[str] = []  # the distinct source versions' digests, oldest first
        imported: list[int] = []
        pending = duplicates = 0
        prefix = True  # so far, the source's versions are the path's, from the first one
        matched = 0  # how many of the path's versions are a subsequence of ``seen``
        tail: list[tuple[str, ImportSource]] = []  # one-shot: after the last resume point
        for src in first_pass:
            sha = hashlib.sha256(src.body).hexdigest()
            if seen and sha == seen[-1]:
                duplicates += 1
                continue
            index = len(seen)
            seen.append(sha)
            if matched < n and existing[matched] == sha:
                matched += 1
            if prefix and index >= n:  # the path has the first n: import the rest as read
                summary = self._check_import(path, src.body)
                pending += 1
                if not dry_run:
                    expected = seen[-2] if index else None
                    imported.append(self._import_one(who, path, src, sha, summary, expected))
                continue
            if prefix and existing[index] != sha:
                prefix = False
            if not prefix and one_shot and matched == n:
                if sha == existing[-1]:
                    tail.clear()  # a later resume point
                else:
                    tail.append((sha, src))
        if prefix:  # the path has every source version (and maybe versions written on top)
            present = min(n, len(seen))
            return ImportResult(path, present, tuple(imported), pending, duplicates, False, dry_run)
        k = resume_point(existing, seen)
        if k is None:
            if seen[-1] == existing[-1]:
                return ImportResult(path, 0, (), 0, duplicates, True, dry_run)
            raise Conflict(
                f"{path} already has a different history ({n} version(s) that are not "
                "versions of the source, in its order, up to one equal to its current "
                "version); nothing imported"
            )
        rest = iter(tail) if one_shot else _after(path, sources, seen, k)
        expected = seen[k]
        for sha, src in rest:
            summary = self._check_import(path, src.body)
            pending += 1
            if not dry_run:
                imported.append(self._import_one(who, path, src, sha, summary, expected))
            expected = sha
        return ImportResult(path, k + 1, tuple(imported), pending, duplicates, False, dry_run)

    def _check_import(self, path: str, body: bytes) -> statefile.StateSummary:
        """The checks of a write that need no transaction (size, a valid state, policy)."""
        limit = self.settings.max_body_bytes
        if len(body) > limit:
            raise TooLarge(f"a version of {path} is larger than the limit of {limit} bytes")
        summary = statefile.parse_state(body)
        self.versions.check_client_encryption(path, summary)
        return summary

    def _import_one(
        self,
        who: Principal,
        path: str,
        src: ImportSource,
        sha: str,
        summary: statefile.StateSummary,
        expected: str | None,
    ) -> int:
        """Write one version on top of ``expected`` (the digest the path's current version
        must have: None for a path without versions), with its audit record and event."""
        ref = source_ref(src.ref)
        md5 = hashlib.md5(src.body, usedforsecurity=False).hexdigest()
        with self.versions.staged(path, src.body) as blob:
            with self.trail.child(who, ref):
                self.authz.authorize(who, Action.ADMIN, path)  # marks this version's record
                context.note(bytes_in=len(src.body))
                seq = self._insert_import(who, path, src, sha, md5, summary, expected, blob, ref)
            blob.keep = True
        self.versions.remember(blob.key, src.body)
        return seq

    def _insert_import(
        self,
        who: Principal,
        path: str,
        src: ImportSource,
        sha: str,
        md5: str,
        summary: statefile.StateSummary,
        expected: str | None,
        blob: StagedBlob,
        ref: str,
    ) -> int:
        with self.uow.write() as conn:
            _refuse_if_locked(conn, path)
            ctx = states_repo.write_context(conn, path)
            current = None if ctx is None or ctx.seq is None else ctx.sha256
            if current != expected:
                raise Conflict(f"{path} changed while it was being imported; run the import again")
            created = None if src.created_at is None else float(src.created_at)
            new = NewVersion(src.body, md5, sha, summary, blob, kind=KIND, created_at=created)
            outcome = self.versions.insert(conn, who, path, ctx, None, new)
            self.event(conn, who, KIND, path, f"seq={outcome.seq} from {ref}")
        return outcome.seq


def resume_point(existing: list[str], source: list[str]) -> int | None:
    """Where an import continues when the path's versions ``existing`` (digests, by seq) are
    not the source's first ones: the last ``k`` with ``source[k] == existing[-1]`` such that
    ``existing`` is a subsequence of ``source[:k + 1]`` (retention removes versions, never
    reorders them); None when there is none (a different history). ``source`` holds distinct
    consecutive digests. The import goes on with ``source[k + 1:]``."""
    if not existing:
        return -1
    matched = 0
    for index, sha in enumerate(source):
        if sha == existing[matched]:
            matched += 1
            if matched == len(existing):
                last = existing[-1]
                return max(k for k in range(index, len(source)) if source[k] == last)
    return None


def _after(
    path: str, sources: Iterable[ImportSource], seen: list[str], k: int
) -> Iterator[tuple[str, ImportSource]]:
    """The source read again: its distinct versions after ``seen[k]``, with their digests;
    Conflict if it is not what the first pass read."""
    changed = Conflict(f"the source of {path} changed during the import; run it again")
    index = -1
    previous: str | None = None
    for src in sources:
        sha = hashlib.sha256(src.body).hexdigest()
        if sha == previous:
            continue
        previous = sha
        index += 1
        if index >= len(seen) or seen[index] != sha:
            raise changed
        if index > k:
            yield sha, src
    if index != len(seen) - 1:
        raise changed


def _refuse_if_locked(conn: Connection, path: str) -> None:
    held = locks_repo.get(conn, path)
    if held is not None:
        raise Locked(
            f"{path} is locked by {held.who or 'unknown'} (lock ID {held.lock_id}); import refused",
            bytes(held.info),
        )
