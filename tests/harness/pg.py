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

The ``store`` fixture is parametrized over :data:`STORES` (through the module-scoped
``store_kind``, so a module's shared server runs once per store, see ``module_store``):
``sqlite`` is the embedded default (SQLite and blob files in the data directory), ``postgres``
is PostgreSQL plus S3 (moto in server mode, one server per session: ``s3_url`` in
harness/aws.py).
``store.settings(data_dir, **kw)`` builds the settings of a service on that store and
``store.config_file(data_dir, base)`` a config file for a ``stateward`` process (what
``ServerProcess(..., store=store)`` uses). One data directory is one store: settings for the
same directory share its database and bucket, another directory gets others (on SQLite the
database and the blobs live inside the directory anyway). ``store.blobs``/``put_blob``/
``at_rest`` look at (and tamper with) what is stored, whichever the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.pool import Pool

from stateward.config import Settings
from stateward.crypto.providers.local import KeyfileConfig
from stateward.service.core import StateService
from stateward.service.factory import build_service
from stateward.storage.engine import head_revision, init_schema, postgres_engine
from stateward.storage.s3 import S3BlobStoreConfig
from stateward.storage.schema import metadata
from tests.harness.aws import REGION, apply_aws_env, aws_test_env, s3_client

PG_BIN = Path(os.environ.get("TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
STORES = ["sqlite", "postgres"]
TEMPLATE = "sw_template"
HEAD = head_revision()  # the schema every released test database must still be at
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
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )

    def _start(self) -> None:
        for attempt in range(5):
            self.port = _free_port()
            options = " ".join([f"-p {self.port}", f"-k {self.sock}", *_SERVER_OPTIONS])
            try:
                self._as_server_user(
                    [
                        str(PG_BIN / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-l",
                        str(self.log),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        options,
                        "start",
                    ]
                )
                return
            except RuntimeError:
                if attempt == 4:  # the port may have been taken meanwhile: try another
                    raise

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._as_server_user(
                    [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
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
                # what the store learnt about its keys (service/startup.py) goes with its data
                conn.execute(b"DELETE FROM schema_info WHERE key <> 'schema_version'")
                version = conn.execute(b"SELECT value FROM schema_info").fetchall()
                revision = conn.execute(b"SELECT version_num FROM alembic_version").fetchall()
                if version != [(HEAD,)] or revision != [(HEAD,)]:  # a test changed the schema
                    raise psycopg.DataError(f"schema_info is {version}, alembic {revision}")
        except psycopg.Error:
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
        with self._lock:
            self._spare.append(url)


#: Every open psycopg connection a SQLAlchemy pool opened, held until its database is released.
#: A test that forgets to dispose of a service's engine (or an in-process CLI command, which
#: never disposes of its own) would otherwise leave open connections whose garbage collection
#: warns (ResourceWarning, an error under filterwarnings=error), maybe during a later test.
_CONNECTIONS: set[psycopg.Connection[Any]] = set()
_CONNECTIONS_LOCK = threading.Lock()


@event.listens_for(Pool, "connect")
def _track(dbapi_conn: Any, _record: Any) -> None:
    if isinstance(dbapi_conn, psycopg.Connection):
        with _CONNECTIONS_LOCK:
            _CONNECTIONS.difference_update([c for c in _CONNECTIONS if c.closed])
            _CONNECTIONS.add(dbapi_conn)


def close_connections(database: str) -> None:
    """Close the pools' connections to ``database`` (the test is over)."""
    with _CONNECTIONS_LOCK:
        mine = [c for c in _CONNECTIONS if c.closed or c.info.dbname == database]
        _CONNECTIONS.difference_update(mine)
    for conn in mine:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Store:
    """The store a test runs on (``kind``): ``sqlite`` is the embedded default (SQLite and blob
    files in the data directory), ``postgres`` is PostgreSQL plus, when ``s3_url`` is given, an
    S3 bucket on moto (the ``store`` fixture always gives it; test_postgres.py's ``pg`` keeps the
    blobs in files). One data directory is one store: a database and a bucket of its own."""

    def __init__(self, kind: str, cluster: PgCluster | None, s3_url: str | None = None) -> None:
        self.kind = kind
        self.cluster = cluster
        self.s3_url = s3_url
        self._urls: dict[Path, str] = {}
        self._buckets: dict[Path, str] = {}
        self._engines: list[Engine] = []
        self._env: pytest.MonkeyPatch | None = None
        if s3_url is not None:  # in-process clients (services, boto3) find dummy credentials
            self._env = pytest.MonkeyPatch()
            self._env_dir = Path(tempfile.mkdtemp(prefix="stateward-aws-"))
            apply_aws_env(self._env, self._env_dir)

    def __repr__(self) -> str:
        return f"Store({self.kind})"

    @property
    def postgres(self) -> bool:
        return self.cluster is not None

    @property
    def embedded(self) -> bool:
        """SQLite and blob files: everything lives in the data directory."""
        return self.cluster is None and self.s3_url is None

    def url_for(self, data_dir: Path) -> str | None:
        """The database of ``data_dir`` (None: its embedded SQLite database)."""
        if self.cluster is None:
            return None
        key = Path(data_dir).resolve()
        if key not in self._urls:
            self._urls[key] = self.cluster.create_database()
        return self._urls[key]

    def bucket_for(self, data_dir: Path) -> str | None:
        """The S3 bucket of ``data_dir`` (None: blob files under it)."""
        if self.s3_url is None:
            return None
        key = Path(data_dir).resolve()
        if key not in self._buckets:
            name = f"sw-{uuid.uuid4().hex[:16]}"
            s3_client(self.s3_url).create_bucket(Bucket=name)
            self._buckets[key] = name
        return self._buckets[key]

    def blob_store(self, data_dir: Path) -> S3BlobStoreConfig | None:
        bucket = self.bucket_for(data_dir)
        if bucket is None:
            return None
        return S3BlobStoreConfig(bucket=bucket, endpoint_url=self.s3_url, region=REGION)

    def keys_dir(self, data_dir: Path) -> Path | None:
        """Where the keys of ``data_dir``'s store live (None: in the data directory). Off the
        embedded store, outside the data directory, as every replica must have them (``serve``
        refuses keys in its data directory with ``database_url``)."""
        if self.embedded:
            return None
        keys = Path(data_dir).parent / f".{Path(data_dir).name}.keys"
        keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        return keys

    def token_key_file(self, data_dir: Path) -> Path:
        keys = self.keys_dir(data_dir)
        return Path(data_dir) / "token.key" if keys is None else keys / "token.key"

    def key_file(self, data_dir: Path) -> Path:
        """The default key provider's key file."""
        keys = self.keys_dir(data_dir)
        return Path(data_dir) / "master.key" if keys is None else keys / "master.key"

    def settings(self, data_dir: Path, **kw: Any) -> Settings:
        kw.setdefault("database_url", self.url_for(data_dir))
        kw.setdefault("blob_store", self.blob_store(data_dir))
        if self.keys_dir(data_dir) is not None:
            kw.setdefault("token_key_file", self.token_key_file(data_dir))
            providers = dict(kw.get("key_providers") or {})
            default = KeyfileConfig(path=self.key_file(data_dir), create=True)
            providers.setdefault("default", default)
            kw["key_providers"] = providers
        return Settings(data_dir=data_dir, **kw)

    def build(self, data_dir: Path, **kw: Any) -> StateService:
        """A service on this store, disposed of when the test ends."""
        svc = build_service(self.settings(data_dir, **kw))
        self._engines.append(svc.engine)
        return svc

    def env(self, data_dir: Path) -> dict[str, str]:
        """Environment variables pointing a ``stateward`` process at this store's database and
        giving it AWS credentials (the blob store needs a config file: :meth:`config_text`)."""
        url = self.url_for(data_dir)
        out = {} if url is None else {"STATEWARD_DATABASE_URL": url}
        if self.s3_url is not None:
            out |= aws_test_env(self._env_dir)
        return out

    def config_text(self, data_dir: Path, base: str = "") -> str:
        """A config file's text: ``base`` plus this store's ``database_url``, ``[blob_store]``,
        ``token_key_file`` and default key file (each unless ``base`` sets it already)."""
        doc = tomllib.loads(base)
        head, tail = [], []
        url = self.url_for(data_dir)
        if url is not None and "database_url" not in doc:
            head.append(f"database_url = {json.dumps(url)}")
        if self.keys_dir(data_dir) is not None:
            if "token_key_file" not in doc:
                head.append(f"token_key_file = {json.dumps(str(self.token_key_file(data_dir)))}")
            if "default" not in doc.get("key_providers", {}):
                tail += [
                    "[key_providers.default]",
                    'type = "keyfile"',
                    f"path = {json.dumps(str(self.key_file(data_dir)))}",
                    "create = true",
                ]
        blobs = self.blob_store(data_dir)
        if blobs is not None and "blob_store" not in doc:
            tail += [
                "[blob_store]",
                'type = "s3"',
                f"bucket = {json.dumps(blobs.bucket)}",
                f"endpoint_url = {json.dumps(blobs.endpoint_url)}",
                f"region = {json.dumps(blobs.region)}",
            ]
        return "\n".join([*head, base, *tail]) + "\n"

    def config_file(self, data_dir: Path, base: Path | None = None) -> Path | None:
        """A config file for a ``stateward`` process on ``data_dir`` (``base``'s settings plus
        this store's), written beside the data directory; ``base`` itself on the embedded
        store."""
        if self.embedded:
            return base
        text = self.config_text(data_dir, base.read_text() if base is not None else "")
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        path = Path(data_dir).parent / f".{Path(data_dir).name}-{digest}.toml"
        if not path.exists():
            path.write_text(text)
        return path

    def cli_args(self, data_dir: Path, base: Path | None = None) -> list[str]:
        """``--config … --data-dir …`` for a ``stateward`` command on ``data_dir``."""
        cfg = self.config_file(data_dir, base)
        return [*(["--config", str(cfg)] if cfg is not None else []), "--data-dir", str(data_dir)]

    def sql(self, data_dir: Path, statement: str, *args: Any) -> list[Any]:
        """Run one SQL statement (``?`` placeholders) straight on ``data_dir``'s database, behind
        the service's back (tampering); its rows."""
        url = self.url_for(data_dir)
        if url is None:
            db = sqlite3.connect(Path(data_dir) / "stateward.db")
            try:
                rows = db.execute(statement, args).fetchall()
                db.commit()
                return rows
            finally:
                db.close()
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.execute(statement.replace("?", "%s").encode(), args or None)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []

    # -- what is stored ---------------------------------------------------------------------

    def blobs(self, data_dir: Path) -> dict[str, bytes]:
        """Every stored blob of ``data_dir``'s store by blob key, as stored (ciphertext)."""
        bucket = self.bucket_for(data_dir)
        if bucket is None:
            root = Path(data_dir) / "blobs"
            return {p.name: p.read_bytes() for p in root.rglob("*") if _is_blob_name(p.name)}
        client = s3_client(self.s3_url or "")
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1]
                if _is_blob_name(name):
                    out[name] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        return out

    def stored_blobs(self, data_dir: Path) -> list[Path | S3Object]:
        """Every stored blob of ``data_dir``'s store: its file, or its S3 object."""
        settings = Settings(data_dir=data_dir, blob_store=self.blob_store(data_dir))
        return [stored_blob(settings, key) for key in sorted(self.blob_keys(data_dir))]

    def blob_keys(self, data_dir: Path) -> set[str]:
        bucket = self.bucket_for(data_dir)
        if bucket is None:
            return set(self.blobs(data_dir))
        client = s3_client(self.s3_url or "")
        return {
            obj["Key"].rsplit("/", 1)[-1]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for obj in page.get("Contents", [])
            if _is_blob_name(obj["Key"].rsplit("/", 1)[-1])
        }

    def put_blob(self, data_dir: Path, key: str, data: bytes) -> None:
        """Overwrite a stored blob behind the service's back (tampering, corruption)."""
        bucket = self.bucket_for(data_dir)
        if bucket is None:
            target = Path(data_dir) / "blobs" / key[:2] / key
            assert target.is_file(), f"no blob file {key}"
            target.write_bytes(data)
            return
        config = self.blob_store(data_dir)
        assert config is not None
        obj = S3Object(config, key)
        assert obj.exists(), f"no blob object {key}"
        obj.write_bytes(data)

    def at_rest(self, data_dir: Path) -> list[tuple[str, bytes]]:
        """Everything someone holding a copy of the store would have, by where it is: every
        file under the data directory and, off it, a dump of the database (:func:`db_dump`) and
        every object of the bucket."""
        out = [(str(f), f.read_bytes()) for f in Path(data_dir).rglob("*") if f.is_file()]
        url = self.url_for(data_dir)
        if url is not None:
            engine = postgres_engine(url)
            try:
                out.append((f"database {url.rsplit('/', 1)[1]}", db_dump(engine)))
            finally:
                engine.dispose()
        bucket = self.bucket_for(data_dir)
        if bucket is not None:
            client = s3_client(self.s3_url or "")
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                    out.append((f"s3://{bucket}/{obj['Key']}", body))
        return out

    # -- clean-up ---------------------------------------------------------------------------

    def release(self, data_dir: Path) -> None:
        """Give the database (and bucket) of ``data_dir`` back now (their contents are gone)."""
        key = Path(data_dir).resolve()
        url = self._urls.pop(key, None)
        if url is not None and self.cluster is not None:
            self.cluster.release_database(url)
        bucket = self._buckets.pop(key, None)
        if bucket is not None and self.s3_url is not None:
            _drop_bucket(s3_client(self.s3_url), bucket)

    def close(self) -> None:
        for engine in self._engines:
            engine.dispose()
        for data_dir in {*self._urls, *self._buckets}:
            self.release(data_dir)
        if self._env is not None:
            self._env.undo()
            shutil.rmtree(self._env_dir, ignore_errors=True)
            self._env = None


class S3Object:
    """A stored blob in S3, with the few ``Path`` methods the tests use on a blob file."""

    def __init__(self, config: S3BlobStoreConfig, key: str) -> None:
        assert config.endpoint_url is not None
        self._client = s3_client(config.endpoint_url)
        self.bucket = config.bucket
        self.key = f"{config.prefix}{key[:2]}/{key}"
        self.name = key

    def __repr__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def read_bytes(self) -> bytes:
        return bytes(self._client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read())

    def write_bytes(self, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self.key, Body=data)

    def exists(self) -> bool:
        listed = self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.key)
        return any(o["Key"] == self.key for o in listed.get("Contents", []))

    def unlink(self) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self.key)


def stored_blob(settings: Settings, key: str) -> Path | S3Object:
    """Where the blob ``key`` of a service with ``settings`` is stored: its file, or its S3
    object (read, overwrite, check it exists)."""
    if settings.blob_store is None:
        return settings.blob_dir / key[:2] / key
    return S3Object(settings.blob_store, key)


def _is_blob_name(name: str) -> bool:
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)


def _drop_bucket(client: Any, bucket: str) -> None:
    with contextlib.suppress(Exception):  # moto is in memory: a leftover costs nothing
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket)


def open_store(kind: str, request: pytest.FixtureRequest) -> Store:
    """A store of ``kind``: ``postgres`` is PostgreSQL + S3 (the session's moto server)."""
    if kind == "sqlite":
        return Store(kind, None)
    return Store(kind, request.getfixturevalue("pg_cluster"), request.getfixturevalue("s3_url"))


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


#: A test about the embedded store's own files (say why beside it): it runs on SQLite only.
embedded_only = pytest.mark.parametrize("store_kind", ["sqlite"], indirect=True)


@pytest.fixture(scope="module", params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgres``: every test depending on it runs on both stores (the test id
    says which). Module-scoped, so a module's servers are started once per store."""
    return str(request.param)


@pytest.fixture(scope="module")
def module_store(store_kind: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    """The store of a module-scoped fixture (a server shared by the module's tests)."""
    s = open_store(store_kind, request)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def store(store_kind: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    """The store under test: every test using it runs on the embedded store (SQLite + blob
    files) and on PostgreSQL + S3."""
    s = open_store(store_kind, request)
    try:
        yield s
    finally:
        s.close()
