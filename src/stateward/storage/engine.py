"""Engine creation. SQLite runs in WAL mode with every transaction ``BEGIN IMMEDIATE``.

``BEGIN IMMEDIATE`` takes SQLite's write lock at the start of a transaction, so the check and
the change that follows it (lock compare-and-set, the write guards) can never interleave with
another writer: the read-then-write inside one transaction is atomic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, insert, select

from stateward.storage.schema import SCHEMA_VERSION, metadata, schema_info

#: Execution option marking a connection whose transactions only read.
READ_ONLY = "stateward_read_only"


def sqlite_engine(db_path: Path) -> Engine:
    """Open (creating if needed) the embedded SQLite database at ``db_path``."""
    engine = create_engine(
        f"sqlite:///{db_path}",
        connect_args={"timeout": 30, "check_same_thread": False},
        pool_size=8,
        max_overflow=8,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Reads take a deferred transaction so they never queue behind writers (WAL).
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def init_schema(engine: Engine) -> None:
    """Create missing tables and record the schema version (refusing a newer schema)."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        row = conn.execute(
            select(schema_info.c.value).where(schema_info.c.key == "schema_version")
        ).first()
        if row is None:
            conn.execute(insert(schema_info).values(key="schema_version", value=SCHEMA_VERSION))
        elif row[0] != SCHEMA_VERSION:
            raise RuntimeError(
                f"metadata schema version {row[0]} is not supported by this stateward "
                f"(expects {SCHEMA_VERSION})"
            )
