"""Looking at states: the listing, a path's history, one version, and a diff of two."""

from __future__ import annotations

import json
from typing import Any

from stateward.domain import statefile
from stateward.domain.actions import Action
from stateward.domain.errors import NotFound
from stateward.domain.globs import glob_match
from stateward.domain.principal import Principal
from stateward.service.deps import Operations
from stateward.service.versions import version_view
from stateward.service.views import StateListing, VersionView
from stateward.storage import states_repo

MAX_HISTORY = 1000


class HistoryOps(Operations):
    def list_states(
        self,
        who: Principal,
        prefix: str = "",
        include_deleted: bool = False,
        readable: bool = False,
    ) -> list[StateListing]:
        """The paths ``who`` may see (``read-outputs``; with ``readable``, only those it may
        ``read`` whole): listings are filtered, not refused, so unseen paths stay unseen."""
        self.authz.mark(who, Action.READ_OUTPUTS, None)
        need = Action.READ if readable else Action.READ_OUTPUTS
        now = self.clock()
        with self.uow.read() as conn:
            rows = states_repo.list_states(conn, include_deleted)
        out = []
        for r in rows:
            if not self.authz.decide(who, need, r.path).allowed:
                continue
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
                    protected=self.versions.is_protected(r.path, r.protected),
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
        path = self.authz.authorize(who, Action.HISTORY, path)
        limit = max(1, min(limit, MAX_HISTORY))
        with self.uow.read() as conn:
            state = states_repo.get_state(conn, path)
            if state is None:
                raise NotFound(f"no state at {path}")
            rows = states_repo.list_versions(conn, path, limit, before)
        current = state.current_seq if state.deleted_at is None else None
        return [version_view(r, current) for r in rows]

    def get_version(self, who: Principal, path: str, seq: int) -> VersionView:
        """A version's metadata (needs ``history``)."""
        path = self.authz.authorize(who, Action.HISTORY, path)
        view, _version = self.versions.get(path, seq)
        return view

    def get_version_body(self, who: Principal, path: str, seq: int) -> tuple[VersionView, bytes]:
        """A version's metadata and content (needs ``read``: it is the whole state)."""
        path = self.authz.authorize(who, Action.READ, path)
        view, version = self.versions.get(path, seq)
        return view, self.versions.load(path, version)

    def diff(self, who: Principal, path: str, from_seq: int, to_seq: int) -> dict[str, Any]:
        """Resources and outputs changed between two versions (never a sensitive value)."""
        path = self.authz.authorize(who, Action.HISTORY, path)
        a = self.versions.load(path, self.versions.get(path, from_seq)[1])
        b = self.versions.load(path, self.versions.get(path, to_seq)[1])
        result = statefile.diff_states(json.loads(a), json.loads(b))
        result.update(path=path, from_seq=from_seq, to_seq=to_seq)
        return result

    def current_seq(self, path: str) -> int | None:
        """The current version of a live path (internal: callers authorized already)."""
        with self.uow.read() as conn:
            version = states_repo.current_version(conn, path)
        return None if version is None else version.seq

    def state_counts(self) -> dict[str, int]:
        """Active and soft-deleted paths (the ``stateward_states`` gauge); internal."""
        with self.uow.read() as conn:
            return states_repo.count_by_status(conn)
