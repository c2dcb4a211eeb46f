"""The checks a state write must pass: the lock it carries, and the lineage/serial guards.

Pure functions over the values the service read in the write's transaction, so every refusal
can be tested without a store. Messages name paths, serials, lineages, lock IDs and holders
only (Terraform prints them; they never hold state content).
"""

from __future__ import annotations

from typing import Protocol

from stateward.domain.errors import Conflict
from stateward.domain.statefile import StateSummary


class HeldLock(Protocol):
    @property
    def lock_id(self) -> str: ...
    @property
    def who(self) -> str: ...


class StoredIdentity(Protocol):
    """The current version's identity (a path with a version)."""

    @property
    def lineage(self) -> str | None: ...
    @property
    def serial(self) -> int | None: ...


def check_lock_for_write(path: str, lock: HeldLock | None, lock_id: str | None) -> None:
    """A write must carry the ID of the lock held on its path, and no ID when none is held."""
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


def check_lineage_serial(path: str, current: StoredIdentity, summary: StateSummary) -> None:
    """The same lineage, and a higher serial than the stored one (an identical re-send was
    accepted before this is asked)."""
    stored = current.serial if current.serial is not None else -1
    if summary.lineage != current.lineage:
        raise Conflict(
            f"lineage mismatch: {path} holds lineage {current.lineage}, the write has "
            f"{summary.lineage}; refusing to overwrite a different state"
        )
    if summary.serial < stored:
        raise Conflict(
            f"stale write: serial {summary.serial} is lower than the stored serial "
            f"{stored} of {path}"
        )
    if summary.serial == stored:
        raise Conflict(
            f"serial {summary.serial} of {path} already stored with different content; "
            "a changed state needs a higher serial"
        )
