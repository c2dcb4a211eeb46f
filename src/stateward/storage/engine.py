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

import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from stateward.storage.schema import schema_info

log = logging.getLogger("stateward")

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
        cur.execute("PRAGMA busy_timeout=30000")
        _enable_wal(cur)
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Reads take a deferred transaction so they never queue behind writers (WAL).
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _enable_wal(cur: Any) -> None:
    """``journal_mode=WAL``. Switching a new database to WAL needs an exclusive lock, and
    SQLite may answer "database is locked" at once, without waiting, when several processes
    open the new file together (a server and a CLI command on a fresh data dir): retry for a
    few seconds. Once the file is in WAL mode the pragma is a no-op."""
    for attempt in range(50):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.1)


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


# -- schema migrations ---------------------------------------------------------------------
#
# The schema is built and upgraded by the Alembic migrations shipped in storage/migrations/
# (0001 is the schema of the last release before them). Every upgrade runs in ONE write
# transaction of the engine, so it takes the same lock as every other writer: the PostgreSQL
# advisory write lock, or SQLite's BEGIN IMMEDIATE. Replicas starting together against one
# database therefore queue: the first migrates and commits, the others then find the database
# at head and do nothing. PostgreSQL and SQLite both run DDL inside a transaction, so a failed
# upgrade leaves the database as it was.

#: Where the migration scripts are (inside the package: shipped in the wheel).
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

#: The schema_info version written by the release before migrations (its create_all schema is
#: revision 0001). Frozen: schema_info now holds the Alembic revision (see :func:`_migrate`).
LEGACY_SCHEMA_VERSION = "1"
LEGACY_REVISION = "0001"

#: The tables of revision 0001. A database of a release before migrations holds some or all
#: of them (that release added tables over time); 0001 creates the missing ones.
_LEGACY_TABLES = frozenset(
    {
        "states", "versions", "blob_keys", "locks", "events", "audit", "secret_scans",
        "secret_findings", "audit_cursors", "tokens", "schema_info", "alerts",
    }
)  # fmt: skip


@dataclass(frozen=True)
class SchemaUpgrade:
    """What :func:`upgrade_schema` did."""

    before: str | None  # the Alembic revision found (None: none recorded)
    after: str  # the head revision, where the database is now
    legacy: bool = False  # a pre-migration store (0001 created what it lacked)
    applied: tuple[str, ...] = field(default=())  # "0002 (leases …)", oldest first

    @property
    def changed(self) -> bool:
        return self.legacy or bool(self.applied)


def _alembic_config(conn: Connection | None = None) -> Config:
    """An Alembic configuration built in code (no alembic.ini): the scripts in the package,
    and the connection the migrations run on (env.py takes it from ``attributes``)."""
    config = Config()
    # set_main_option interpolates %(...)s: a path holding "%" must be escaped
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def head_revision(scripts: ScriptDirectory | None = None) -> str:
    """The newest revision this build knows."""
    head = (scripts or _scripts()).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise MetadataStoreError(f"no schema migrations found in {MIGRATIONS_DIR}")
    return head


def known_revisions() -> list[str]:
    """Every revision this build knows, oldest first."""
    return [s.revision for s in reversed(list(_scripts().walk_revisions()))]


def _recorded_revision(conn: Connection) -> str | None:
    """The revision in ``alembic_version`` (None: no table or no row)."""
    return MigrationContext.configure(conn).get_current_revision()


def _legacy_version(conn: Connection) -> str | None:
    """The ``schema_info`` version of a database without ``alembic_version``: ``"1"`` for one
    created by the release before migrations, None for an empty database (no schema_info).

    Raises :class:`MetadataStoreError` for a database that holds stateward tables but is
    neither (a schema_info of another version, or tables of 0001 missing)."""
    tables = set(inspect(conn).get_table_names())
    if "schema_info" not in tables:
        ours = sorted(tables & _LEGACY_TABLES)
        if ours:
            raise MetadataStoreError(
                f"the metadata store holds stateward tables ({', '.join(ours)}) but no schema "
                "version (neither alembic_version nor schema_info); refusing to touch it"
            )
        return None
    row = conn.execute(
        select(schema_info.c.value).where(schema_info.c.key == "schema_version")
    ).first()
    # No row: that release created the tables, then crashed before recording the version
    # (two transactions); it would have recorded "1" on its next start.
    version = LEGACY_SCHEMA_VERSION if row is None else str(row[0])
    if version != LEGACY_SCHEMA_VERSION:
        raise MetadataStoreError(
            f"metadata schema version {version!r} (schema_info, no alembic_version) is not one "
            f"this stateward can upgrade (it upgrades version {LEGACY_SCHEMA_VERSION})"
        )
    # Tables of 0001 may be missing: releases before migrations added tables one at a time
    # (create_all on start); revision 0001 creates the missing ones and leaves the others.
    return version


def _refuse_unknown(revision: str, known: list[str]) -> None:
    if revision not in known:
        raise MetadataStoreError(
            f"the metadata store is at schema revision {revision!r}, which this stateward does "
            f"not know (it knows {', '.join(known)}): written by a newer stateward; upgrade "
            "the binary (schemas are never downgraded automatically)"
        )


class _Translate:
    """Turns database errors into :class:`MetadataStoreError` (never with a password): before
    :meth:`opened`, "cannot open the metadata store"; after it, ``doing`` failed."""

    def __init__(self, engine: Engine, doing: str) -> None:
        self.where = engine.url.render_as_string(hide_password=True)
        self.doing = doing
        self.is_open = False

    def opened(self) -> None:
        self.is_open = True

    def __enter__(self) -> _Translate:
        return self

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, OperationalError) and not self.is_open:
            raise MetadataStoreError(
                f"cannot open the metadata store {self.where}: {str(exc.orig).strip() or exc}"
            ) from None
        if isinstance(exc, DBAPIError | CommandError):
            reason = str(getattr(exc, "orig", None) or exc).strip()
            raise MetadataStoreError(
                f"{self.doing} of the metadata store {self.where} failed: {reason}"
            ) from None


def init_schema(engine: Engine) -> None:
    """Bring the metadata store's schema to this build's head revision (see
    :func:`upgrade_schema`); every store does it on start.

    Raises :class:`MetadataStoreError` when the store cannot be reached, when it holds a
    schema this build does not know (a newer stateward's: never downgraded), or when the
    upgrade fails (then nothing was changed)."""
    done = upgrade_schema(engine)
    if done.legacy:
        log.info("metadata store: recorded the schema of the release before migrations as 0001")
    for revision in done.applied:
        log.info("metadata store: applied schema migration %s", revision)


def upgrade_schema(engine: Engine) -> SchemaUpgrade:
    """Upgrade to head in one write transaction, and say what was done.

    - empty database: every migration, from 0001;
    - database of the release before migrations (``schema_info`` version 1, no
      ``alembic_version``): 0001 creates the tables it lacks (none, for the last such
      release) and records itself, then the later migrations run;
    - at a known revision: the migrations after it (none at head);
    - at a revision this build does not know: refused, nothing touched.
    """
    with _Translate(engine, "the schema upgrade (rolled back: nothing changed)") as guard:
        with engine.begin() as conn:
            # A write transaction: the begin hook has taken the write lock (advisory lock /
            # BEGIN IMMEDIATE) before anything below is read, so a replica that waited for it
            # sees the schema that the one before it committed.
            guard.opened()
            done = _migrate(conn)
        return done


def _migrate(conn: Connection) -> SchemaUpgrade:
    scripts = _scripts()
    known = [s.revision for s in reversed(list(scripts.walk_revisions()))]
    head = head_revision(scripts)
    before = _recorded_revision(conn)
    legacy = False
    if before is None:
        legacy = _legacy_version(conn) is not None
    else:
        _refuse_unknown(before, known)
    start = LEGACY_REVISION if legacy else before
    pending = [
        s
        for s in reversed(list(scripts.iterate_revisions(head, start or "base")))
        if s.revision != start
    ]
    config = _alembic_config(conn)
    if pending or legacy:
        # A legacy database runs 0001 too: it creates only the tables that release lacked.
        command.upgrade(config, "head")
    # schema_info follows the revision: the release before migrations checks that it says
    # "1" and refuses to start otherwise, so it never runs on a schema it does not know.
    _record_schema_info(conn, head)
    return SchemaUpgrade(
        before=before,
        after=head,
        legacy=legacy,
        applied=tuple(f"{s.revision} ({s.doc.rstrip('.')})" for s in pending),
    )


def _record_schema_info(conn: Connection, revision: str) -> None:
    where = schema_info.c.key == "schema_version"
    current = conn.execute(select(schema_info.c.value).where(where)).scalar()
    if current is None:
        conn.execute(schema_info.insert().values(key="schema_version", value=revision))
    elif current != revision:
        conn.execute(schema_info.update().where(where).values(value=revision))


def schema_status(engine: Engine) -> tuple[str | None, str]:
    """``(current, head)``: the store's schema revision and this build's newest.

    ``current`` is None for an empty store; a store of the release before migrations reports
    ``"0001"`` (its schema is that revision; the next upgrade records it). A ``current`` not in
    :func:`known_revisions` was written by a newer stateward. Changes nothing.

    Raises :class:`MetadataStoreError` when the store cannot be reached or is not recognised."""
    with _Translate(engine, "reading the schema revision") as guard, engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        current = _recorded_revision(conn)
        guard.opened()
        if current is None and _legacy_version(conn) is not None:
            current = LEGACY_REVISION
        return current, head_revision()
