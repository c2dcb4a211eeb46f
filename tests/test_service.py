"""StateService against real stores: every test runs on the embedded store (SQLite + blob
files) and on PostgreSQL + S3 (the ``store`` fixture, tests/harness/pg.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stateward.config import LeaseRule, RetentionRule, Settings
from stateward.domain.errors import Conflict, Forbidden, Locked, NotFound, TooLarge
from stateward.domain.principal import Principal
from stateward.service.core import StateService
from tests.harness.pg import Store, embedded_only
from tests.harness.support import lock_body, make_state

ALICE = Principal("alice", roles=("admin",))
P = "team/app/prod"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_service(store: Store, tmp_path: Path, **kw: object) -> tuple[StateService, Clock]:
    svc = store.build(tmp_path / "d", orphan_min_age_seconds=0, **kw)
    clock = Clock()
    svc.clock = clock
    return svc, clock


def test_versions_history_and_metadata(service: StateService) -> None:
    lock = lock_body("L1", who="alice@laptop")
    service.locks.lock(ALICE, P, lock)
    b1 = make_state(serial=1, lineage="lin", resources=2)
    out = service.writes.write(ALICE, P, b1, "L1")
    assert out.created and out.seq == 1
    assert not service.writes.write(ALICE, P, b1, "L1").created  # identical re-send
    service.writes.write(ALICE, P, make_state(serial=2, lineage="lin", resources=3), "L1")
    service.locks.unlock(ALICE, P, lock)
    hist = service.history.history(ALICE, P)
    assert [v.seq for v in hist] == [2, 1]
    v2 = hist[0]
    assert v2.current and v2.serial == 2 and v2.resource_count == 3 and v2.output_count == 2
    assert v2.author == "alice" and v2.client_version == "1.11.4" and v2.lock_id == "L1"
    assert len(v2.sha256) == 64 and len(v2.md5) == 32 and v2.stored_size > 0
    view, body = service.history.get_version_body(ALICE, P, 1)
    assert body == b1 and not view.current
    assert service.writes.read(ALICE, P).body == make_state(serial=2, lineage="lin", resources=3)


def test_blob_on_disk_is_not_plain_state(
    service: StateService, settings: Settings, store: Store
) -> None:
    service.writes.write(ALICE, P, make_state(serial=1, outputs={"o": {"value": "needle-xyz",
                                                                "type": "string"}}))
    blobs = store.blobs(settings.data_dir)
    assert blobs and all(b"needle-xyz" not in data for data in blobs.values())
    files = [p for p in settings.blob_dir.rglob("*") if p.is_file()]
    assert all(p.stat().st_mode & 0o077 == 0 for p in files)
    assert len(files) == (len(blobs) if store.embedded else 0)


def test_rollback_writes_old_content_as_new_version(service: StateService) -> None:
    b1 = make_state(serial=1, lineage="lin")
    service.writes.write(ALICE, P, b1)
    service.writes.write(ALICE, P, make_state(serial=5, lineage="lin"))
    out = service.writes.rollback(ALICE, P, 1)
    assert out.created and out.seq == 3
    assert service.writes.read(ALICE, P).body == b1
    hist = service.history.history(ALICE, P)
    assert hist[0].kind == "rollback" and hist[0].source_seq == 1
    # after a rollback, the next normal write (serial of rolled-back state + 1) is accepted
    assert service.writes.write(ALICE, P, make_state(serial=2, lineage="lin")).created
    assert any(e.action == "rollback" for e in service.admin.events(ALICE, P))


def test_rollback_refused_while_locked_by_someone_else(service: StateService) -> None:
    service.writes.write(ALICE, P, make_state(serial=1, lineage="lin"))
    service.writes.write(ALICE, P, make_state(serial=2, lineage="lin"))
    service.locks.lock(ALICE, P, lock_body("other"))
    with pytest.raises(Locked):
        service.writes.rollback(ALICE, P, 1)
    assert service.writes.rollback(ALICE, P, 1, lock_id="other").created


def test_diff_between_versions(service: StateService) -> None:
    service.writes.write(ALICE, P, make_state(serial=1, lineage="lin", resources=1))
    service.writes.write(ALICE, P, make_state(serial=2, lineage="lin", resources=2))
    d = service.history.diff(ALICE, P, 1, 2)
    assert d["resources_added"] == ["terraform_data.r1"] and "s3cr3t" not in json.dumps(d)
    with pytest.raises(NotFound):
        service.history.diff(ALICE, P, 1, 9)


def test_guards_and_override(service: StateService) -> None:
    service.writes.write(ALICE, P, make_state(serial=3, lineage="lin"))
    for body in (make_state(serial=4, lineage="other"), make_state(serial=2, lineage="lin"),
                 make_state(serial=3, lineage="lin", resources=2)):
        with pytest.raises(Conflict):
            service.writes.write(ALICE, P, body)
    assert len(service.history.history(ALICE, P)) == 1
    service.admin.allow_next_write(ALICE, P)
    assert service.writes.write(ALICE, P, make_state(serial=1, lineage="forced")).created
    with pytest.raises(Conflict):  # consumed by the write
        service.writes.write(ALICE, P, make_state(serial=1, lineage="again"))
    actions = [e.action for e in service.admin.events(ALICE, P)]
    assert "override-next-write" in actions and "override-consumed" in actions


def test_body_limit(store: Store, tmp_path: Path) -> None:
    svc, _ = make_service(store, tmp_path, max_body_bytes=2048)
    with pytest.raises(TooLarge):
        svc.writes.write(ALICE, P, make_state(pad=4096))


def test_lock_listing_and_break(service: StateService) -> None:
    service.locks.lock(ALICE, P, lock_body("L1", who="bob@ci"))
    [view] = service.locks.list_locks(ALICE)
    assert (view.path, view.id, view.who) == (P, "L1", "bob@ci")
    with pytest.raises(Locked) as exc:
        service.locks.lock(ALICE, P, lock_body("L2"))
    assert json.loads(exc.value.holder)["ID"] == "L1"
    service.locks.break_lock(ALICE, P)
    assert service.locks.list_locks(ALICE) == []
    ev = service.admin.events(ALICE, P)[0]
    assert ev.action == "break-lock" and "L1" in ev.detail and ev.principal == "alice"
    with pytest.raises(NotFound):
        service.locks.break_lock(ALICE, P)


def test_lock_lease_breaks_stale_lock_only_after_lease(store: Store, tmp_path: Path) -> None:
    svc, clock = make_service(store, tmp_path, lock_leases=[LeaseRule(path="ci/**", seconds=60)])
    svc.locks.lock(ALICE, "ci/x", lock_body("old"))
    svc.locks.lock(ALICE, P, lock_body("old"))
    clock.now += 61
    svc.locks.lock(ALICE, "ci/x", lock_body("new"))  # lease expired: taken over
    with pytest.raises(Locked):
        svc.locks.lock(ALICE, P, lock_body("new"))  # no lease: locks never expire
    assert svc.admin.events(ALICE, "ci/x")[0].action == "lock-lease-expired"


def test_force_unlock_recorded(service: StateService) -> None:
    service.locks.lock(ALICE, P, lock_body("L1"))
    service.locks.unlock(ALICE, P, b"")
    assert service.locks.list_locks(ALICE) == []
    assert service.admin.events(ALICE, P)[0].action == "force-unlock"


def test_soft_delete_restore_purge(service: StateService) -> None:
    body = make_state(serial=1, lineage="lin")
    service.writes.write(ALICE, P, body)
    service.locks.lock(ALICE, P, lock_body("L"))
    with pytest.raises(Locked):
        service.admin.delete(ALICE, P)
    service.locks.unlock(ALICE, P, lock_body("L"))
    with pytest.raises(Conflict):
        service.admin.purge(ALICE, P)
    service.admin.delete(ALICE, P)
    assert service.writes.read(ALICE, P) is None
    assert service.history.list_states(ALICE) == []
    assert service.history.list_states(ALICE, include_deleted=True)[0].deleted_at is not None
    service.admin.restore(ALICE, P)
    assert service.writes.read(ALICE, P).body == body
    service.admin.delete(ALICE, P)
    assert service.admin.purge(ALICE, P) == 1
    with pytest.raises(NotFound):
        service.history.history(ALICE, P)


def test_write_after_delete_starts_fresh_but_keeps_history(service: StateService) -> None:
    service.writes.write(ALICE, P, make_state(serial=9, lineage="old"))
    service.admin.delete(ALICE, P)
    assert service.writes.write(ALICE, P, make_state(serial=1, lineage="new")).seq == 2
    assert [v.lineage for v in service.history.history(ALICE, P)] == ["new", "old"]


def test_protected_paths(store: Store, tmp_path: Path) -> None:
    svc, _ = make_service(store, tmp_path, protected_paths=["prod/**"])
    svc.writes.write(ALICE, "prod/db", make_state())
    with pytest.raises(Forbidden):
        svc.admin.delete(ALICE, "prod/db")
    svc.writes.write(ALICE, "dev/db", make_state())
    svc.admin.set_protected(ALICE, "dev/db", True)
    with pytest.raises(Forbidden):
        svc.admin.delete(ALICE, "dev/db")
    svc.admin.set_protected(ALICE, "dev/db", False)
    svc.admin.delete(ALICE, "dev/db")


def test_retention_keeps_current_and_rules(store: Store, tmp_path: Path) -> None:
    svc, clock = make_service(
        store, tmp_path, retention=[RetentionRule(path="dev/**", keep_versions=2),
                             RetentionRule(path="old/**", keep_days=1)])
    for serial in range(1, 6):
        svc.writes.write(ALICE, "dev/a", make_state(serial=serial, lineage="l"))
        svc.writes.write(ALICE, "old/a", make_state(serial=serial, lineage="l"))
        svc.writes.write(ALICE, "keep/a", make_state(serial=serial, lineage="l"))
        clock.now += 3600
    clock.now += 86400 * 2
    svc.writes.rollback(ALICE, "old/a", 1)  # a fresh version (seq 6), now current
    report = svc.admin.run_maintenance(ALICE)
    assert [v.seq for v in svc.history.history(ALICE, "dev/a")] == [5, 4]
    assert [v.seq for v in svc.history.history(ALICE, "old/a")] == [6]
    assert len(svc.history.history(ALICE, "keep/a")) == 5
    assert report.versions_removed == 3 + 5
    assert report.orphans_removed == 0  # removed blobs were deleted, not orphaned
    assert svc.writes.read(ALICE, "dev/a") is not None


def test_deleted_paths_purged_after_grace(store: Store, tmp_path: Path) -> None:
    svc, clock = make_service(store, tmp_path, delete_grace_days=1, protected_paths=[])
    svc.writes.write(ALICE, "a/b", make_state())
    svc.admin.delete(ALICE, "a/b")
    assert svc.admin.run_maintenance(ALICE).paths_purged == 0
    clock.now += 86400 + 1
    assert svc.admin.run_maintenance(ALICE).paths_purged == 1
    assert svc.history.list_states(ALICE, include_deleted=True) == []


def test_list_states_with_lock_and_writer(service: StateService) -> None:
    service.writes.write(ALICE, "a/x", make_state(serial=4))
    service.writes.write(ALICE, "b/y", make_state())
    service.locks.lock(ALICE, "a/x", lock_body("L", who="carol@h"))
    rows = {r.path: r for r in service.history.list_states(ALICE)}
    assert rows["a/x"].serial == 4 and rows["a/x"].lock_who == "carol@h"
    assert rows["a/x"].last_writer == "alice" and rows["b/y"].lock_id is None
    assert [r.path for r in service.history.list_states(ALICE, prefix="a")] == ["a/x"]
    assert [r.path for r in service.history.list_states(ALICE, prefix="*/y")] == ["b/y"]


@embedded_only  # the file blob store's temp files: S3 puts are atomic, there are none
def test_maintenance_removes_partial_blob_writes(service: StateService,
                                                 settings: Settings) -> None:
    service.writes.write(ALICE, P, make_state())
    sub = next(p for p in settings.blob_dir.iterdir() if p.is_dir())
    partial = sub / f".{'ab' * 16}.tmp"
    partial.write_bytes(b"half a blob")
    assert service.admin.run_maintenance(ALICE).orphans_removed == 1
    assert not partial.exists() and service.writes.read(ALICE, P) is not None


def test_listings_sort_paths_bytewise_on_every_store(service: StateService) -> None:
    """Paths sort as bytes (SQLite's BINARY collation, PostgreSQL's "C"), whatever the
    database's locale: the test PostgreSQL databases default to ICU en-US, which would put
    ``a-b`` after ``ab`` and ``B`` next to ``b``."""
    paths = ["ab/x", "a-b/x", "a.b/x", "a/x", "a_b/x", "B/x", "b/x", "a/x/y", "a0/x"]
    for p in paths:
        service.writes.write(ALICE, p, make_state())
        service.locks.lock(ALICE, p, lock_body(f"L-{p}"))
    assert [s.path for s in service.history.list_states(ALICE)] == sorted(paths)
    assert [lock.path for lock in service.locks.list_locks(ALICE)] == sorted(paths)


def test_longest_principal_names_are_stored_on_every_store(service: StateService) -> None:
    """An OIDC identity's name (``oidc:<host>:<sub>``) can reach 515 characters: SQLite never
    enforced the declared 256, and PostgreSQL must not refuse it either."""
    who = Principal("oidc:" + "h" * 253 + ":" + "s" * 256, roles=("admin",))
    assert len(who.name) == 515
    service.writes.write(who, P, make_state(serial=1, lineage="lin"))
    service.locks.lock(who, P, lock_body("L"))
    service.locks.break_lock(who, P)
    service.tokens.create_token(who, "long-creator", ["reader"])
    service.admin.delete(who, P)
    assert service.history.history(ALICE, P)[0].author == who.name
    assert service.admin.events(ALICE, P)[0].principal == who.name
    assert service.tokens.list_tokens(ALICE)[0].created_by == who.name
    assert service.history.list_states(ALICE, include_deleted=True)[0].deleted_at is not None
