"""Scale-out: three real ``stateward serve`` replicas on one PostgreSQL database and one S3
bucket (moto in server mode), as behind a load balancer.

Each replica has a data directory of its own and they share one configuration: the
``database_url``, the ``[blob_store]``, the ``token_key_file`` and the default key provider's
key file (both outside every data directory). What one replica does, the others see: a lock,
a write, a token; what a dead replica left behind (a lock, an uncommitted blob) the others can
deal with; a background job runs on one replica at a time (leases) and moves when it dies.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_terraform import Client, combined, http_backend, init, tf, write_config
from tests.harness.aws import REGION, aws_test_env, s3_client
from tests.harness.pg import PgCluster, _drop_bucket
from tests.harness.support import ServerProcess, lock_body, make_state, md5_b64, terraform_env

REPLICAS = 3


@dataclass
class Replicas:
    """Three (or ``n``) replicas sharing one store; ``servers[i]`` is replica i."""

    root: Path
    database_url: str
    bucket: str
    s3_url: str
    extra: str = ""
    per_replica: Callable[[int], str] = lambda _i: ""
    servers: list[ServerProcess] = field(default_factory=list)

    def config(self, i: int) -> Path:
        keys = self.root / "keys"  # outside every data directory, the same for all
        keys.mkdir(mode=0o700, exist_ok=True)
        cfg = self.root / f"replica{i}.toml"
        cfg.write_text(
            f'database_url = "{self.database_url}"\n'
            f'token_key_file = "{keys / "token.key"}"\n'
            f"{self.extra}\n{self.per_replica(i)}\n"
            f'[blob_store]\ntype = "s3"\nbucket = "{self.bucket}"\n'
            f'endpoint_url = "{self.s3_url}"\nregion = "{REGION}"\n'
            f'[key_providers.default]\ntype = "keyfile"\npath = "{keys / "master.key"}"\n'
            "create = true\n"
        )
        return cfg

    def start(self, n: int = REPLICAS) -> list[ServerProcess]:
        """Start ``n`` replicas at once (their first starts race each other)."""
        env = aws_test_env(self.root)
        self.servers = [
            ServerProcess(self.root / f"data{i}", config=self.config(i), env=env) for i in range(n)
        ]
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda s: s.start(timeout=60), self.servers))
        token = self.servers[0].token  # one admin token for all: the store is one
        for srv in self.servers:
            srv.token = token
        return self.servers

    def stop(self) -> None:
        for srv in self.servers:
            srv.stop()

    def sql(self, statement: str) -> list[Any]:
        import psycopg

        with psycopg.connect(self.database_url.replace("+psycopg", ""), autocommit=True) as c:
            cur = c.execute(statement.encode())
            return [tuple(r) for r in cur.fetchall()] if cur.description else []

    def objects(self) -> dict[str, bytes]:
        client = s3_client(self.s3_url)
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                body = client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                out[obj["Key"].rsplit("/", 1)[-1]] = body
        return out


@pytest.fixture
def cluster(
    tmp_path: Path, pg_cluster: PgCluster, s3_url: str
) -> Iterator[Callable[..., Replicas]]:
    """``cluster(extra_toml, per_replica)``: a fresh database and bucket, not started yet."""
    made: list[Replicas] = []

    def make(extra: str = "", per_replica: Callable[[int], str] = lambda _i: "") -> Replicas:
        bucket = f"sw-{uuid.uuid4().hex[:16]}"
        s3_client(s3_url).create_bucket(Bucket=bucket)
        url = pg_cluster.create_database()
        r = Replicas(tmp_path / f"c{len(made)}", url, bucket, s3_url, extra, per_replica)
        r.root.mkdir()
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()
        pg_cluster.drop_database(r.database_url)
        _drop_bucket(s3_client(s3_url), r.bucket)


@pytest.fixture
def replicas(cluster: Callable[..., Replicas]) -> list[ServerProcess]:
    return cluster().start()


def post(srv: ServerProcess, path: str, body: bytes, lock_id: str | None = None) -> httpx.Response:
    return httpx.post(
        srv.state_url(path),
        content=body,
        params={"ID": lock_id} if lock_id else None,
        headers={"Content-MD5": md5_b64(body)},
        timeout=30,
    )


def versions(srv: ServerProcess, path: str) -> list[dict[str, Any]]:
    """The path's versions, without ``secrets`` (the background scanner fills it in at any
    moment: it says nothing about the versions themselves)."""
    r = httpx.get(f"{srv.url}/api/v1/versions", params={"path": path}, timeout=30)
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return [{k: v for k, v in row.items() if k != "secrets"} for row in rows]


def download(srv: ServerProcess, path: str, seq: int) -> httpx.Response:
    params = {"path": path, "seq": seq, "download": True}
    return httpx.get(f"{srv.url}/api/v1/version", params=params, timeout=30)


def audit_records(srv: ServerProcess) -> list[dict[str, Any]]:
    out = srv.cli("audit", "export").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# -- start-up ---------------------------------------------------------------------------------


def test_three_replicas_starting_at_once_make_one_initial_admin_token(
    replicas: list[ServerProcess],
) -> None:
    printed = [s for s in replicas if s._initial_token() is not None]
    assert len(printed) == 1, "exactly one replica creates and prints the initial admin token"
    rows = json.loads(replicas[1].cli("token", "list", "--json").stdout)
    assert [t["name"] for t in rows if t["name"] == "initial-admin"] == ["initial-admin"]
    for srv in replicas:  # the token of one replica is valid on every replica
        assert httpx.get(f"{srv.url}/api/v1/states", timeout=10).status_code == 200


# -- locks and writes across replicas ---------------------------------------------------------


def test_lock_through_one_replica_is_refused_through_the_others(
    replicas: list[ServerProcess],
) -> None:
    a, b, c = replicas
    path = "replicas/lock/prod"
    info = lock_body("L-from-a", who="alice@a")
    assert httpx.request("LOCK", a.state_url(path), content=info).status_code == 200
    for other in (b, c):
        r = httpx.request("LOCK", other.state_url(path), content=lock_body("L-other"))
        assert r.status_code == 423, r.text
        assert r.content == info  # the holder's LockInfo, verbatim
        body = make_state(serial=1, lineage="lin-r")
        assert post(other, path, body).status_code == 409  # written without the lock ID
        held = httpx.get(other.state_url(path) + "/lock", timeout=10)
        assert held.status_code == 200 and held.json()["ID"] == "L-from-a"
    assert httpx.request("UNLOCK", a.state_url(path), content=info).status_code == 200
    assert httpx.get(c.state_url(path) + "/lock", timeout=10).status_code == 404

    body = make_state(serial=7, lineage="lin-r", pad=10_000)
    assert post(b, path, body).status_code == 200
    for reader in (c, a):
        r = httpx.get(reader.state_url(path), timeout=30)
        assert r.status_code == 200 and r.content == body
        (v,) = versions(reader, path)
        assert v["serial"] == 7 and v["current"]


# -- real Terraform, concurrently through three replicas --------------------------------------


@pytest.mark.terraform
def test_concurrent_terraform_applies_through_three_replicas(
    replicas: list[ServerProcess], tmp_path: Path, tf_binaries: dict[str, str]
) -> None:
    """Three workdirs on one state path, each through another replica, apply at the same time
    with ``-lock-timeout=60s``: they take turns (one lock holder at a time) and no update is
    lost: every apply's version is in the history, serials one after another."""
    path = "replicas/tf/prod"
    token = replicas[0].token
    clients = []
    for i, srv in enumerate(replicas):
        home = tmp_path / f"home{i}"
        home.mkdir()
        client = Client("1.11", tf_binaries["1.11"], terraform_env(home))
        work = write_config(tmp_path / f"w{i}", client, http_backend(srv, path))
        init(client, work)
        clients.append((client, work))
    assert token is not None
    values = [f"apply-{i}" for i in range(len(replicas))]
    start = threading.Barrier(len(clients))

    def run(i: int) -> str:
        client, work = clients[i]
        start.wait()
        r = tf(client, work, "apply", "-input=false", "-no-color", "-auto-approve",
               "-lock-timeout=60s", f"-var=v={values[i]}", ok=None)  # fmt: skip
        assert r.returncode == 0, combined(r)[-4000:]
        return combined(r)

    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(run, range(len(clients))))

    history = list(reversed(versions(replicas[1], path)))
    serials = [v["serial"] for v in history]
    assert serials == list(range(serials[0], serials[0] + len(serials))), serials
    assert len({v["lineage"] for v in history}) == 1
    applied = []
    for v in history:  # the value each version was written with
        r = download(replicas[2], path, v["seq"])
        assert r.status_code == 200
        applied.append(json.loads(r.content)["outputs"]["name"]["value"])
    assert sorted(set(applied)) == sorted(values), applied  # every apply landed
    final = httpx.get(replicas[0].state_url(path), timeout=30).json()
    assert final["serial"] == serials[-1] and final["outputs"]["name"]["value"] == applied[-1]
    assert httpx.get(replicas[0].state_url(path) + "/lock", timeout=10).status_code == 404

    # one holder at a time: granted LOCKs and UNLOCKs of the path alternate in the audit trail
    trail = [
        rec["action"]
        for rec in audit_records(replicas[0])
        if rec.get("path") == path
        and rec.get("action") in ("lock", "unlock")
        and rec.get("outcome") == "ok"
    ]
    assert trail == ["lock", "unlock"] * len(replicas), trail


# -- lock contention ---------------------------------------------------------------------------

CLIENTS = 24
ROUNDS = 30


def test_lock_contention_stress_never_double_grants(replicas: list[ServerProcess]) -> None:
    """24 clients x 30 rounds, round-robin over the replicas: LOCK with a unique ID; if granted,
    write with that ID and UNLOCK. A grant while another client holds the lock is a failure;
    every granted client's write lands (the serials form an unbroken sequence)."""
    path = "replicas/stress/prod"
    lineage = str(uuid.uuid4())
    holder_lock = threading.Lock()
    holders: list[str] = []
    double: list[str] = []
    writes: list[int] = []
    serial = itertools.count(1)
    errors: list[str] = []

    def client(n: int) -> None:
        with httpx.Client(timeout=30) as http:
            for rnd in range(ROUNDS):
                srv = replicas[(n + rnd) % len(replicas)]
                lock_id = f"c{n}-r{rnd}-{uuid.uuid4().hex[:6]}"
                info = lock_body(lock_id, who=f"client{n}")
                r = http.request("LOCK", srv.state_url(path), content=info)
                if r.status_code == 423:
                    continue
                if r.status_code != 200:
                    errors.append(f"LOCK {r.status_code} {r.text}")
                    continue
                with holder_lock:
                    if holders:
                        double.append(f"{lock_id} granted while {holders} held it")
                    holders.append(lock_id)
                    s = next(serial)  # serials are handed out under the (test's) lock
                body = make_state(serial=s, lineage=lineage)
                w = http.post(srv.state_url(path), content=body, params={"ID": lock_id},
                              headers={"Content-MD5": md5_b64(body)})  # fmt: skip
                if w.status_code == 200:
                    with holder_lock:
                        writes.append(s)
                else:
                    errors.append(f"write {s} with {lock_id}: {w.status_code} {w.text}")
                with holder_lock:
                    holders.remove(lock_id)
                u = http.request("UNLOCK", srv.state_url(path), content=info)
                if u.status_code != 200:
                    errors.append(f"UNLOCK {lock_id}: {u.status_code} {u.text}")

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    assert not double, double[:5]
    assert not errors, errors[:5]
    assert len(writes) >= 10, f"too few grants to mean anything ({len(writes)})"
    history = list(reversed(versions(replicas[0], path)))
    assert [v["serial"] for v in history] == sorted(writes) == list(range(1, len(writes) + 1))
    verify = replicas[2].cli("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


# -- a replica dies in the middle of a write -------------------------------------------------


def _slow_post(srv: ServerProcess, path: str, body: bytes, lock_id: str, sent: threading.Event,
               stop: threading.Event) -> None:  # fmt: skip
    """POST ``body`` over a raw socket, a chunk at a time with pauses, until ``stop``."""
    head = (
        f"POST /state/{path}?ID={lock_id} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
        f"Authorization: Basic {_basic(srv)}\r\nContent-Type: application/json\r\n"
        f"Content-MD5: {md5_b64(body)}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
            sock.sendall(head)
            for i in range(0, len(body) - 1, 64 * 1024):  # never the last byte
                sock.sendall(body[i : i + 64 * 1024])
                sent.set()
                if stop.wait(0.05):
                    return
    except OSError:
        return  # the replica was killed under us: the expected way out


def _basic(srv: ServerProcess) -> str:
    import base64

    return base64.b64encode(f"admin:{srv.token}".encode()).decode()


def test_replica_killed_mid_write_leaves_nothing_half_done(
    cluster: Callable[..., Replicas],
) -> None:
    rs = cluster()
    a, b, c = rs.start()
    path = "replicas/killed/prod"
    lineage = str(uuid.uuid4())
    assert post(b, path, make_state(serial=1, lineage=lineage)).status_code == 200
    info = lock_body("L-dying", who="ci@a")
    assert httpx.request("LOCK", a.state_url(path), content=info).status_code == 200
    before_versions = versions(c, path)
    before_objects = set(rs.objects())

    big = make_state(serial=2, lineage=lineage, resources=40, pad=100_000)  # ~4 MB
    sent, stop = threading.Event(), threading.Event()
    upload = threading.Thread(target=_slow_post, args=(a, path, big, "L-dying", sent, stop))
    upload.start()
    assert sent.wait(30), "the upload did not start"
    time.sleep(0.3)
    a.kill()  # SIGKILL while the body is still arriving
    stop.set()
    upload.join(30)
    assert not upload.is_alive()

    # nothing new: no version, the current state unchanged, no metadata without its blob
    assert versions(b, path) == before_versions
    assert httpx.get(c.state_url(path), timeout=30).json()["serial"] == 1
    referenced = {k for (k,) in rs.sql("SELECT blob_key FROM versions")}
    assert referenced <= set(rs.objects()), "a version points at a missing blob"
    assert rs.sql(
        "SELECT count(*) FROM blob_keys WHERE blob_key NOT IN (SELECT blob_key FROM versions)"
    ) == [(0,)]
    # the dead replica's client still holds the lock, which B honours and can release
    held = httpx.get(b.state_url(path) + "/lock", timeout=10)
    assert held.status_code == 200 and held.json()["ID"] == "L-dying"
    assert post(b, path, make_state(serial=2, lineage=lineage)).status_code == 409
    assert httpx.request("UNLOCK", b.state_url(path), content=info).status_code == 200
    assert post(b, path, make_state(serial=2, lineage=lineage)).status_code == 200

    # a blob uploaded by a replica that died before committing (as if A had got that far)
    orphan = uuid.uuid4().hex
    s3_client(rs.s3_url).put_object(
        Bucket=rs.bucket, Key=f"stateward/{orphan[:2]}/{orphan}", Body=b"uncommitted"
    )
    leftovers = set(rs.objects()) - before_objects - {k for (k,) in rs.sql(
        "SELECT blob_key FROM versions")}  # fmt: skip
    assert orphan in leftovers
    verify = b.cli("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    gc = c.cli("gc", env={"STATEWARD_ORPHAN_MIN_AGE_SECONDS": "0"})
    report = json.loads(gc.stdout)
    assert report["orphans_removed"] == len(leftovers) and report["versions_removed"] == 0
    remaining = set(rs.objects())
    assert not remaining & leftovers
    assert remaining == {k for (k,) in rs.sql("SELECT blob_key FROM versions")}
    for v in versions(c, path):  # every version still reads, through any replica
        r = download(b, path, v["seq"])
        assert r.status_code == 200


# -- background jobs: one replica at a time (leases) ----------------------------------------

LEASE_TTL = 5.0


def _shipped(sinks: list[Path]) -> list[list[int]]:
    out = []
    for sink in sinks:
        seqs = []
        if sink.exists():
            for line in sink.read_text().splitlines():
                if line.strip():
                    seqs.append(int(json.loads(line)["seq"]))
        out.append(seqs)
    return out


def _wait(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def test_audit_sink_runs_on_one_replica_and_moves_when_it_dies(
    cluster: Callable[..., Replicas], tmp_path: Path
) -> None:
    """Depends on the job leases (storage/leases.py, ``job_lease_seconds``): the audit sink
    follower runs only on the replica holding the ``audit-sinks`` lease."""
    sinks = [tmp_path / f"sink{i}.jsonl" for i in range(REPLICAS)]
    rs = cluster(
        extra=f"job_lease_seconds = {LEASE_TTL}\naudit_follow_interval_seconds = 0.2\n",
        per_replica=lambda i: f'[[audit_sinks]]\ntype = "file"\npath = "{sinks[i]}"\n',
    )
    servers = rs.start()
    path = "replicas/sinks/prod"
    lineage = str(uuid.uuid4())
    for serial in range(1, 4):
        assert (
            post(servers[serial % REPLICAS], path, make_state(serial, lineage)).status_code == 200
        )

    def total() -> int:
        return int(rs.sql("SELECT count(*) FROM audit")[0][0])

    assert _wait(lambda: sum(map(len, _shipped(sinks))) >= total(), 3 * LEASE_TTL), _shipped(sinks)
    time.sleep(1.0)  # the follower's cursor settles
    shipped = _shipped(sinks)
    leaders = [i for i, seqs in enumerate(shipped) if seqs]
    assert len(leaders) == 1, f"records shipped by replicas {leaders}"
    everything = [s for seqs in shipped for s in seqs]
    assert len(everything) == len(set(everything)), "a record was shipped twice"

    leader = leaders[0]
    servers[leader].kill()
    killed_at = time.monotonic()
    survivor = servers[(leader + 1) % REPLICAS]
    for serial in range(4, 7):
        assert post(survivor, path, make_state(serial, lineage)).status_code == 200
    assert _wait(lambda: sum(map(len, _shipped(sinks))) >= total(), 4 * LEASE_TTL), _shipped(sinks)
    took_over = time.monotonic() - killed_at
    assert took_over < 3 * LEASE_TTL, f"took {took_over:.1f}s"
    time.sleep(1.0)
    shipped = _shipped(sinks)
    new_leaders = [i for i, seqs in enumerate(shipped) if seqs and i != leader]
    assert len(new_leaders) == 1, f"records shipped by replicas {new_leaders} after the kill"
    everything = [s for seqs in shipped for s in seqs]
    assert len(everything) == len(set(everything)), "a record was shipped twice"
    assert sorted(everything) == list(range(1, total() + 1))  # and none was lost
