"""A hypothesis state machine driving StateService against a small model of one state path.

The model predicts every outcome (accepted, identical re-send, or the exact refusal), and the
invariants check that the service agrees with it after every step: current body, version
history, lock holder, deletion and protection. On top of the model:

- a refused operation (``ServiceError``) changes nothing at all;
- at most one lock holder exists, and a lock conflict names the holder with its own bytes;
- stored versions are immutable (a version's body never changes once written);
- the current serial of a lineage only grows, except through the modelled exemptions
  (rollback, admin override, the first write after a delete or to an empty path).

It runs once per metadata store (SQLite, PostgreSQL), each run on a fresh database.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from stateward.domain.errors import Conflict, Forbidden, Locked, NotFound, ServiceError
from stateward.domain.principal import Principal
from stateward.service.factory import build_service
from tests.harness.pg import Store
from tests.harness.support import lock_body, make_state, tofu_force_unlock_body

WHO = Principal("machine", roles=("admin",))
PATH = "team/app/prod"
NEIGHBOUR = "team/app/dev"  # never touched by the rules: must stay exactly as seeded

CLIENTS = st.sampled_from(["L1", "L2", "L3"])
MAYBE_CLIENT = st.one_of(st.none(), CLIENTS)
SERIALS = st.integers(min_value=0, max_value=6)
LINEAGES = st.sampled_from(["lin-a", "lin-b"])
VARIANTS = st.integers(min_value=1, max_value=2)  # resources: same serial, different content

OK = "ok"  # the operation is accepted


def state_body(serial: int, lineage: str, variant: int) -> bytes:
    return make_state(serial=serial, lineage=lineage, resources=variant)


def summary(body: bytes) -> tuple[str, int]:
    doc = json.loads(body)
    return doc["lineage"], doc["serial"]


class ServiceMachine(RuleBasedStateMachine):
    #: The metadata store of every run (set per test: SQLite or PostgreSQL).
    store: Store

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="stateward-machine-")
        self.svc = build_service(
            self.store.settings(Path(self.tmp) / "data", orphan_min_age_seconds=0)
        )
        # -- the model of PATH
        self.versions: dict[int, bytes] = {}  # seq -> body, every version ever created
        self.current: int | None = None  # seq of the current version
        self.next_seq = 1
        self.exists = False  # a state row exists (written, protected or overridden once)
        self.deleted = False
        self.protected = False
        self.override = False
        self.holder: str | None = None
        self.holder_raw: bytes | None = None
        # -- serial monotonicity bookkeeping
        self.last_seen: tuple[str, int] | None = None
        self.exempt = False  # the last step may legitimately move the serial back
        self.neighbour: tuple[Any, ...] = ()

    def teardown(self) -> None:
        try:
            if self.neighbour:  # checked once per run: observing it every step is slow
                assert self.observe(NEIGHBOUR) == self.neighbour, "another path changed"
        finally:
            self.svc.engine.dispose()
            self.store.release(Path(self.tmp) / "data")  # a fresh database per run
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- observation ----------------------------------------------------------------------

    def observe(self, path: str = PATH) -> tuple[Any, ...]:
        cur = self.svc.writes.read(WHO, path)
        try:
            hist = tuple(
                (v.seq, v.serial, v.lineage, v.sha256, v.current, v.kind)
                for v in self.svc.history.history(WHO, path, limit=1000)
            )
        except NotFound:
            hist = ()
        listing = tuple(
            (s.path, s.seq, s.protected, s.deleted_at is not None, s.lock_id)
            for s in self.svc.history.list_states(WHO, include_deleted=True)
            if s.path == path
        )
        return (
            None if cur is None else (bytes(cur.body), cur.seq),
            hist,
            self.svc.locks.get_lock_info(WHO, path),
            listing,
        )

    def current_body(self) -> bytes | None:
        if self.current is None or self.deleted:
            return None
        return self.versions[self.current]

    def run(self, expected: type[ServiceError] | str, op: Any) -> Any:
        """Run ``op``; check it succeeds or fails exactly as the model says, and that a
        refusal changed nothing."""
        event(f"{op.__qualname__.split('.')[1]}: {getattr(expected, '__name__', expected)}")
        before = self.observe()
        try:
            result = op()
        except ServiceError as exc:
            assert isinstance(expected, type), f"refused unexpectedly: {exc!r}"
            assert type(exc) is expected, f"expected {expected.__name__}, got {exc!r}"
            assert "\n" not in str(exc)
            if isinstance(exc, Locked):
                assert exc.holder == self.holder_raw
            assert self.observe() == before, "a refused operation changed the state"
            return exc
        assert not isinstance(expected, type), f"expected {expected.__name__}, was accepted"
        return result

    def create(self, body: bytes) -> int:
        seq = self.next_seq
        self.versions[seq] = body
        self.current = seq
        self.next_seq += 1
        self.exists = True
        self.deleted = False
        self.override = False
        return seq

    # -- setup ----------------------------------------------------------------------------

    @initialize()
    def seed_neighbour(self) -> None:
        other = lock_body("N1", who="neighbour@host")
        self.svc.writes.write(WHO, NEIGHBOUR, state_body(3, "lin-n", 1))
        self.svc.locks.lock(WHO, NEIGHBOUR, other)
        self.neighbour = self.observe(NEIGHBOUR)

    # -- locks ----------------------------------------------------------------------------

    @rule(client=CLIENTS)
    def lock(self, client: str) -> None:
        body = lock_body(client, who=f"{client}@host")
        if self.holder is None or self.holder == client:
            expected: type[ServiceError] | str = OK
        else:
            expected = Locked
        out = self.run(expected, lambda: self.svc.locks.lock(WHO, PATH, body))
        if expected is OK:
            assert out.id == client
            if self.holder is None:
                self.holder, self.holder_raw = client, body

    @rule(client=CLIENTS, shape=st.sampled_from(["terraform", "tofu-1.10", "force", "force-ws"]))
    def unlock(self, client: str, shape: str) -> None:
        """A normal UNLOCK re-sends the LOCK body; OpenTofu >= 1.10 sends only the ID; a
        force-unlock from Terraform (and OpenTofu < 1.10) has no body at all."""
        body = {
            "terraform": lock_body(client, who=f"{client}@host"),
            "tofu-1.10": tofu_force_unlock_body(client),
            "force": b"",
            "force-ws": b" \r\n",
        }[shape]
        force = shape.startswith("force")
        expected: type[ServiceError] | str = (
            Locked if self.holder is not None and self.holder != client and not force else OK
        )
        self.run(expected, lambda: self.svc.locks.unlock(WHO, PATH, body))
        if expected is OK:
            self.holder = self.holder_raw = None

    # -- writes ---------------------------------------------------------------------------

    def expect_write(self, body: bytes, lock_id: str | None) -> type[ServiceError] | str:
        if self.holder is None and lock_id is not None:
            return Conflict  # the lock this writer thinks it holds is gone
        if self.holder is not None and lock_id != self.holder:
            return Conflict
        cur = self.current_body()
        if cur is None:
            return "create"
        if cur == body:
            return "noop"
        if self.override:
            return "create"
        (lineage, serial), (cur_lineage, cur_serial) = summary(body), summary(cur)
        if lineage != cur_lineage or serial <= cur_serial:
            return Conflict
        return "create"

    def do_write(self, body: bytes, lock_id: str | None) -> None:
        expected = self.expect_write(body, lock_id)
        bypass = self.current_body() is None or self.override
        out = self.run(expected, lambda: self.svc.writes.write(WHO, PATH, body, lock_id))
        if expected == "noop":
            assert not out.created and out.seq == self.current
        elif expected == "create":
            assert out.created and out.seq == self.next_seq
            assert out.serial == summary(body)[1]
            self.create(body)
            self.exempt = bypass

    @rule(serial=SERIALS, lineage=LINEAGES, variant=VARIANTS, lock_id=MAYBE_CLIENT)
    def write(self, serial: int, lineage: str, variant: int, lock_id: str | None) -> None:
        """Any writer: a random body from small pools, with or without a (right) lock ID."""
        self.do_write(state_body(serial, lineage, variant), lock_id)

    @rule(
        how=st.sampled_from(["next-serial", "resend", "resend-old", "random"]),
        serial=SERIALS,
        lineage=LINEAGES,
        variant=VARIANTS,
        index=st.integers(min_value=0, max_value=100),
    )
    def write_as_holder(
        self, how: str, serial: int, lineage: str, variant: int, index: int
    ) -> None:
        """A client that carries the ID of the lock it holds (none if unlocked).

        ``next-serial``: Terraform's apply (same lineage, serial + 1 or + 2). ``resend``: a
        retried POST, byte-identical to what is stored. ``resend-old``: a stale client
        re-sending something stored earlier. ``random``: any body from the pools.
        """
        cur = self.current_body()
        body = state_body(serial, lineage, variant)
        if how == "next-serial":
            cur_lineage, cur_serial = summary(cur) if cur is not None else ("lin-a", 0)
            body = state_body(cur_serial + 1 + index % 2, cur_lineage, variant)
        elif how == "resend" and cur is not None:
            body = cur
        elif how == "resend-old" and self.versions:
            seqs = sorted(self.versions)
            body = self.versions[seqs[index % len(seqs)]]
        self.do_write(body, self.holder)

    # -- delete, restore, protect, override -----------------------------------------------

    @rule()
    def delete(self) -> None:
        if not self.exists or self.deleted or self.current is None:
            expected: type[ServiceError] | str = NotFound
        elif self.protected:
            expected = Forbidden
        elif self.holder is not None:
            expected = Locked
        else:
            expected = OK
        self.run(expected, lambda: self.svc.admin.delete(WHO, PATH))
        if expected is OK:
            self.deleted = True

    @rule()
    def restore(self) -> None:
        expected = OK if self.exists and self.deleted else NotFound
        self.run(expected, lambda: self.svc.admin.restore(WHO, PATH))
        if expected is OK:
            self.deleted = False
            self.exempt = True

    @rule(flag=st.booleans())
    def protect(self, flag: bool) -> None:
        self.run(OK, lambda: self.svc.admin.set_protected(WHO, PATH, flag))
        self.exists = True
        self.protected = flag

    @rule()
    def allow_next_write(self) -> None:
        self.run(OK, lambda: self.svc.admin.allow_next_write(WHO, PATH))
        self.exists = True
        self.override = True

    # -- rollback -------------------------------------------------------------------------

    @rule(
        index=st.integers(min_value=0, max_value=100),
        lock_id=st.sampled_from(["holder", "none", "L1", "L2"]),
    )
    def rollback(self, index: int, lock_id: str) -> None:
        seqs = sorted(self.versions)
        missing = index % 8 == 7 or not seqs  # a version that does not exist
        seq = self.next_seq + 3 if missing else seqs[index % len(seqs)]
        lid = {"holder": self.holder, "none": None}.get(lock_id, lock_id)
        if not self.exists or seq not in self.versions:
            expected: type[ServiceError] | str = NotFound
        elif self.holder is not None and lid != self.holder:
            expected = Locked
        elif self.current_body() == self.versions[seq]:
            expected = "noop"
        else:
            expected = "create"
        out = self.run(expected, lambda: self.svc.writes.rollback(WHO, PATH, seq, lid))
        if expected == "noop":
            assert not out.created and out.seq == self.current
        elif expected == "create":
            assert out.created and out.seq == self.next_seq
            self.create(self.versions[seq])
            self.exempt = True

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def service_matches_model(self) -> None:
        body, hist, lock_raw, listing = self.observe()
        cur = self.current_body()
        assert (None if body is None else body[0]) == cur
        if cur is not None:
            assert body is not None and body[1] == self.current
        assert [h[0] for h in hist] == sorted(self.versions, reverse=True)
        assert [h[0] for h in hist if h[4]] == ([] if cur is None else [self.current])
        assert lock_raw == self.holder_raw
        if self.exists:
            ((_, seq, protected, deleted, lock_id),) = listing
            assert (protected, deleted, lock_id) == (self.protected, self.deleted, self.holder)
            assert seq == self.current
        else:
            assert listing == ()

    @invariant()
    def at_most_one_lock_holder(self) -> None:
        held = [lk for lk in self.svc.locks.list_locks(WHO) if lk.path == PATH]
        assert len(held) <= 1
        assert [lk.id for lk in held] == ([] if self.holder is None else [self.holder])

    @invariant()
    def versions_are_immutable(self) -> None:
        for seq, body in self.versions.items():
            view, stored = self.svc.history.get_version_body(WHO, PATH, seq)
            assert bytes(stored) == body
            assert (view.lineage, view.serial) == summary(body)

    @invariant()
    def serial_only_grows_within_a_lineage(self) -> None:
        stored = self.svc.writes.read(WHO, PATH)
        now = None if stored is None else summary(bytes(stored.body))
        if now is not None and self.last_seen is not None and not self.exempt:
            assert now[0] == self.last_seen[0], "lineage changed without an override"
            assert now[1] >= self.last_seen[1], "serial went back without a rollback"
        if now is not None:
            self.last_seen = now
        self.exempt = False


def test_service_machine(store: Store) -> None:
    """The machine on each store (a fresh database, or data dir, per run)."""
    machine = type("ServiceMachine", (ServiceMachine,), {"store": store})
    run_state_machine_as_test(
        machine, settings=settings(max_examples=40, stateful_step_count=25, deadline=None)
    )
