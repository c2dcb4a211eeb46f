"""Engine creation: the embedded SQLite database, or PostgreSQL.

Both stores give the service the same guarantee: **write transactions run one at a time**, and
each one sees everything committed before it began. The service relies on it for every
check-then-act (lock compare-and-set, the write guards, ``seq`` and ``next_seq``) and for the
audit hash chain, whose head is read and extended inside the writing transaction.

- SQLite runs in WAL mode with every write transaction ``BEGIN IMMEDIATE``, which takes the
  database's write lock at the start of the transaction.
- PostgreSQL (READ COMMITTED) starts every write transaction by taking one transaction-level
  advisory lock, :data:`WRITE_LOCK_KEY` (``pg_advisory_xact_lock``), released by the commit or
  rollback. Every replica sharing the database queues on the same lock, so writers are
  serialized across processes exactly as SQLite serializes them; because every statement of a
  READ COMMITTED transaction takes a fresh snapshot, the statements after the lock see every
  write committed before it was granted. (REPEATABLE READ would be wrong here: its snapshot is
  taken by the first statement, the lock wait itself.) One global lock rather than per-path
  locks: nearly every write transaction also appends to the one audit chain, which needs a
  global order anyway.

Transactions marked :data:`READ_ONLY` never queue behind writers: a deferred ``BEGIN`` on
SQLite (WAL: a snapshot from the first read), ``REPEATABLE READ, READ ONLY`` on PostgreSQL (one
snapshot for the whole transaction, so a read of two tables sees one moment). Any other
transaction, including a plain ``engine.connect()`` that autobegins, is a write transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from stateward.storage.schema import SCHEMA_VERSION, metadata, schema_info

#: Execution option marking a connection whose transactions only read.
READ_ONLY = "stateward_read_only"

#: The PostgreSQL advisory lock every write transaction holds (``b"statewar"`` as a bigint).
#: Advisory locks are per database, so two stateward stores in one cluster never contend.
WRITE_LOCK_KEY = 0x7374_6174_6577_6172

#: How long a PostgreSQL write transaction waits for the write lock (SQLite: busy_timeout).
LOCK_TIMEOUT_MS = 30_000

#: The first statement of every PostgreSQL write transaction.
_PG_BEGIN_WRITE = f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})"


class MetadataStoreError(RuntimeError):
    """The metadata store cannot be opened (the message never holds a password)."""


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


def postgres_engine(url: str | URL) -> Engine:
    """An engine for the PostgreSQL database at ``url`` (``postgresql+psycopg://…``).

    Nothing is connected yet; :func:`init_schema` is the first use."""
    from psycopg import IsolationLevel  # only PostgreSQL stores pay for the import

    engine = create_engine(
        make_url(url),
        pool_size=8,
        max_overflow=8,
        # No pool_pre_ping: it costs a round trip on every transaction (a quarter of a read).
        # A connection found dead fails its request with 503 (Terraform retries), and the
        # pool then replaces every connection older than it, so a server restart or failover
        # costs one request per replica, not one per pooled connection.
        pool_recycle=1800,  # before idle timeouts of proxies and firewalls
        connect_args={
            "connect_timeout": 10,
            "application_name": "stateward",
            # Like SQLite's busy_timeout: a writer queued this long fails (503, retry later)
            # instead of waiting forever behind a stuck one.
            "options": f"-c lock_timeout={LOCK_TIMEOUT_MS}",
        },
    )

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # psycopg sends BEGIN itself, with the connection's isolation level and read-only
        # flag, right before the first statement: set them here (no round trip), then take
        # the write lock as that first statement of a write transaction.
        dbapi_conn = conn.connection.dbapi_connection
        if conn.get_execution_options().get(READ_ONLY, False):
            dbapi_conn.isolation_level = IsolationLevel.REPEATABLE_READ
            dbapi_conn.read_only = True
        else:
            # Explicit, whatever the database's default_transaction_isolation says: under
            # REPEATABLE READ the snapshot would predate the lock wait (lost updates).
            dbapi_conn.isolation_level = IsolationLevel.READ_COMMITTED
            dbapi_conn.read_only = False
            conn.exec_driver_sql(_PG_BEGIN_WRITE)

    return engine


def init_schema(engine: Engine) -> None:
    """Create missing tables and record the schema version (refusing a newer schema).

    Raises :class:`MetadataStoreError` when the store cannot be reached."""
    try:
        _init_schema(engine)
    except OperationalError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise MetadataStoreError(
            f"cannot open the metadata store {where}: {str(exc.orig).strip() or exc}"
        ) from None


def _init_schema(engine: Engine) -> None:
    # create_all runs in one write transaction (the engine's begin hook), so replicas that
    # start together create the tables once.
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
