"""PostgreSQL for the tests: a throwaway cluster and the ``store`` fixture.

One cluster per test session, started on first use from the machine's server binaries
(:data:`PG_BIN`: ``initdb`` + ``pg_ctl`` on a temporary directory and a free loopback port,
trust authentication, the unix socket inside that directory, durability off since nothing
outlives the session) and stopped at the end. As root the server runs as the ``postgres`` OS
user (``runuser``), which owns the directory. Missing binaries fail the run: never a skip.

Each test gets fresh databases holding the empty schema: copies of a template
(``CREATE DATABASE … TEMPLATE``, ~0.2 s), emptied when the test ends (``TRUNCATE … RESTART
IDENTITY``, milliseconds) and handed to the next test; one whose schema a test changed is
dropped instead. The template's default
collation is ICU ``en-US``, as on a typical production server, so anything that sorts by the
database's locale instead of the schema's ``"C"`` collation shows up here.

The ``store`` fixture is parametrized over :data:`STORES`; ``store.settings(data_dir, **kw)``
builds the settings of a service on that store. One data directory is one store: settings for
the same directory share its database, another directory gets another database (on SQLite
the database lives inside the directory anyway).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.pool import Pool

from stateward.config import Settings
from stateward.service.core import StateService
from stateward.service.factory import build_service
from stateward.storage.engine import init_schema, postgres_engine
from stateward.storage.schema import SCHEMA_VERSION, metadata

PG_BIN = Path(os.environ.get("TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
STORES = ["sqlite", "postgres"]
TEMPLATE = "sw_template"
_DATA_TABLES = [t.name for t in metadata.sorted_tables if t.name != "schema_info"]
_SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1",
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
    "-c max_connections=300",
    "-c shared_buffers=64MB",
)


class PgCluster:
    """A PostgreSQL server of our own on 127.0.0.1:<port>, with a database factory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.sock = root / "sock"
        self.log = root / "server.log"
        self.port = 0
        self._counter = 0
        self._spare: list[str] = []  # emptied databases, ready for another test
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def start_new(cls) -> PgCluster:
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not os.access(PG_BIN / tool, os.X_OK):
                raise RuntimeError(
                    f"PostgreSQL server binary {PG_BIN / tool} not found: the PostgreSQL tests "
                    "need the server package (Debian: apt-get install postgresql-15)"
                )
        # Under /tmp itself (not pytest's root-only tmp dir): the postgres user must reach it.
        cluster = cls(Path(tempfile.mkdtemp(prefix="stateward-pg-")))
        try:
            cluster._initdb()
            cluster._start()
            cluster._make_template()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _as_server_user(self, argv: list[str], timeout: float = 120) -> None:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(argv)} failed ({done.returncode}):\n"
                f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
                f"{log}"
            )

    def _initdb(self) -> None:
        self.sock.mkdir()
        if os.geteuid() == 0:
            for p in (self.root, self.sock):
                shutil.chown(p, "postgres", "postgres")
        self._as_server_user(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
        )

    def _start(self) -> None:
        for attempt in range(5):
            self.port = _free_port()
            options = " ".join([f"-p {self.port}", f"-k {self.sock}", *_SERVER_OPTIONS])
            try:
                self._as_server_user(
                    [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                     "-w", "-t", "60", "-o", options, "start"]
                )
                return
            except RuntimeError:
                if attempt == 4:  # the port may have been taken meanwhile: try another
                    raise

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._as_server_user(
                    [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                     "stop"]
                )
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ------------------------------------------------------------------------

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.encode())

    def _make_template(self) -> None:
        self.admin(
            f"CREATE DATABASE {TEMPLATE} TEMPLATE template0 ENCODING 'UTF8' "
            "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
        engine = postgres_engine(self.url(TEMPLATE))
        try:
            init_schema(engine)
        finally:
            engine.dispose()

    def create_database(self) -> str:
        """A database holding the empty schema and nothing else; returns its URL."""
        with self._lock:
            if self._spare:
                return self._spare.pop()
            self._counter += 1
            name = f"sw_{self._counter}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        close_connections(name)
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def release_database(self, url: str) -> None:
        """Empty a database for the next test (faster than a new copy of the template), or
        drop it if it cannot be emptied (a test changed its schema)."""
        name = url.rsplit("/", 1)[1]
        close_connections(name)
        try:
            with psycopg.connect(
                host="127.0.0.1", port=self.port, user="postgres", dbname=name, autocommit=True
            ) as conn:
                conn.execute(  # connections a test left open (a service not disposed of)
                    b"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    b"WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                conn.execute(f"TRUNCATE {', '.join(_DATA_TABLES)} RESTART IDENTITY".encode())
                version = conn.execute(b"SELECT value FROM schema_info").fetchall()
                if version != [(SCHEMA_VERSION,)]:
                    raise psycopg.DataError(f"schema_info is {version}")
        except psycopg.Error:
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
        with self._lock:
            self._spare.append(url)


#: Every psycopg connection a SQLAlchemy pool opened. A test that forgets to dispose of a
#: service's engine would otherwise leave open connections whose garbage collection, during
#: some later test, warns (ResourceWarning, an error under filterwarnings=error).
_CONNECTIONS: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


@event.listens_for(Pool, "connect")
def _track(dbapi_conn: Any, _record: Any) -> None:
    if isinstance(dbapi_conn, psycopg.Connection):
        _CONNECTIONS.add(dbapi_conn)


def close_connections(database: str) -> None:
    """Close the pools' connections to ``database`` (the test is over)."""
    for conn in list(_CONNECTIONS):
        if not conn.closed and conn.info.dbname == database:
            with contextlib.suppress(psycopg.Error):
                conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Store:
    """The metadata store a test runs on (``kind``: ``sqlite`` or ``postgres``)."""

    def __init__(self, kind: str, cluster: PgCluster | None) -> None:
        self.kind = kind
        self.cluster = cluster
        self._urls: dict[Path, str] = {}
        self._engines: list[Engine] = []

    @property
    def postgres(self) -> bool:
        return self.cluster is not None

    def url_for(self, data_dir: Path) -> str | None:
        """The database of ``data_dir`` (None: its embedded SQLite database)."""
        if self.cluster is None:
            return None
        key = Path(data_dir).resolve()
        if key not in self._urls:
            self._urls[key] = self.cluster.create_database()
        return self._urls[key]

    def settings(self, data_dir: Path, **kw: Any) -> Settings:
        return Settings(data_dir=data_dir, database_url=self.url_for(data_dir), **kw)

    def build(self, data_dir: Path, **kw: Any) -> StateService:
        """A service on this store, disposed of when the test ends."""
        svc = build_service(self.settings(data_dir, **kw))
        self._engines.append(svc.engine)
        return svc

    def env(self, data_dir: Path) -> dict[str, str]:
        """Environment variables pointing a ``stateward`` process at this store."""
        url = self.url_for(data_dir)
        return {} if url is None else {"STATEWARD_DATABASE_URL": url}

    def release(self, data_dir: Path) -> None:
        """Give the database of ``data_dir`` back now (its contents are gone)."""
        url = self._urls.pop(Path(data_dir).resolve(), None)
        if url is not None and self.cluster is not None:
            self.cluster.release_database(url)

    def close(self) -> None:
        for engine in self._engines:
            engine.dispose()
        for data_dir in list(self._urls):
            self.release(data_dir)


def open_store(kind: str, request: pytest.FixtureRequest) -> Store:
    cluster = request.getfixturevalue("pg_cluster") if kind == "postgres" else None
    return Store(kind, cluster)


def db_dump(engine: Engine) -> bytes:
    """Every value of every row of every table, as stored (bytes as they are, text as UTF-8):
    what someone holding a copy of the database would have."""
    out: list[bytes] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        out.append(bytes(value))
                    elif value is not None:
                        out.append(str(value).encode())
    return b"\n".join(out)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    started = time.monotonic()
    cluster = PgCluster.start_new()
    print(f"\nPostgreSQL test cluster on port {cluster.port} ({time.monotonic() - started:.1f}s)")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """The metadata store under test: every test using it runs on SQLite and on PostgreSQL."""
    s = open_store(request.param, request)
    try:
        yield s
    finally:
        s.close()
