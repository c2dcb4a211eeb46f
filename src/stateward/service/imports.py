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
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from stateward.domain import statefile
from stateward.domain.actions import Action
from stateward.domain.audit_record import Outcome
from stateward.domain.errors import Conflict, Locked, ServiceError, TooLarge
from stateward.domain.principal import Principal
from stateward.service import context as audit_context
from stateward.service.audit import AuditOps
from stateward.service.context import AuditContext
from stateward.service.writes import WriteOps
from stateward.storage import repo
from stateward.storage.schema import versions

KIND = "import"
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
REF_CHARS = 400


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


def source_ref(text: str) -> str:
    """``text`` as one printable line of bounded length (object keys may hold anything)."""
    line = _UNPRINTABLE.sub("?", text)
    return line if len(line) <= REF_CHARS else line[: REF_CHARS - 1] + "…"


class ImportOps(WriteOps, AuditOps):
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
        outer = audit_context.current()
        if outer is not None:
            self._mark(who, Action.ADMIN, None)  # the command as a whole (recorded by it)
        with self._sub_audit(outer, who, "") as ctx:
            try:
                return self._import(who, path, sources, dry_run, outer)
            except ServiceError as exc:
                if ctx is not None and not ctx.recorded:
                    outcome: Outcome = "denied" if exc.denied else "failed"
                    self.record_outcome(ctx, outcome, exc.status, str(exc))
                raise

    def _import(
        self,
        who: Principal,
        path: str,
        sources: Iterable[ImportSource],
        dry_run: bool,
        outer: AuditContext | None,
    ) -> ImportResult:
        self._authorize(who, Action.ADMIN, path)
        with self._read_tx() as conn:
            _refuse_if_locked(conn, path)
            existing = [
                str(sha)
                for sha in conn.execute(
                    select(versions.c.sha256)
                    .where(versions.c.path == path)
                    .order_by(versions.c.seq)
                ).scalars()
            ]
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
                    imported.append(self._import_one(who, path, src, sha, summary, expected, outer))
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
                imported.append(self._import_one(who, path, src, sha, summary, expected, outer))
            expected = sha
        return ImportResult(path, k + 1, tuple(imported), pending, duplicates, False, dry_run)

    def _check_import(self, path: str, body: bytes) -> statefile.StateSummary:
        """The checks of a write that need no transaction (size, a valid state, policy)."""
        limit = self.settings.max_body_bytes
        if len(body) > limit:
            raise TooLarge(f"a version of {path} is larger than the limit of {limit} bytes")
        summary = statefile.parse_state(body)
        self._check_client_encryption(path, summary)
        return summary

    def _import_one(
        self,
        who: Principal,
        path: str,
        src: ImportSource,
        sha: str,
        summary: statefile.StateSummary,
        expected: str | None,
        outer: AuditContext | None,
    ) -> int:
        """Write one version on top of ``expected`` (the digest the path's current version
        must have: None for a path without versions), with its audit record and event."""
        ref = source_ref(src.ref)
        md5 = hashlib.md5(src.body, usedforsecurity=False).hexdigest()
        with self._staged_blob(path, src.body) as blob:
            with self._sub_audit(outer, who, ref):
                self._authorize(who, Action.ADMIN, path)  # marks this version's record
                audit_context.note(bytes_in=len(src.body))
                with self._write_tx() as conn:
                    _refuse_if_locked(conn, path)
                    ctx = repo.write_context(conn, path)
                    current = None if ctx is None or ctx.seq is None else str(ctx.sha256)
                    if current != expected:
                        raise Conflict(
                            f"{path} changed while it was being imported; run the import again"
                        )
                    outcome = self._insert_version(
                        conn,
                        who,
                        path,
                        ctx,
                        None,
                        src.body,
                        md5,
                        sha,
                        summary,
                        blob.key,
                        blob.size,
                        None,
                        key_ref=blob.ref,
                        kind=KIND,
                        created_at=None if src.created_at is None else float(src.created_at),
                    )
                    self._record(conn, who, KIND, path, f"seq={outcome.seq} from {ref}")
            blob.keep = True
        if len(src.body) <= self.cache.max_entry:
            self.cache.put(blob.key, src.body)
        return outcome.seq

    @contextmanager
    def _sub_audit(
        self, outer: AuditContext | None, who: Principal, ref: str
    ) -> Iterator[AuditContext | None]:
        """A record of its own under the command's context (same request ID and source):
        one per path for a refusal, one per imported version naming its source."""
        if outer is None:
            yield None
            return
        operation = f"{outer.operation} {ref}" if ref else outer.operation
        with audit_context.begin(
            operation, outer.source, outer.user_agent, request_id=outer.request_id
        ) as ctx:
            ctx.who = outer.who or who
            yield ctx


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
    held: Any = repo.get_lock(conn, path)
    if held is not None:
        raise Locked(
            f"{path} is locked by {held.who or 'unknown'} (lock ID {held.lock_id}); import refused",
            bytes(held.info),
        )
