"""Job leases: each background job runs on one replica at a time, on both stores.

Two services on one store stand in for two replicas (each with its own lease holder); the
real multi-process case is in tests/test_replicas.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stateward.domain.audit_record import AuditRecord
from stateward.domain.errors import Conflict
from stateward.domain.principal import Principal
from stateward.gate import Caller, build_gate
from stateward.jobs.follower import AuditFollower
from stateward.jobs.scanner import SecretScanner
from stateward.service.core import StateService
from stateward.storage.leases import Lease
from stateward.storage.schema import audit, secret_scans
from tests.harness.pg import Store
from tests.harness.support import make_state

ADMIN = Principal("admin", roles=("admin",), source="127.0.0.1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def replicas(store: Store, tmp_path: Path) -> Iterator[tuple[StateService, StateService]]:
    """Two services on one store (one data directory = one store, see tests/harness/pg.py)."""
    data = tmp_path / "data"
    a = store.build(data, orphan_min_age_seconds=0)
    b = store.build(data, orphan_min_age_seconds=0)
    yield a, b
    a.engine.dispose()
    b.engine.dispose()


def test_one_holder_renewal_takeover_and_release(
    replicas: tuple[StateService, StateService],
) -> None:
    a_svc, b_svc = replicas
    clock = Clock()
    a = Lease(a_svc.engine, "job", ttl=30, holder="replica-a", clock=clock)
    b = Lease(b_svc.engine, "job", ttl=30, holder="replica-b", clock=clock)
    assert a.held()
    assert not b.held()
    assert b.holder_now() == "replica-a"
    clock.now += 25  # a renews (more than a third of the ttl used): now until t+55
    assert a.held()
    clock.now += 25
    assert not b.held()  # t+50: a's renewal still stands
    # a dies: nobody renews; a's lease runs out at t+55, b asks again at t+60 and takes over
    clock.now += 6
    assert not b.held()
    clock.now += 5
    assert b.held()
    assert b.holder_now() == "replica-b"
    # a comes back believing in its old lease: it must not, its expiry is in the past
    assert not a.held()
    b.release()
    assert b.holder_now() is None
    clock.now += 10  # a asks again after ttl / 3 and gets it at once (no waiting for expiry)
    assert a.held()


def test_unreachable_store_is_not_held(replicas: tuple[StateService, StateService]) -> None:
    a_svc, _ = replicas
    lease = Lease(a_svc.engine, "job", ttl=30, holder="x")
    lease.engine = _broken_engine(a_svc)
    assert not lease.held()


def _broken_engine(svc: StateService):  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    if svc.engine.dialect.name == "sqlite":
        return create_engine("sqlite:////nonexistent/dir/x.db")
    return create_engine(
        "postgresql+psycopg://u@127.0.0.1:1/x", connect_args={"connect_timeout": 1}
    )


def test_two_scanners_scan_each_version_once(
    replicas: tuple[StateService, StateService],
) -> None:
    a_svc, b_svc = replicas
    for i in range(6):
        a_svc.writes.write(ADMIN, f"scan/p{i}", make_state(serial=1))
    # Without leases (the worst case: a lease expired under a paused holder) both scan at
    # once; every version still gets exactly one scan row and no integrity error.
    errors: list[BaseException] = []

    def scan(svc: StateService) -> None:
        try:
            while svc.secrets.scan_pending(limit=2):
                pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scan, args=(s,)) for s in (a_svc, b_svc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with a_svc.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(secret_scans)).scalar() == 6


def test_scanner_runs_only_where_the_lease_is(
    replicas: tuple[StateService, StateService],
) -> None:
    a_svc, b_svc = replicas
    a_svc.writes.write(ADMIN, "scan/one", make_state(serial=1))
    Lease(a_svc.engine, "secret-scanner", ttl=30, holder="someone-else").held()
    lease = Lease(b_svc.engine, "secret-scanner", ttl=30, holder="b")
    scanner = SecretScanner(b_svc.secrets, interval=0.05, lease=lease)
    scanner.start()
    time.sleep(0.5)
    scanner.stop()
    with a_svc.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(secret_scans)).scalar() == 0


def test_followers_on_two_replicas_deliver_each_record_once(
    replicas: tuple[StateService, StateService],
) -> None:
    a_svc, b_svc = replicas
    got: dict[str, list[int]] = {"a": [], "b": []}

    def follower(svc: StateService, name: str) -> AuditFollower:
        def handle(rec: AuditRecord) -> None:
            got[name].append(rec.seq)

        lease = Lease(svc.engine, "audit-sinks", ttl=6, holder=f"replica-{name}")
        return AuditFollower(svc.audit, "sinks", [handle], interval=0.05, lease=lease)

    fa, fb = follower(a_svc, "a"), follower(b_svc, "b")
    fa.start()
    time.sleep(0.3)  # a leads
    fb.start()
    for i in range(5):
        _audited_write(a_svc, f"f/p{i}")
    assert _audit_count(a_svc) == 5
    _wait(lambda: len(got["a"]) + len(got["b"]) >= _audit_count(a_svc))
    assert got["b"] == []
    fa.stop()  # releases the lease: b takes over within ttl / 3
    for i in range(5, 8):
        _audited_write(b_svc, f"f/p{i}")
    _wait(lambda: len(got["a"]) + len(got["b"]) >= _audit_count(a_svc), timeout=10)
    fb.stop()
    delivered = got["a"] + got["b"]
    assert got["b"], "b never took over"
    assert sorted(delivered) == delivered == list(range(1, _audit_count(a_svc) + 1))


def test_rewrap_refused_while_another_runs(
    replicas: tuple[StateService, StateService],
) -> None:
    a_svc, b_svc = replicas
    a_svc.writes.write(ADMIN, "k/x", make_state(serial=1))
    other = Lease(a_svc.engine, "key-rewrap", ttl=30, holder="replica-a")
    assert other.held()
    with pytest.raises(Conflict, match="another key rewrap is running"):
        b_svc.keys.rewrap(ADMIN)
    other.release()
    assert b_svc.keys.rewrap(ADMIN) >= 0
    assert Lease(a_svc.engine, "key-rewrap").holder_now() is None  # released when done


def _audited_write(svc: StateService, path: str) -> None:
    caller = Caller("POST /state", "127.0.0.1", principal=ADMIN)
    build_gate(svc).call(caller, svc.writes.write, path, make_state(serial=1))


def _audit_count(svc: StateService) -> int:
    with svc.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit)).scalar() or 0)


def _wait(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
