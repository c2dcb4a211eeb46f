#!/usr/bin/env python
"""Replica scaling benchmark: GET and POST throughput with 1 and 2 ``stateward serve`` replicas
on one PostgreSQL database and one S3 bucket, and SQLite+files next to PostgreSQL+S3.

Not a test: nothing asserts on timing, the exit code is 0 unless something broke. Run from
anywhere with stateward and its test extra installed::

    python benchmarks/bench_replicas.py             # 2 rounds x 10 s per row (about 3.5 min)
    python benchmarks/bench_replicas.py --quick     # 1 round x 3 s (smoke run)
    python benchmarks/bench_replicas.py --markdown results.md

What runs, all on this machine:

- PostgreSQL 15: a throwaway cluster from ``tests/harness/pg.py`` (:class:`PgCluster`). The
  tests run it with durability off; here it runs with PostgreSQL's defaults (``fsync``,
  ``synchronous_commit`` and ``full_page_writes`` on), as SQLite runs ``synchronous=FULL``, so
  the SQLite-vs-PostgreSQL rows compare like with like (``--pg-no-fsync``: the tests' settings).
- S3: moto in server mode (``ThreadedMotoServer``, in this process, in memory), one bucket.
- Replicas A and B: real ``python -m stateward serve`` processes sharing one config file
  (``database_url``, ``[blob_store] type = "s3"``, ``token_key_file`` and
  ``[key_providers.default]`` on shared files), each with its own ``--data-dir`` and port.
  Both run for the whole benchmark; a "1 replica" row sends all load to A while B idles (its
  CPU is measured and shown: it stays near zero).
- SQLite+files: one more ``stateward serve`` on the defaults (embedded SQLite, blob files).
- Load: ``--procs`` worker processes x ``--threads`` threads, each thread with one keep-alive
  ``http.client`` connection per target, round-robin per request across the targets (what a
  round-robin load balancer does). ``http.client`` rather than httpx: it costs a third of the
  client CPU per request, and the client shares the 2 cores with everything else. Every row
  runs continuously for ``--warmup`` s (not measured) then ``--seconds`` s (measured).
  GET: a ~10 KB state over ``--paths`` paths (seeded once, served from each replica's body
  cache after the warm-up). POST: every thread writes its own path, serial + 1 each time,
  Content-MD5, no lock; the final serials are checked at the end.

Rows: (a) GET, 1 replica; (b) GET, 2 replicas; b/a against the floor 1.6; (c) POST, 1 vs 2
replicas (no floor: every write transaction takes the one PostgreSQL advisory lock of
``storage/engine.py``); (d) PostgreSQL+S3 1 replica vs SQLite+files, GET and POST
(informational). Rounds alternate the order of the rows (ABBA) against drift.

Where the cores go: CPU time of every process involved (replicas, the SQLite server, all
PostgreSQL processes, this process, which hosts moto, the load workers) is read from
``/proc/<pid>/stat`` at the start and end of each measured window, and the machine's total
from ``/proc/stat``; "other" is what the machine spent on processes that are not ours (other
people's test runs). From the CPU per request the script derives the ceiling: the rate the
whole machine could sustain if every core went to this workload.

Why 2 replicas do not reach 1.6x on a 2-core machine (docs/performance.md, "Replicas", has
the measured numbers): a replica is one uvicorn process (``stateward serve`` has no
``--workers`` option), so it uses at most one core of Python, and a second replica adds
throughput only if a second core is free. It is not: every GET also costs PostgreSQL CPU (about
2.3 transactions per GET: the token lookup, the version lookup, and a share of the group-
committed audit record, a write transaction behind the same advisory lock as the writes) and
load-generator CPU, so 1 replica running flat out already needs about 1.6 cores, and 2 replicas
pay more per request than 1 (smaller audit batches from each replica, queueing on the one lock,
two processes on two oversubscribed cores). Writes do not scale with replicas by design: their
transactions run one at a time under the advisory lock. The notes print the bound each run
implies: what the cores other processes left could sustain at the measured CPU per request,
and what an idle machine could.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import logging
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from tests.harness.pg import PgCluster
    from tests.harness.support import ServerProcess

REPO = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
READ_FLOOR = 1.6
err = Console(stderr=True, highlight=False)


def _import_helpers() -> None:
    """Make ``tests`` (PgCluster, ServerProcess) and ``bench_server`` (the state generator)
    importable. Done on demand, not at import time: the load workers re-import this module
    (multiprocessing "spawn") and need none of it."""
    for where in (REPO, REPO / "benchmarks"):
        if str(where) not in sys.path:
            sys.path.insert(0, str(where))


# ----------------------------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class Params:
    seconds: float = 10.0
    warmup: float = 2.0
    rounds: int = 2
    procs: int = 4
    threads: int = 2
    paths: int = 20
    state_bytes: int = 10_000
    pg_fsync: bool = True


# ----------------------------------------------------------------------------------------------
# load workers (separate processes; only the standard library in here)


def _connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _worker_main(pipe: Connection) -> None:
    """Run jobs sent by the main process until it sends None."""
    while True:
        job = pipe.recv()
        if job is None:
            return
        pipe.send(_run_job(job))


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    threads: int = job["threads"]
    out: list[dict[str, Any]] = [{} for _ in range(threads)]
    pool = [threading.Thread(target=_client, args=(job, k, out[k])) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    lat = array("d")
    for o in out:
        lat.extend(o["lat"])
    return {
        "ops": sum(o["ops"] for o in out),
        "errors": sum(o["errors"] for o in out),
        "first_error": next((o["first_error"] for o in out if o["first_error"]), ""),
        "lat": lat.tobytes(),
        "serials": {o["path"]: o["serial"] for o in out if o.get("path")},
    }


def _client(job: dict[str, Any], k: int, out: dict[str, Any]) -> None:
    """One client thread: warm up until ``start_at``, then measure until ``end_at``."""
    ports: list[int] = job["ports"]
    auth = {"Authorization": f"Bearer {job['token']}"}
    conns = {p: _connect(p) for p in ports}
    start_at, end_at = job["start_at"], job["end_at"]
    method: str = job["method"]
    lat = array("d")
    ops = errors = 0
    first_error = ""
    serial = 0
    path = ""
    if method == "POST":
        path = f"{job['post_prefix']}-t{k}"
        prefix, suffix = job["template"]
    paths: list[str] = job["paths"]
    size: int = job["size"]
    i = job["first_client"] + k  # clients start at different paths and replicas
    while True:
        t0 = time.monotonic()
        if t0 >= end_at:
            break
        port = ports[i % len(ports)]
        conn = conns[port]
        try:
            if method == "GET":
                path_i = (i // len(ports)) % len(paths)  # every replica serves every path
                conn.request("GET", f"/state/{paths[path_i]}", headers=auth)
                resp = conn.getresponse()
                data = resp.read()
                ok = resp.status == 200 and len(data) == size
            else:
                serial += 1
                body = prefix + str(serial).encode() + suffix
                headers = {
                    **auth,
                    "Content-Type": "application/json",
                    "Content-MD5": _md5_b64(body),
                }
                conn.request("POST", f"/state/{path}", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                ok = resp.status == 200
                if not ok:
                    serial -= 1  # not stored: the next write reuses the number
        except (OSError, http.client.HTTPException) as exc:
            ok, data = False, repr(exc).encode()
            conn.close()
            conns[port] = _connect(port)
        t1 = time.monotonic()
        if not ok and not first_error:
            first_error = data[:200].decode(errors="replace")
        if t0 >= start_at:
            ops += 1
            errors += not ok
            lat.append((t1 - t0) * 1000)
        i += 1
    for c in conns.values():
        c.close()
    out.update(ops=ops, errors=errors, first_error=first_error, lat=lat, path=path, serial=serial)


def _md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


class LoadPool:
    """``procs`` worker processes started once and reused for every row."""

    def __init__(self, procs: int) -> None:
        ctx = mp.get_context("spawn")  # this process runs threads (moto): do not fork it
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for _ in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def submit(self, jobs: list[dict[str, Any]]) -> None:
        for pipe, job in zip(self.pipes, jobs, strict=True):
            pipe.send(job)

    def collect(self) -> list[dict[str, Any]]:
        return [pipe.recv() for pipe in self.pipes]

    def close(self) -> None:
        for pipe in self.pipes:
            with suppress(OSError):
                pipe.send(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


# ----------------------------------------------------------------------------------------------
# CPU accounting from /proc

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int, reaped: bool = False) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 if it is gone. With
    ``reaped``, plus the CPU of its children that have exited and been waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def children(ppid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == ppid:
            out.append(int(entry.name))
    return out


def machine_busy() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


#: Components of the CPU table, in display order.
COMPONENTS = ("replica A", "replica B", "sqlite server", "postgres", "moto + bench", "load gen")


@dataclass
class CpuProbe:
    """Which pids make up each component. PostgreSQL is the postmaster and its children,
    live ones and exited ones (backends come and go: SQLAlchemy closes overflow connections,
    autovacuum workers exit), which the kernel adds to the postmaster's cutime/cstime."""

    pids: dict[str, list[int]]
    postmaster: int

    def sample(self) -> dict[str, float]:
        live = children(self.postmaster)
        out = {name: sum(proc_cpu(p) for p in pids) for name, pids in self.pids.items()}
        out["postgres"] = proc_cpu(self.postmaster, reaped=True) + sum(map(proc_cpu, live))
        out["machine"] = machine_busy()
        return out


# ----------------------------------------------------------------------------------------------
# PostgreSQL counters during a window


class PgWatch:
    """Samples ``pg_stat_activity`` (backends waiting on the advisory write lock) every 0.2 s
    and ``pg_stat_database`` commits at both ends of the window."""

    def __init__(self, cluster: PgCluster, database: str) -> None:
        import psycopg

        self.conn = psycopg.connect(
            host="127.0.0.1", port=cluster.port, user="postgres", dbname=database, autocommit=True
        )
        self.waiting: list[int] = []
        self.active: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def counters(self) -> tuple[int, int]:
        """(transactions committed, sessions opened) in the database so far."""
        row = self.conn.execute(
            "SELECT xact_commit, sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def start(self) -> None:
        self.waiting, self.active = [], []
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            row = self.conn.execute(
                "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock' "
                "AND wait_event = 'advisory'), count(*) FILTER (WHERE state = 'active') "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchone()
            if row:
                self.waiting.append(int(row[0]))
                self.active.append(int(row[1]))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        self.conn.close()


# ----------------------------------------------------------------------------------------------
# one measured row


@dataclass
class Target:
    key: str  # pg1, pg2, sqlite
    label: str
    servers: list[ServerProcess]


@dataclass
class Window:
    ops: int
    errors: int
    seconds: float
    lat: list[float]
    cpu: dict[str, float]  # cores per component, plus "machine"
    pg_commits: int
    pg_sessions: int  # PostgreSQL connections opened during the window
    pg_waiting: float
    first_error: str
    settle: float  # seconds the servers needed to go quiet before this window

    @property
    def rate(self) -> float:
        return self.ops / self.seconds


@dataclass
class Row:
    target: Target
    method: str
    windows: list[Window] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.mean(w.rate for w in self.windows)

    def pct(self, q: float) -> float:
        lat = sorted(x for w in self.windows for x in w.lat)
        if not lat:
            return float("nan")
        return lat[min(len(lat) - 1, round(q / 100 * (len(lat) - 1)))]

    def cores(self, name: str) -> float:
        return statistics.mean(w.cpu.get(name, 0.0) for w in self.windows)

    @property
    def errors(self) -> int:
        return sum(w.errors for w in self.windows)

    def ms_per_op(self, *names: str) -> float:
        """CPU milliseconds per request spent in the named components."""
        return sum(self.cores(n) for n in names) / self.rate * 1000


@dataclass
class Bench:
    p: Params
    pool: LoadPool
    probe: CpuProbe
    pgwatch: PgWatch
    token: dict[str, str]  # target key -> admin token
    template: tuple[bytes, bytes]
    size: int
    read_paths: list[str]
    serials: dict[str, dict[str, int]] = field(default_factory=dict)  # target key -> path->serial

    def settle(self, limit: float = 120.0) -> float:
        """Wait until the servers and PostgreSQL are quiet: after a POST row the lease-holding
        replica's secret scanner still reads back and scans the versions just written, which
        would otherwise land in the next row's window. Returns the seconds waited."""
        names = ("replica A", "replica B", "sqlite server", "postgres")
        t0 = time.monotonic()
        prev, prev_t = self.probe.sample(), t0
        while time.monotonic() - t0 < limit:
            time.sleep(0.5)
            cur, now = self.probe.sample(), time.monotonic()
            busy = sum(cur[n] - prev[n] for n in names) / (now - prev_t)
            prev, prev_t = cur, now
            if busy < 0.1:
                break
        return time.monotonic() - t0

    def measure(self, target: Target, method: str, rnd: int) -> Window:
        p = self.p
        settle = self.settle()
        start_at = time.monotonic() + p.warmup + 0.5  # 0.5 s: the workers receive the job
        end_at = start_at + p.seconds
        jobs = []
        for w in range(p.procs):
            jobs.append(
                {
                    "method": method,
                    "threads": p.threads,
                    "token": self.token[target.key],
                    "ports": [s.port for s in target.servers],
                    "paths": self.read_paths,
                    "size": self.size,
                    "template": self.template,
                    "post_prefix": f"bench/w/{target.key}-r{rnd}-p{w}",
                    "first_client": w * p.threads,
                    "start_at": start_at,
                    "end_at": end_at,
                }
            )
        self.pool.submit(jobs)
        time.sleep(max(0.0, start_at - time.monotonic()))
        c0 = self.probe.sample()
        k0 = self.pgwatch.counters()
        self.pgwatch.start()
        t0 = time.monotonic()
        time.sleep(max(0.0, end_at - time.monotonic()))
        c1 = self.probe.sample()
        seconds = time.monotonic() - t0
        self.pgwatch.stop()
        k1 = self.pgwatch.counters()
        results = self.pool.collect()
        cpu = {name: (c1[name] - c0[name]) / seconds for name in c0}
        lat = array("d")
        for r in results:
            lat.frombytes(r["lat"])
            if method == "POST":
                self.serials.setdefault(target.key, {}).update(r["serials"])
        waiting = self.pgwatch.waiting
        return Window(
            ops=sum(r["ops"] for r in results),
            errors=sum(r["errors"] for r in results),
            seconds=p.seconds,
            lat=list(lat),
            cpu=cpu,
            pg_commits=k1[0] - k0[0],
            pg_sessions=k1[1] - k0[1],
            pg_waiting=statistics.mean(waiting) if waiting else 0.0,
            first_error=next((r["first_error"] for r in results if r["first_error"]), ""),
            settle=settle,
        )


# ----------------------------------------------------------------------------------------------
# setup


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def child_environment(root: Path) -> None:
    """Dummy AWS credentials (moto), no AWS profile, and the stateward this script imported
    first on the children's path: ServerProcess passes this process's environment on."""
    import stateward

    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL"):
        os.environ.pop(var, None)
    os.environ.update(AWS_ENV)
    os.environ["AWS_CONFIG_FILE"] = str(root / "no-aws-config")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(root / "no-aws-credentials")
    src = str(Path(stateward.__file__).resolve().parents[1])
    paths = [src, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


@contextmanager
def pg_cluster(fsync: bool) -> Iterator[PgCluster]:
    from tests import pg

    options = pg._SERVER_OPTIONS
    if fsync:  # the tests' cluster runs without durability; a benchmark should not
        options = tuple(o.replace("=off", "=on") for o in options)
    with mock.patch.object(pg, "_SERVER_OPTIONS", options):
        cluster = pg.PgCluster.start_new()
    try:
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def moto_s3() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per S3 request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def serving(server: ServerProcess) -> Iterator[ServerProcess]:
    server.data_dir.parent.mkdir(parents=True, exist_ok=True)  # its log goes there
    server.start(timeout=60)
    try:
        yield server
    finally:
        server.stop()


def write_config(root: Path, database_url: str, endpoint: str, bucket: str) -> Path:
    shared = root / "shared"
    shared.mkdir(mode=0o700)
    cfg = root / "replicas.toml"
    cfg.write_text(
        f'database_url = "{database_url}"\n'
        f'token_key_file = "{shared / "token.key"}"\n'
        "\n[blob_store]\n"
        f'type = "s3"\nbucket = "{bucket}"\nendpoint_url = "{endpoint}"\nregion = "{REGION}"\n'
        "\n[key_providers.default]\n"
        f'type = "keyfile"\npath = "{shared / "master.key"}"\ncreate = true\n'
    )
    return cfg


def seed(server: ServerProcess, paths: list[str], template: tuple[bytes, bytes]) -> None:
    body = template[0] + b"1" + template[1]
    conn = _connect(server.port)
    try:
        for path in paths:
            conn.request(
                "POST",
                f"/state/{path}",
                body=body,
                headers={
                    "Authorization": f"Bearer {server.token}",
                    "Content-Type": "application/json",
                    "Content-MD5": _md5_b64(body),
                },
            )
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"seeding {path} answered {resp.status}")
    finally:
        conn.close()


def verify_serials(server: ServerProcess, serials: dict[str, int]) -> int:
    """How many written paths hold the serial their writer last stored (read back through
    ``server``); every one should."""
    good = 0
    conn = _connect(server.port)
    try:
        for path, serial in serials.items():
            conn.request(
                "GET", f"/state/{path}", headers={"Authorization": f"Bearer {server.token}"}
            )
            resp = conn.getresponse()
            data = resp.read()
            if resp.status == 200 and json.loads(data)["serial"] == serial:
                good += 1
    finally:
        conn.close()
    return good


# ----------------------------------------------------------------------------------------------
# reporting


@dataclass
class Report:
    rows: list[list[str]] = field(default_factory=list)
    verdicts: list[bool | None] = field(default_factory=list)
    cpu_rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)
        err.print(f"  [dim]{text}[/dim]", soft_wrap=True)


HEAD = ("row", "ops/s", "p50 ms", "p99 ms", "ratio", "floor", "verdict")
CPU_HEAD = (
    "row",
    "ops/s",
    *COMPONENTS,
    "other",
    "idle",
    "ms/op stateward",
    "ms/op postgres",
    "ms/op all ours",
    "ceiling ops/s",
)


def measured(label: str, row: Row) -> list[str]:
    errors = f" ({row.errors} errors)" if row.errors else ""
    return [
        label,
        f"{row.rate:,.0f}{errors}",
        f"{row.pct(50):.1f}",
        f"{row.pct(99):.1f}",
        "",
        "",
        "",
    ]


def ratio_row(label: str, num: Row, den: Row, floor: float | None) -> tuple[list[str], bool | None]:
    ratio = num.rate / den.rate
    met = None if floor is None else ratio >= floor
    verdict = "—" if met is None else ("yes" if met else "NO")
    floor_text = "(info)" if floor is None else f"≥ {floor:.2f}x"
    return [label, "", "", "", f"{ratio:.2f}x", floor_text, verdict], met


def cpu_row(label: str, row: Row, ncpu: int) -> list[str]:
    ours = sum(row.cores(n) for n in COMPONENTS)
    machine = row.cores("machine")
    replicas = ("replica A", "replica B", "sqlite server")
    # The machine's ceiling for this workload: every core it has, spent at this CPU cost per
    # request (the cost of the load generator included: it is part of every request here).
    ceiling = ncpu / (row.ms_per_op(*COMPONENTS) / 1000)
    return [
        label,
        f"{row.rate:,.0f}",
        *(f"{row.cores(n):.2f}" for n in COMPONENTS),
        f"{max(0.0, machine - ours):.2f}",
        f"{max(0.0, ncpu - machine):.2f}",
        f"{row.ms_per_op(*replicas):.2f}",
        f"{row.ms_per_op('postgres'):.2f}",
        f"{row.ms_per_op(*COMPONENTS):.2f}",
        f"{ceiling:,.0f}",
    ]


def rich_table(
    title: str,
    head: tuple[str, ...],
    rows: list[list[str]],
    verdicts: list[bool | None] | None = None,
) -> Table:
    table = Table(title=title)
    for i, col in enumerate(head):
        table.add_column(col, justify="left" if i == 0 else "right")
    for i, r in enumerate(rows):
        met = verdicts[i] if verdicts else None
        style = "" if met is None else ("green" if met else "bold red")
        table.add_row(*r, style=style)
    return table


def markdown_table(head: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------


def run(p: Params, root: Path, report: Report) -> None:
    _import_helpers()
    import boto3
    from bench_server import git_revision, state_template
    from tests.harness.support import ServerProcess

    report.note(
        f"stateward {git_revision()}; {os.cpu_count()} CPUs; load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    child_environment(root)
    template = state_template(p.state_bytes, str(uuid.uuid4()))
    size = len(template[0]) + 1 + len(template[1])
    read_paths = [f"bench/read/app{i:02d}/prod" for i in range(p.paths)]
    with ExitStack() as stack:
        t0 = time.perf_counter()
        cluster = stack.enter_context(pg_cluster(p.pg_fsync))
        database_url = cluster.create_database()
        database = database_url.rsplit("/", 1)[1]
        endpoint = stack.enter_context(moto_s3())
        bucket = f"sw-bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", region_name=REGION, endpoint_url=endpoint).create_bucket(Bucket=bucket)
        cfg = write_config(root, database_url, endpoint, bucket)
        a = stack.enter_context(serving(ServerProcess(root / "replica-a" / "data", config=cfg)))
        b = ServerProcess(root / "replica-b" / "data", config=cfg, token=a.token)
        stack.enter_context(serving(b))
        lite = stack.enter_context(serving(ServerProcess(root / "sqlite" / "data")))
        assert a.token and lite.token
        report.note(
            f"PostgreSQL 15 on :{cluster.port} (fsync {'on' if p.pg_fsync else 'off'}), moto S3 "
            f"on {endpoint}, replicas on :{a.port} and :{b.port}, SQLite+files on :{lite.port}; "
            f"started in {time.perf_counter() - t0:.1f} s"
        )
        for server in (a, lite):
            seed(server, read_paths, template)
        pool = LoadPool(p.procs)
        stack.callback(pool.close)
        pgwatch = PgWatch(cluster, database)
        stack.callback(pgwatch.close)
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        assert a.proc and b.proc and lite.proc
        probe = CpuProbe(
            {
                "replica A": [a.proc.pid],
                "replica B": [b.proc.pid],
                "sqlite server": [lite.proc.pid],
                "moto + bench": [os.getpid()],
                "load gen": pool.pids,
            },
            postmaster,
        )
        bench = Bench(
            p,
            pool,
            probe,
            pgwatch,
            {"pg1": a.token, "pg2": a.token, "sqlite": lite.token},
            template,
            size,
            read_paths,
        )
        targets = [
            Target("pg1", "PG+S3, 1 replica", [a]),
            Target("pg2", "PG+S3, 2 replicas", [a, b]),
            Target("sqlite", "SQLite+files, 1 server", [lite]),
        ]
        rows: dict[tuple[str, str], Row] = {}
        clients = p.procs * p.threads
        err.print(
            f"[bold]{clients} clients ({p.procs} processes x {p.threads} threads), "
            f"{p.rounds} x ({p.warmup:g} s warm-up + {p.seconds:g} s) per row[/bold]"
        )
        for method in ("GET", "POST"):
            for rnd in range(p.rounds):
                for target in targets if rnd % 2 == 0 else reversed(targets):
                    w = bench.measure(target, method, rnd)
                    rows.setdefault((target.key, method), Row(target, method)).windows.append(w)
                    busy = ", ".join(
                        f"{n} {w.cpu[n]:.2f}" for n in (*COMPONENTS, "machine") if w.cpu[n] >= 0.02
                    )
                    extra = (
                        f"; PG commits/op {w.pg_commits / max(w.ops, 1):.2f}, new PG "
                        f"connections {w.pg_sessions}, backends waiting on the write lock "
                        f"{w.pg_waiting:.1f}"
                        if target.key != "sqlite"
                        else ""
                    )
                    report.note(
                        f"{method} {target.label} round {rnd + 1}: {w.rate:,.0f} ops/s, "
                        f"{w.errors} errors (servers quiet after {w.settle:.1f} s); "
                        f"cores: {busy}{extra}"
                        + (f"; first error: {w.first_error}" if w.first_error else "")
                    )
        for key, serials in bench.serials.items():
            server = lite if key == "sqlite" else b
            good = verify_serials(server, serials)
            report.note(
                f"verified: {good}/{len(serials)} POST paths of {key} hold their writer's last "
                f"serial (read through {'replica B' if key != 'sqlite' else 'the SQLite server'})"
            )
    report.note(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    summarize(rows, report)


def summarize(rows: dict[tuple[str, str], Row], report: Report) -> None:
    def r(key: str, method: str) -> Row:
        return rows[(key, method)]

    ncpu = os.cpu_count() or 1
    lines: list[tuple[list[str], bool | None]] = [
        (measured("(a) GET, PG+S3, 1 replica", r("pg1", "GET")), None),
        (measured("(b) GET, PG+S3, 2 replicas", r("pg2", "GET")), None),
        ratio_row("    reads: 2 replicas / 1 (b/a)", r("pg2", "GET"), r("pg1", "GET"), READ_FLOOR),
        (measured("(c) POST, PG+S3, 1 replica", r("pg1", "POST")), None),
        (measured("    POST, PG+S3, 2 replicas", r("pg2", "POST")), None),
        ratio_row("    writes: 2 replicas / 1", r("pg2", "POST"), r("pg1", "POST"), None),
        (measured("(d) GET, SQLite+files, 1 server", r("sqlite", "GET")), None),
        ratio_row("    GET: PG+S3 1 replica / SQLite", r("pg1", "GET"), r("sqlite", "GET"), None),
        (measured("    POST, SQLite+files, 1 server", r("sqlite", "POST")), None),
        ratio_row(
            "    POST: PG+S3 1 replica / SQLite", r("pg1", "POST"), r("sqlite", "POST"), None
        ),
    ]
    report.rows = [line for line, _ in lines]
    report.verdicts = [met for _, met in lines]
    for key, label in (
        ("pg1", "PG+S3, 1 replica"),
        ("pg2", "PG+S3, 2 replicas"),
        ("sqlite", "SQLite+files"),
    ):
        for method in ("GET", "POST"):
            report.cpu_rows.append(cpu_row(f"{method}, {label}", r(key, method), ncpu))
    for method in ("GET", "POST"):
        report.note(ceiling_note(method, r("pg1", method), r("pg2", method), ncpu))


def ceiling_note(method: str, one: Row, two: Row, ncpu: int) -> str:
    """What 2 replicas could reach at the CPU cost per request they were measured at: with
    the cores other processes left us during the run, and on an otherwise idle machine (where
    1 replica is held to its one core, and 2 replicas to every core there is)."""
    stateward = ("replica A", "replica B")
    cost = two.ms_per_op(*COMPONENTS)
    other = max(0.0, two.cores("machine") - sum(two.cores(n) for n in COMPONENTS))
    left = (ncpu - other) / cost * 1000
    idle_one = min(1000 / one.ms_per_op("replica A"), ncpu * 1000 / one.ms_per_op(*COMPONENTS))
    idle_two = min(2000 / two.ms_per_op(*stateward), ncpu * 1000 / cost)
    return (
        f"{method} bound: with 2 replicas a request cost {cost:.2f} ms of CPU (stateward "
        f"{two.ms_per_op(*stateward):.2f}, PostgreSQL {two.ms_per_op('postgres'):.2f}, "
        f"moto+bench {two.ms_per_op('moto + bench'):.2f}, load generator "
        f"{two.ms_per_op('load gen'):.2f}). The {ncpu - other:.2f} cores other processes left "
        f"us sustain {left:,.0f}/s = {left / one.rate:.2f}x the 1-replica rate; on an idle "
        f"{ncpu}-core machine 1 replica would reach at most {idle_one:,.0f}/s and 2 at most "
        f"{idle_two:,.0f}/s: {idle_two / idle_one:.2f}x. (1 replica used "
        f"{one.cores('replica A'):.2f} of its one core.)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Params()
    ap.add_argument("--seconds", type=float, default=d.seconds, help="measured s per row/round")
    ap.add_argument("--warmup", type=float, default=d.warmup, help="warm-up s before each")
    ap.add_argument("--rounds", type=int, default=d.rounds)
    ap.add_argument("--procs", type=int, default=d.procs, help="load worker processes")
    ap.add_argument("--threads", type=int, default=d.threads, help="client threads per worker")
    ap.add_argument("--paths", type=int, default=d.paths, help="state paths read")
    ap.add_argument("--state-bytes", type=int, default=d.state_bytes)
    ap.add_argument(
        "--pg-no-fsync",
        action="store_true",
        help="run PostgreSQL with the tests' settings (fsync etc. off)",
    )
    ap.add_argument("--quick", action="store_true", help="1 round of 3 s (smoke run)")
    ap.add_argument("--markdown", type=Path, help="also write the markdown tables to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    p = Params(
        seconds=3.0 if args.quick else args.seconds,
        warmup=1.0 if args.quick else args.warmup,
        rounds=1 if args.quick else args.rounds,
        procs=args.procs,
        threads=args.threads,
        paths=args.paths,
        state_bytes=args.state_bytes,
        pg_fsync=not args.pg_no_fsync,
    )
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="stateward-bench-replicas-"))
    report = Report()
    try:
        run(p, root, report)
    finally:
        if args.keep:
            err.print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - started
    title = (
        f"stateward replicas ({os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"{p.procs * p.threads} clients, {p.rounds} x {p.seconds:g} s per row, {elapsed:.0f} s)"
    )
    cpu_title = "where the cores went (cores busy during the measured windows, mean of rounds)"
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)  # do not wrap the tables when piped to a file
    out.print(rich_table(title, HEAD, report.rows, report.verdicts))
    out.print(rich_table(cpu_title, CPU_HEAD, report.cpu_rows))
    notes = "\n".join(f"- {n}" for n in report.notes)
    md = (
        f"**{title}**\n\n{markdown_table(HEAD, report.rows)}\n\n**{cpu_title}**\n\n"
        f"{markdown_table(CPU_HEAD, report.cpu_rows)}\n\nNotes:\n\n{notes}\n"
    )
    print()
    print(md)
    if args.markdown:
        args.markdown.write_text(md)
        err.print(f"markdown written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
