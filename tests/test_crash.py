"""Crash safety: SIGKILL a real server in the middle of a write stream, restart it on the same
data directory, and check that nothing acknowledged is lost and nothing stored is torn.

Both stores: the embedded one, and PostgreSQL + S3 (the server's database and bucket outlive
it there; only the process dies). The invariant under test (docs/architecture.md,
"Invariants"): the blob is written first (temp file, fsync, rename, fsync the directory; or one S3
PUT), then the metadata transaction that points at
it commits, and only then does the client get its 200. So a write acknowledged before the kill
must survive it, a write in flight at the kill may or may not be stored but is never torn, and
a crash between the two steps leaves at most an orphan blob, which maintenance collects.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from stateward.config import Settings
from stateward.domain.principal import Principal
from stateward.service.core import StateService
from stateward.storage.blobs import FileBlobStore
from tests.harness.pg import Store
from tests.harness.support import ServerProcess, lock_body, make_state, md5_b64

ROUNDS = 12
WRITERS = 3
KILL_AFTER = (0.05, 1.0)  # seconds of write traffic before the SIGKILL, uniformly drawn
ALICE = Principal("alice", roles=("admin",))


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def blob_files(store: Store, data_dir: Path) -> set[str]:
    """Committed-name blobs (32 hex characters) of the data directory's blob store: files, or
    objects in its bucket."""
    return store.blob_keys(data_dir)


@dataclass
class Writer:
    """One client on its own state path, remembering everything it sent and was told."""

    path: str
    rng: random.Random
    lineage: str = field(default_factory=lambda: str(uuid.uuid4()))
    next_serial: int = 1
    acked_serial: int | None = None
    acked_body: bytes | None = None
    acked_serials: set[int] = field(default_factory=set)
    current_body: bytes | None = None  # what this client last knew to be the current state
    sent: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # sha256 -> (serial, body)
    pending_lock: bytes | None = None  # LockInfo sent and not (known to be) released
    verified_seq: int = 0  # versions up to this seq were downloaded and checked
    errors: list[str] = field(default_factory=list)
    acked_writes: int = 0
    lock_cycles: int = 0

    # -- traffic (runs in its own thread until the server dies) ---------------------------

    def run(self, base_url: str, stop: threading.Event) -> None:
        try:
            with httpx.Client(base_url=base_url, timeout=10) as client:
                while not stop.is_set():
                    self._step(client)
        except httpx.TransportError:
            return  # the server was killed under us: the expected way out
        except Exception as exc:  # reported by the test, never as an unhandled thread error
            self.errors.append(f"{self.path}: {exc!r}")

    def _step(self, client: httpx.Client) -> None:
        r = self.rng.random()
        if r < 0.25:
            self._locked_cycle(client)
        elif r < 0.35:
            self.check_current(client, live=True)
        elif r < 0.40 and self.current_body is not None:
            # An identical re-send of the current state (a retried POST) succeeds and creates
            # nothing.
            body = self.current_body
            self._post(client, body, self.sent[sha256(body)][0], None)
        else:
            self._post_new(client, None)

    def _post_new(self, client: httpx.Client, lock_id: str | None) -> None:
        serial = self.next_serial
        self.next_serial += 1
        body = make_state(
            serial,
            self.lineage,
            resources=self.rng.randint(1, 4),
            pad=self.rng.choice([0, 64, 4096, 65536]),
        )
        self.sent[sha256(body)] = (serial, body)  # before sending: it may be stored unacked
        self._post(client, body, serial, lock_id)

    def _post(self, client: httpx.Client, body: bytes, serial: int, lock_id: str | None) -> None:
        resp = client.post(
            f"/state/{self.path}",
            content=body,
            params={"ID": lock_id} if lock_id else None,
            headers={"Content-MD5": md5_b64(body), "Content-Type": "application/json"},
        )
        if resp.status_code != 200:
            raise AssertionError(f"POST serial {serial}: {resp.status_code} {resp.text!r}")
        self.acked_serial, self.acked_body = serial, body
        self.current_body = body
        self.acked_serials.add(serial)
        self.acked_writes += 1

    def _locked_cycle(self, client: httpx.Client) -> None:
        lock_id = str(uuid.uuid4())
        info = lock_body(lock_id, who=f"crash@{self.path}")
        self.pending_lock = info
        resp = client.request("LOCK", f"/state/{self.path}", content=info)
        if resp.status_code != 200:
            raise AssertionError(f"LOCK: {resp.status_code} {resp.text!r}")
        for _ in range(self.rng.randint(1, 3)):
            self._post_new(client, lock_id)
        resp = client.request("UNLOCK", f"/state/{self.path}", content=info)
        if resp.status_code != 200:
            raise AssertionError(f"UNLOCK: {resp.status_code} {resp.text!r}")
        self.pending_lock = None
        self.lock_cycles += 1

    # -- checks ---------------------------------------------------------------------------

    def check_current(self, client: httpx.Client, live: bool = False) -> str | None:
        """GET the state: acknowledged writes are there, and the body is one we sent, whole.

        Returns the sha256 of the current body (None if there is no state yet)."""
        acked_serial, acked_body = self.acked_serial, self.acked_body
        resp = client.get(f"/state/{self.path}")
        if resp.status_code == 404 and acked_serial is None:
            return None
        assert resp.status_code == 200, (
            f"{self.path}: GET {resp.status_code} {resp.text!r}, last acked serial "
            f"{acked_serial} (live={live})"
        )
        body = resp.content
        digest = sha256(body)
        assert digest in self.sent, f"{self.path}: GET returned a body this client never sent"
        doc = json.loads(body)  # never torn: parses, and is byte-identical to a sent body
        serial, _ = self.sent[digest]
        assert doc["serial"] == serial and doc["lineage"] == self.lineage
        assert resp.headers["content-md5"] == md5_b64(body)
        if acked_serial is not None:
            assert serial >= acked_serial, (
                f"{self.path}: acknowledged serial {acked_serial} lost, GET has {serial}"
            )
            if serial == acked_serial:
                assert body == acked_body
        return digest

    def history(self, client: httpx.Client) -> list[dict[str, Any]]:
        """All versions, oldest first (paging with ``before`` past 1000)."""
        out: list[dict[str, Any]] = []
        before: int | None = None
        while True:
            params: dict[str, Any] = {"path": self.path, "limit": 1000}
            if before is not None:
                params["before"] = before
            resp = client.get("/api/v1/versions", params=params)
            if resp.status_code == 404 and not out and self.acked_serial is None:
                return []
            assert resp.status_code == 200, f"{self.path}: versions {resp.status_code}"
            page = resp.json()
            out.extend(page)
            if len(page) < 1000:
                break
            before = page[-1]["seq"]
        out.reverse()
        return out

    def check_history(self, client: httpx.Client, current_sha: str | None) -> list[dict[str, Any]]:
        versions = self.history(client)
        seqs = [v["seq"] for v in versions]
        serials = [v["serial"] for v in versions]
        assert all(a < b for a, b in itertools.pairwise(seqs)), f"{self.path}: {seqs}"
        # Non-decreasing is the protocol's promise; the serial guards make it strict here.
        assert all(a < b for a, b in itertools.pairwise(serials)), f"{self.path}: serials {serials}"
        for v in versions:
            assert v["sha256"] in self.sent, f"{self.path}: version {v['seq']} was never sent"
            serial, body = self.sent[v["sha256"]]
            assert v["serial"] == serial and v["lineage"] == self.lineage
            assert v["size"] == len(body)
        missing = self.acked_serials - set(serials)
        assert not missing, f"{self.path}: acknowledged serials {sorted(missing)} not in history"
        current = [v for v in versions if v["current"]]
        if current_sha is None:
            assert not versions
        else:
            assert len(current) == 1 and current[0] is versions[-1]
            assert current[0]["sha256"] == current_sha
        return versions

    def check_downloads(self, client: httpx.Client, versions: list[dict[str, Any]]) -> int:
        """Download each version newer than the last checked one; return how many."""
        n = 0
        for v in versions:
            if v["seq"] <= self.verified_seq:
                continue
            resp = client.get(
                "/api/v1/version", params={"path": self.path, "seq": v["seq"], "download": True}
            )
            assert resp.status_code == 200, f"{self.path} seq {v['seq']}: {resp.status_code}"
            assert sha256(resp.content) == v["sha256"]
            assert resp.content == self.sent[v["sha256"]][1]
            json.loads(resp.content)
            n += 1
        if versions:
            self.verified_seq = versions[-1]["seq"]
        return n

    def recover_lock(self, client: httpx.Client) -> None:
        """A LOCK in flight at the kill may have been stored: release it with its own ID."""
        if self.pending_lock is not None:
            resp = client.request("UNLOCK", f"/state/{self.path}", content=self.pending_lock)
            assert resp.status_code == 200, f"{self.path}: UNLOCK {resp.status_code}"
            self.pending_lock = None
        assert client.get(f"/state/{self.path}/lock").status_code == 404

    def verify(self, client: httpx.Client) -> None:
        current_sha = self.check_current(client)
        # A write in flight at the kill may have been stored: the next writes follow it.
        self.current_body = None if current_sha is None else self.sent[current_sha][1]
        versions = self.check_history(client, current_sha)
        self.check_downloads(client, versions)
        self.recover_lock(client)


def server_log(srv: ServerProcess) -> str:
    if srv.log_path is None or not srv.log_path.exists():
        return ""
    return srv.log_path.read_text(errors="replace")[-4000:]


def verify_all(srv: ServerProcess, writers: list[Writer], ctx: str) -> None:
    """After a restart: every path checked, the store ready, online maintenance harmless."""
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            for w in writers:
                w.verify(client)
            resp = client.post("/api/v1/maintenance")
            assert resp.status_code == 200, resp.text
            assert resp.json()["versions_removed"] == 0
    except AssertionError as exc:
        raise AssertionError(f"{ctx} (after restart): {exc}\n{server_log(srv)}") from exc


@pytest.mark.slow
def test_sigkill_during_writes_loses_nothing_acknowledged(tmp_path: Path, store: Store) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    writers = [Writer(f"crash/app{i}/env", random.Random(rng.random())) for i in range(WRITERS)]
    srv: ServerProcess | None = None
    kills = 0
    try:
        for round_no in range(ROUNDS):
            srv = ServerProcess(data_dir, store=store).start()
            ctx = f"seed={seed} round={round_no}"
            if round_no:
                verify_all(srv, writers, ctx)
            stop = threading.Event()
            threads = [
                threading.Thread(target=w.run, args=(srv.url, stop), name=w.path) for w in writers
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(*KILL_AFTER))
            assert srv.proc is not None and srv.proc.poll() is None, (
                f"{ctx}: server died on its own\n{server_log(srv)}"
            )
            srv.kill()
            kills += 1
            stop.set()
            for t in threads:
                t.join(timeout=30)
            assert not any(t.is_alive() for t in threads), f"{ctx}: a client thread hangs"
            errors = [e for w in writers for e in w.errors]
            assert not errors, f"{ctx}: {errors}\n{server_log(srv)}"
            srv = None

        # Restart once more and check the aftermath of the last kill.
        srv = ServerProcess(data_dir, store=store).start()
        verify_all(srv, writers, f"seed={seed} final")
        srv.kill()
        srv = None

        # Offline gc collecting every orphan (in-flight writes left some): nothing referenced
        # may go, everything unreferenced must.
        before = len(blob_files(store, data_dir))
        # puts cut off by a kill (file store only: an S3 PUT is stored whole or not at all)
        partial = list((data_dir / "blobs").glob("*/.*.tmp"))
        gc = ServerProcess(data_dir, store=store).cli(
            "gc", check=False, env={"STATEWARD_ORPHAN_MIN_AGE_SECONDS": "0"}
        )
        assert gc.returncode == 0, gc.stderr
        report = json.loads(gc.stdout)
        assert report["versions_removed"] == 0 and report["paths_purged"] == 0

        srv = ServerProcess(data_dir, store=store).start()
        total_versions = 0
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            for w in writers:
                current_sha = w.check_current(client)
                versions = w.check_history(client, current_sha)
                w.verified_seq = 0  # download every version again, after gc
                assert w.check_downloads(client, versions) == len(versions)
                total_versions += len(versions)
        assert report["orphans_removed"] == before - total_versions + len(partial)
        assert len(blob_files(store, data_dir)) == total_versions
        assert not list((data_dir / "blobs").glob("*/.*.tmp"))
    finally:
        if srv is not None:
            srv.kill()

    acked = sum(w.acked_writes for w in writers)
    assert kills == ROUNDS
    assert acked > ROUNDS, f"seed={seed}: too little traffic to mean anything ({acked} acks)"
    assert sum(w.lock_cycles for w in writers) > 0


def test_crash_between_blob_and_commit_leaves_collectable_orphan(
    service: StateService, settings: Settings, store: Store
) -> None:
    path = "team/app/prod"
    body = make_state(serial=1, lineage="lin")
    assert service.writes.write(ALICE, path, body).created
    committed = blob_files(store, settings.data_dir)
    assert len(committed) == 1

    # The first half of a write: the blob is durably stored, then the process dies before
    # the metadata transaction that would point at it.
    orphan = uuid.uuid4().hex
    service.barrier.store(path, orphan, make_state(serial=2, lineage="lin"))
    assert blob_files(store, settings.data_dir) == committed | {orphan}

    # Readers never see it: the current state is still the committed one.
    current = service.writes.read(ALICE, path)
    assert current is not None and current.body == body and current.serial == 1
    assert [v.seq for v in service.history.history(ALICE, path)] == [1]

    report = service.admin.run_maintenance(ALICE)
    assert report.orphans_removed == 1 and report.versions_removed == 0
    assert blob_files(store, settings.data_dir) == committed
    current = service.writes.read(ALICE, path)
    assert current is not None and current.body == body
    _, stored = service.history.get_version_body(ALICE, path, 1)
    assert stored == body
    assert service.admin.run_maintenance(ALICE).orphans_removed == 0


def test_file_blob_store_put_is_whole_and_leaves_no_temp_file(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    data = {uuid.uuid4().hex: os.urandom(n) for n in (0, 1, 4096, 1 << 20)}
    for key, value in data.items():
        store.put(key, value)
    key = next(iter(data))
    data[key] = b"replaced"
    store.put(key, data[key])  # overwriting goes through the same temp-and-rename

    files = sorted(p for p in (tmp_path / "blobs").rglob("*") if p.is_file())
    assert sorted(p.name for p in files) == sorted(data)
    assert not [p for p in files if p.name.endswith(".tmp") or p.name.startswith(".")]
    for key, value in data.items():
        assert store.get(key) == value
        assert (tmp_path / "blobs" / key[:2] / key).stat().st_mode & 0o777 == 0o600
    assert sorted(k for k, _ in store.list()) == sorted(data)
