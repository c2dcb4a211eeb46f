"""The PostgreSQL metadata store: configuration, transaction discipline and concurrency.

Everything else about PostgreSQL is proven by the service-level suites, which run on both
stores (the ``store`` fixture). Here: what only PostgreSQL has to prove. SQLite serializes
writers with ``BEGIN IMMEDIATE``; PostgreSQL must give the same guarantee with its advisory
write lock, across threads and across services (replicas) sharing one database: one lock
holder, one version per serial, one unbroken audit chain.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from sqlalchemy import select

from stateward.cli.main import cli
from stateward.config import ConfigError, Settings, load_settings
from stateward.domain.errors import BadRequest, Conflict, Locked, Unavailable
from stateward.domain.principal import Principal
from stateward.gate import Caller, build_gate
from stateward.service.audit import AuditQuery
from stateward.service.core import StateService
from stateward.service.factory import build_service
from stateward.storage import engine as engine_module
from stateward.storage.engine import WRITE_LOCK_KEY, MetadataStoreError
from stateward.storage.schema import audit
from tests.harness.pg import PgCluster, Store
from tests.harness.support import ServerProcess, free_port, lock_body, make_state, md5_b64

ADMIN = Principal("admin", roles=("admin",), source="127.0.0.1")
THREADS = 16
T = TypeVar("T")


@pytest.fixture
def pg(pg_cluster: PgCluster) -> Iterator[Store]:
    store = Store("postgres", pg_cluster)
    yield store
    store.close()


@pytest.fixture
def svc(pg: Store, tmp_path: Path) -> StateService:
    return pg.build(tmp_path / "d")


def race(calls: list[Callable[[], T]]) -> list[T | Exception]:
    """Run ``calls`` in as many threads, released together; each result or exception."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T | Exception:
        start.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def audited(svc: StateService, operation: str, call: Callable[[], T]) -> T:
    """``call`` as a transport makes it: inside an audit context, recorded exactly once."""
    caller = Caller(operation, "127.0.0.1", principal=ADMIN)
    with build_gate(svc).session(caller) as session:
        return session.run(lambda _who: call())


def audit_seqs(svc: StateService) -> list[int]:
    with svc.engine.connect() as conn:
        return [int(s) for s in conn.execute(select(audit.c.seq).order_by(audit.c.seq)).scalars()]


# -- configuration ----------------------------------------------------------------------------


def test_database_url_is_validated_and_its_password_never_shown(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, database_url="postgresql://sw:pa55-word@db.internal:5432/sw")
    assert s.database_url == "postgresql+psycopg://sw:pa55-word@db.internal:5432/sw"
    assert s.database_display() == "postgresql+psycopg://sw:***@db.internal:5432/sw"
    assert "pa55-word" not in repr(s) and "pa55-word" not in str(s)
    assert Settings(data_dir=tmp_path, database_url="").database_url is None
    assert Settings(data_dir=tmp_path).database_display().startswith("sqlite:///")
    for bad in ("mysql://sw:pa55-word@h/db", "postgresql://sw:pa55-word@h", "not a url"):
        with pytest.raises(ValidationError) as err:
            Settings(data_dir=tmp_path, database_url=bad)
        assert "pa55-word" not in str(err.value)
    with pytest.raises(ConfigError, match="database_url") as cerr:
        load_settings(env={"STATEWARD_DATABASE_URL": "mysql://sw:pa55-word@h/db"})
    assert "pa55-word" not in str(cerr.value)
    env = {"STATEWARD_DATABASE_URL": "postgresql+psycopg://sw@h/db"}
    assert load_settings(env=env).database_url == "postgresql+psycopg://sw@h/db"


def test_unreachable_database_fails_start_up_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://sw:pa55-word@127.0.0.1:{free_port()}/sw"
    with pytest.raises(MetadataStoreError) as err:
        build_service(Settings(data_dir=tmp_path / "d", database_url=url))
    message = str(err.value)
    assert "cannot open the metadata store" in message and "sw:***@127.0.0.1" in message
    assert "pa55-word" not in message
    res = CliRunner().invoke(
        cli, ["serve", "--data-dir", str(tmp_path / "d")], env={"STATEWARD_DATABASE_URL": url}
    )
    assert res.exit_code == 1 and "cannot open the metadata store" in res.output
    assert "pa55-word" not in res.output


# -- transaction discipline -------------------------------------------------------------------


def test_writes_hold_the_write_lock_and_reads_see_one_snapshot(svc: StateService) -> None:
    advisory = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND pid = pg_backend_pid() AND (classid::bigint << 32 | objid::bigint) = "
        f"{WRITE_LOCK_KEY}"
    )
    with svc.uow.write() as conn:
        assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "read committed"
        assert conn.exec_driver_sql(advisory).scalar() == 1
    with svc.uow.read() as conn:
        assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "repeatable read"
        assert conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
        assert conn.exec_driver_sql(advisory).scalar() == 0
    # the pooled connection goes back to write mode for the next write
    with svc.uow.write() as conn:
        assert conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "off"
    # ... and the group-committed audit writes (engine.begin() outside uow.write) hold it too
    with svc.engine.begin() as conn:
        assert conn.exec_driver_sql(advisory).scalar() == 1


def test_writes_stay_read_committed_whatever_the_database_default(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    url = pg_cluster.create_database()
    name = url.rsplit("/", 1)[1]
    pg_cluster.admin(f"ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'")
    try:
        svc = build_service(Settings(data_dir=tmp_path / "d", database_url=url))
        with svc.uow.write() as conn:
            assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "read committed"
        svc.writes.write(ADMIN, "a/b", make_state(serial=1, lineage="l"))
        # Racing serials: under a snapshot older than the lock, two writers would pass the
        # guards against the same current version and collide on its successor's seq.
        results = race(
            [
                lambda i=i: svc.writes.write(ADMIN, "a/b", make_state(serial=2 + i, lineage="l"))
                for i in range(THREADS)
            ]
        )
        accepted = [r for r in results if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, Exception)]
        assert all(isinstance(r, Conflict) and "stale write" in str(r) for r in refused), refused
        history = svc.history.history(ADMIN, "a/b")
        assert len(history) == 1 + len(accepted)
        serials = [v.serial for v in reversed(history)]
        assert serials == sorted(serials) and len(set(serials)) == len(serials)
        svc.engine.dispose()
    finally:
        pg_cluster.drop_database(url)


def test_a_stuck_writer_times_out_writes_but_never_blocks_reads(
    pg: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "LOCK_TIMEOUT_MS", 300)
    svc = pg.build(tmp_path / "d")
    svc.writes.write(ADMIN, "a/b", make_state(serial=1, lineage="l"))
    url = pg.url_for(tmp_path / "d")
    assert url is not None
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK_KEY,))  # another replica, stuck
        with pytest.raises(Unavailable, match="retry later"):
            svc.writes.write(ADMIN, "a/b", make_state(serial=2, lineage="l"))
        with pytest.raises(Unavailable):
            svc.locks.lock(ADMIN, "a/b", lock_body("L"))
        state = svc.writes.read(ADMIN, "a/b")  # readers never queue behind writers
        assert state is not None and state.serial == 1
        assert [v.seq for v in svc.history.history(ADMIN, "a/b")] == [1]
        c.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK_KEY,))
    assert svc.writes.write(ADMIN, "a/b", make_state(serial=2, lineage="l")).created


def test_values_postgresql_cannot_hold_are_refused_as_bad_requests(svc: StateService) -> None:
    """SQLite stores a NUL character in text; PostgreSQL cannot. Such a request is a 400 that
    changes nothing (and is audited as such), never a 500 or a half-done write."""
    doc = json.loads(make_state(serial=1, lineage="l"))
    doc["terraform_version"] = "1.0\x00"
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: svc.writes.write(ADMIN, "n/a", make_state(serial=1, lineage="x\x00y")), "NUL"),
        (lambda: svc.writes.write(ADMIN, "n/a", json.dumps(doc).encode()), "NUL"),
        (lambda: svc.locks.lock(ADMIN, "n/a", lock_body("L", who="w\x00")), "NUL"),
        (lambda: svc.locks.lock(ADMIN, "n/a", lock_body("L\x00")), "NUL"),
        (lambda: svc.writes.write(ADMIN, "n/a", make_state(serial=2**63, lineage="l")), "range"),
    ]
    for call, why in cases:
        with pytest.raises(BadRequest, match=why) as err:
            audited(svc, "test", call)
        assert "\x00" not in str(err.value)
    assert svc.history.list_states(ADMIN, include_deleted=True) == []
    assert svc.locks.list_locks(ADMIN) == []
    assert [r.status for r in svc.audit.audit_records(ADMIN, AuditQuery())] == [400] * len(cases)
    assert svc.audit.verify_audit(ADMIN).ok


def test_a_database_restart_costs_one_retried_request(svc: StateService, pg: Store) -> None:
    svc.writes.write(ADMIN, "r/a", make_state(serial=1, lineage="l"))
    race([lambda: svc.writes.read(ADMIN, "r/a") for _ in range(6)])  # several pooled connections
    url = svc.settings.database_url
    assert url is not None
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        killed = c.execute(  # what a restart or failover does to every connection
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed is not None and killed[0] >= 2
    failures = 0
    for _ in range(10):
        try:
            assert svc.writes.read(ADMIN, "r/a") is not None
        except Unavailable as exc:
            assert exc.retry  # 503 with Retry-After: Terraform retries it
            failures += 1
    assert failures == 1
    assert svc.writes.write(ADMIN, "r/a", make_state(serial=2, lineage="l")).created


# -- concurrency ------------------------------------------------------------------------------


@pytest.mark.parametrize("services", [1, 2], ids=["one-service", "two-replicas"])
def test_racing_locks_have_exactly_one_winner(
    pg: Store, tmp_path: Path, services: int
) -> None:
    # Two services on one database are two replicas: separate engines, pools and processes'
    # worth of state, sharing nothing but PostgreSQL.
    replicas = [pg.build(tmp_path / "d") for _ in range(services)]
    for rnd in range(5):
        path = f"race/lock-{rnd}"
        calls = [
            lambda i=i, path=path: replicas[i % services].locks.lock(
                ADMIN, path, lock_body(f"L{i}")
            )
            for i in range(THREADS)
        ]
        results = race(calls)
        won = [r for r in results if not isinstance(r, Exception)]
        lost = [r for r in results if isinstance(r, Exception)]
        assert len(won) == 1, results
        assert all(isinstance(r, Locked) for r in lost), lost
        assert {json.loads(r.holder)["ID"] for r in lost if isinstance(r, Locked)} == {won[0].id}
        for replica in replicas:  # every replica sees the one holder
            lock = replica.locks.get_lock(ADMIN, path)
            assert lock is not None and lock.id == won[0].id


@pytest.mark.parametrize("services", [1, 2], ids=["one-service", "two-replicas"])
def test_racing_writers_of_one_serial_make_exactly_one_version(
    pg: Store, tmp_path: Path, services: int
) -> None:
    replicas = [pg.build(tmp_path / "d") for _ in range(services)]
    first = replicas[0]
    # an empty path: every writer may create it (any lineage), only one does
    results = race(
        [
            lambda i=i: replicas[i % services].writes.write(
                ADMIN, "race/new", make_state(serial=1, lineage=f"lineage-{i}")
            )
            for i in range(THREADS)
        ]
    )
    created = [r for r in results if not isinstance(r, Exception) and r.created]
    assert len(created) == 1 and created[0].seq == 1, results
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception)), results
    assert len(first.history.history(ADMIN, "race/new")) == 1
    # an existing path: the same next serial with different contents, one wins
    first.writes.write(ADMIN, "race/next", make_state(serial=1, lineage="lin"))
    results = race(
        [
            lambda i=i: replicas[i % services].writes.write(
                ADMIN, "race/next", make_state(serial=2, lineage="lin", resources=i + 1)
            )
            for i in range(THREADS)
        ]
    )
    created = [r for r in results if not isinstance(r, Exception)]
    assert len(created) == 1 and created[0].seq == 2, results
    assert all(
        isinstance(r, Conflict) and "already stored with different content" in str(r)
        for r in results
        if isinstance(r, Exception)
    ), results
    assert [v.seq for v in first.history.history(ADMIN, "race/next")] == [2, 1]


@pytest.mark.parametrize("services", [1, 2], ids=["one-service", "two-replicas"])
def test_concurrent_writers_keep_one_audit_chain(
    pg: Store, tmp_path: Path, services: int
) -> None:
    """Writes to different paths (audited in their own transaction) and reads (audited by
    group commit), from many threads and replicas at once: one gapless, valid chain."""
    replicas = [pg.build(tmp_path / "d") for _ in range(services)]
    rounds = 6

    def worker(i: int) -> int:
        svc = replicas[i % services]
        path = f"chain/p{i}"
        lineage = f"lin-{i}"
        for serial in range(1, rounds + 1):
            audited(svc, "POST /state", lambda s=serial: svc.writes.write(
                ADMIN, path, make_state(serial=s, lineage=lineage)))  # fmt: skip
            audited(svc, "GET /state", lambda: svc.writes.read(ADMIN, path))
        return rounds * 2

    results = race([lambda i=i: worker(i) for i in range(THREADS)])
    assert all(r == rounds * 2 for r in results), results
    total = THREADS * rounds * 2
    for replica in replicas:
        report = replica.audit.verify_audit(ADMIN)
        assert report.ok and report.checked == total, report
    assert audit_seqs(replicas[0]) == list(range(1, total + 1))
    for i in range(THREADS):
        assert len(replicas[0].history.history(ADMIN, f"chain/p{i}")) == rounds
    actions = [r.action for r in replicas[0].audit.audit_records(ADMIN, AuditQuery())]
    assert actions.count("write") == actions.count("read") == THREADS * rounds


# -- a real server ----------------------------------------------------------------------------


def test_two_server_processes_on_one_database_behave_as_one(
    pg: Store, tmp_path: Path
) -> None:
    """``stateward serve`` on PostgreSQL, twice on one database (and, until the S3 blob store,
    one shared data directory): a lock taken through one is honoured by the other, a write
    through one is read through the other; the password in the URL is never logged."""
    data = tmp_path / "data"
    url = pg.url_for(data)
    assert url is not None
    with_password = url.replace("postgres@", "postgres:pa55-word@")  # trust auth ignores it
    cfg = tmp_path / "sw.toml"
    keys = tmp_path / "shared-keys"  # every replica's keys: outside the data directories
    cfg.write_text(
        f'database_url = "{with_password}"\n'
        f'token_key_file = "{keys / "token.key"}"\n'
        f'[key_providers.default]\ntype = "keyfile"\npath = "{keys / "master.key"}"\n'
        "create = true\n"
    )
    a = ServerProcess(data, config=cfg).start()
    try:
        b = ServerProcess(data, config=cfg).start()
        try:
            lock = lock_body("L-a")
            path = "replicas/app"
            assert httpx.request("LOCK", a.state_url(path), content=lock).status_code == 200
            other = httpx.request("LOCK", b.state_url(path), content=lock_body("L-b"))
            assert other.status_code == 423 and other.json()["ID"] == "L-a"
            body = make_state(serial=1, lineage="l")
            r = httpx.post(b.state_url(path), content=body, params={"ID": "L-a"},
                           headers={"Content-MD5": md5_b64(body)})  # fmt: skip
            assert r.status_code == 200
            assert httpx.get(a.state_url(path)).content == body
            assert httpx.request("UNLOCK", b.state_url(path), content=lock).status_code == 200
            assert httpx.request("LOCK", a.state_url(path), content=lock_body()).status_code == 200
            verify = a.cli("audit", "verify", check=False)
            assert verify.returncode == 0, verify.stdout + verify.stderr
        finally:
            b.stop()
    finally:
        a.stop()
    for srv in (a, b):
        assert srv.log_path is not None
        log = srv.log_path.read_text()
        assert "metadata: postgresql+psycopg://postgres:***@127.0.0.1" in log
        assert "pa55-word" not in log
    assert not (data / "stateward.db").exists()  # nothing went to the embedded store
