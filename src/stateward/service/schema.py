"""The metadata store's schema revision, for ``stateward db status|upgrade``.

Both need only the store's engine, not the whole service (no keys, no blob store): they work
on a store that the service could not open yet, such as one behind a pending upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from stateward.config import Settings
from stateward.domain.errors import Unavailable
from stateward.service.factory import metadata_engine
from stateward.storage.engine import (
    MetadataStoreError,
    SchemaUpgrade,
    known_revisions,
    schema_status,
    upgrade_schema,
)
from stateward.storage.transactions import Engine

__all__ = ["SchemaState", "SchemaUpgrade", "status", "upgrade"]


@dataclass(frozen=True, slots=True)
class SchemaState:
    store: str
    current: str | None  # None: an empty store
    head: str
    state: str  # empty | pending | current | newer
    pending: list[str]


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    engine = metadata_engine(settings)
    try:
        yield engine
    except MetadataStoreError as exc:
        raise Unavailable(str(exc), retry=False) from exc
    finally:
        engine.dispose()


def status(settings: Settings) -> SchemaState:
    """Where the store's schema stands against this build's head. Changes nothing, and
    creates no database just to look."""
    known = known_revisions()
    head = known[-1]
    if settings.database_url is None and not settings.db_path.exists():
        current: str | None = None
    else:
        with _engine(settings) as engine:
            current, head = schema_status(engine)
    if current is None:
        state, pending = "empty", known
    elif current in known:
        pending = known[known.index(current) + 1 :]
        state = "pending" if pending else "current"
    else:
        state, pending = "newer", []
    return SchemaState(settings.database_display(), current, head, state, pending)


def upgrade(settings: Settings) -> SchemaUpgrade:
    """Upgrade to this build's head, in one transaction (whole or not at all)."""
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _engine(settings) as engine:
        return upgrade_schema(engine)
