#!/usr/bin/env python
"""Performance benchmark for the stateward server (not a test: nothing here asserts on timing).

Run from anywhere with stateward installed::

    python benchmarks/bench_server.py            # full run (100 MB state, about 70 s)
    python benchmarks/bench_server.py --quick    # smoke run (10 MB state, about 15 s)
    python benchmarks/bench_server.py --markdown results.md
    python benchmarks/bench_server.py --only throughput,lock

Measured in one run, each against a baseline measured in the same run:

1. ``terraform apply`` wall time through stateward vs the local backend (median of N applies,
   each changing a variable; ``init`` and the first, creating apply happen outside the timing).
2. GET and POST ops/s for a ~20 KB state vs a bare ``http.server.ThreadingHTTPServer`` that
   serves the same bytes from a file. The same client load (threads with keep-alive
   connections) is used for both. Every POST to stateward is a valid new state (serial + 1,
   same lineage, Content-MD5), so it is really stored as a new version (checked at the end).
   An extra, informational row compares POSTs with an http.server that writes durably
   (fsync, rename, fsync of the directory), and the notes give server CPU per request.
3. POST and GET latency and peak server RSS (VmHWM, reset between the phases) for a large
   realistic state vs the time to fsync + sha256 + md5 the same bytes in-process.
4. LOCK + UNLOCK round trip p50/p99 on one keep-alive connection, next to the in-process time
   of the two durable SQLite commits it needs.

Clients and servers share the machine, so a busy machine moves every number: the notes record
the load average before and after. The results table is printed with rich and then again as
markdown (for the docs).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

TERRAFORM = "/usr/local/bin/terraform"
MB = 1_000_000
SERIAL_MARK = 987654321987  # unique number, replaced by the real serial in each body

err = Console(stderr=True, highlight=False)


# ----------------------------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class Params:
    tf_applies: int = 21
    tput_seconds: float = 4.0
    tput_rounds: int = 2
    tput_threads: int = 4
    small_bytes: int = 20_000
    big_bytes: int = 100 * MB
    big_reps: int = 5
    lock_iters: int = 1000

    @classmethod
    def quick(cls) -> Params:
        return cls(tf_applies=3, tput_seconds=1.5, tput_rounds=1, big_bytes=10 * MB,
                   big_reps=2, lock_iters=200)


# ----------------------------------------------------------------------------------------------
# small helpers


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connect(port: int, timeout: float = 300.0) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


#: Authorization header per server port (stateward needs a token; the baselines ignore it).
AUTH: dict[int, dict[str, str]] = {}


def request(conn: http.client.HTTPConnection, method: str, url: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    auth = AUTH.get(conn.port or 0, {})
    conn.request(method, url, body=body, headers={**auth, **(headers or {})})
    resp = conn.getresponse()
    return resp.status, resp.read()


def body_headers(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "Content-MD5": md5_b64(body)}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def proc_status(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` memory field (VmHWM, VmRSS) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False if not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssPoller:
    """Polls VmHWM/VmRSS of a process in the background (VmHWM is the kernel's own peak)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, proc_status(self.pid, "VmRSS"))
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def hwm(self) -> int:
        return max(self.peak_rss, proc_status(self.pid, "VmHWM"))


# ----------------------------------------------------------------------------------------------
# realistic state documents

_RESOURCE_TEMPLATE: dict[str, Any] = {
    "mode": "managed",
    "type": "aws_instance",
    "name": "@@NAME@@",
    "provider": 'provider["registry.terraform.io/hashicorp/aws"]',
    "instances": [
        {
            "index_key": "@@INDEX@@",
            "schema_version": 1,
            "attributes": {
                "ami": "ami-@@HEX8@@",
                "arn": "arn:aws:ec2:eu-west-1:123456789012:instance/i-@@HEX17@@",
                "associate_public_ip_address": False,
                "availability_zone": "eu-west-1a",
                "cpu_core_count": 2,
                "ebs_optimized": True,
                "iam_instance_profile": "@@NAME@@-profile",
                "id": "i-@@HEX17@@",
                "instance_state": "running",
                "instance_type": "m6i.large",
                "key_name": "deploy",
                "monitoring": True,
                "private_dns": "ip-@@IPDASH@@.eu-west-1.compute.internal",
                "private_ip": "@@IP@@",
                "root_block_device": [
                    {
                        "delete_on_termination": True,
                        "device_name": "/dev/xvda",
                        "encrypted": True,
                        "iops": 3000,
                        "kms_key_id": "arn:aws:kms:eu-west-1:123456789012:key/@@UUID@@",
                        "tags": {},
                        "throughput": 125,
                        "volume_id": "vol-@@HEX17@@",
                        "volume_size": 50,
                        "volume_type": "gp3",
                    }
                ],
                "security_groups": [],
                "subnet_id": "subnet-@@HEX8@@",
                "tags": {"Name": "@@NAME@@", "team": "platform", "env": "prod",
                         "cost-center": "cc-@@NUM@@"},
                "tags_all": {"Name": "@@NAME@@", "team": "platform", "env": "prod",
                             "cost-center": "cc-@@NUM@@", "managed-by": "terraform"},
                "tenancy": "default",
                "user_data": "@@USERDATA@@",
                "vpc_security_group_ids": ["sg-@@HEX8@@", "sg-0a1b2c3d4e5f60718"],
                "timeouts": None,
            },
            "sensitive_attributes": [[{"type": "get_attr", "value": "user_data"}]],
            "private": "@@PRIVATE@@",
            "dependencies": ["aws_iam_instance_profile.app", "aws_subnet.private"],
        }
    ],
}


def _resource_parts() -> list[str]:
    text = json.dumps(_RESOURCE_TEMPLATE, indent=2)
    text = text.replace('"@@INDEX@@"', "@@INDEX@@")  # index_key is a number
    return re.split(r"@@(\w+)@@", textwrap.indent(text, "    "))


def state_template(target_bytes: int, lineage: str, seed: int = 1) -> tuple[bytes, bytes]:
    """A v4 state of about ``target_bytes`` as (prefix, suffix) around the serial number.

    Formatted as Terraform writes it (2-space indent, trailing newline); many resources with
    attributes, ids, IPs and base64 blobs so that parsing and compression cost what they would
    for a real state.
    """
    rng = random.Random(seed)
    parts = _resource_parts()
    outputs = {
        f"endpoint_{i}": {"value": f"https://svc-{i}.example.internal", "type": "string"}
        for i in range(8)
    }
    outputs["db_password"] = {"value": "s3cr3t-value", "type": "string", "sensitive": True}
    doc = {
        "version": 4,
        "terraform_version": "1.11.4",
        "serial": SERIAL_MARK,
        "lineage": lineage,
        "outputs": outputs,
        "resources": ["@@RESOURCES@@"],
        "check_results": None,
    }
    head, tail = (json.dumps(doc, indent=2) + "\n").split('"@@RESOURCES@@"')
    size = len(head) + len(tail)
    resources: list[str] = []
    i = 0
    while size < target_bytes:
        if resources and size + len(resources[0]) // 2 > target_bytes:
            break  # stop at the size closest to the target
        ip = [10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)]
        values = {
            "NAME": f"app-{i:06d}",
            "INDEX": str(i),
            "HEX8": f"{rng.getrandbits(32):08x}",
            "HEX17": f"{rng.getrandbits(68):017x}",
            "UUID": str(uuid.UUID(int=rng.getrandbits(128))),
            "IP": ".".join(map(str, ip)),
            "IPDASH": "-".join(map(str, ip)),
            "NUM": str(rng.randrange(1000, 9999)),
            "USERDATA": base64.b64encode(rng.randbytes(600)).decode(),
            "PRIVATE": base64.b64encode(rng.randbytes(90)).decode(),
        }
        text = "".join(p if k % 2 == 0 else values[p] for k, p in enumerate(parts))
        resources.append(text)
        size += len(text) + 2
        i += 1
    body = (head + ",\n".join(resources).lstrip() + tail).encode()
    prefix, suffix = body.split(str(SERIAL_MARK).encode())
    return prefix, suffix


def make_body(template: tuple[bytes, bytes], serial: int) -> bytes:
    return template[0] + str(serial).encode() + template[1]


def lock_body() -> bytes:
    return json.dumps({
        "ID": str(uuid.uuid4()), "Operation": "OperationTypeApply", "Info": "",
        "Who": "bench@host", "Version": "1.11.4", "Created": "2026-11-22T00:00:00Z", "Path": "",
    }, separators=(",", ":")).encode()


# ----------------------------------------------------------------------------------------------
# server processes

BASELINE_SERVER = r'''
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT, PORT = sys.argv[1], int(sys.argv[2])
DURABLE = sys.argv[3:] == ["fsync"]  # write like stateward's blob store: fsync, rename, fsync dir


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like stateward (uvicorn)
    disable_nagle_algorithm = True  # asyncio transports set TCP_NODELAY too

    def _file(self):
        return os.path.join(ROOT, self.path.split("?", 1)[0].strip("/").replace("/", "_"))

    def _reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            return self._reply(200, b"ok\n")
        try:
            with open(self._file(), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return self._reply(404)
        self._reply(200, data)

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not DURABLE:
            with open(self._file(), "wb") as f:
                f.write(data)
            return self._reply(200)
        tmp = self._file() + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._file())
        dfd = os.open(ROOT, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self._reply(200)


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
'''


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    token: str | None = None

    def start(self, timeout: float = 30.0) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATEWARD_")}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log.read_text()}")
            try:
                conn = connect(self.port, timeout=2)
                status, _ = request(conn, "GET", "/healthz")
                conn.close()
                if status == 200:
                    token = re.search(r"^(swt_[A-Za-z0-9_-]{43})$", self.log.read_text(), re.M)
                    if token:  # stateward's initial admin token, printed on first start
                        self.token = token.group(1)
                        AUTH[self.port] = {"Authorization": f"Bearer {self.token}"}
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become healthy; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def stateward_server(root: Path, name: str, max_body: int | None = None) -> Server:
    port = free_port()
    data = root / name
    cmd = [sys.executable, "-m", "stateward", "serve", "--data-dir", str(data),
           "--port", str(port)]
    if max_body is not None:
        cmd += ["--max-body-bytes", str(max_body)]
    return Server(name, cmd, port, root / f"{name}.log")


def baseline_server(root: Path, durable: bool = False) -> Server:
    name = "baseline-fsync" if durable else "baseline"
    port = free_port()
    script = root / "baseline_server.py"
    script.write_text(BASELINE_SERVER)
    files = root / f"{name}-files"
    files.mkdir(exist_ok=True)
    cmd = [sys.executable, str(script), str(files), str(port), *(["fsync"] if durable else [])]
    return Server(name, cmd, port, root / f"{name}.log")


@contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    try:
        for s in servers:
            s.start()
        yield servers
    finally:
        for s in servers:
            s.stop()


# ----------------------------------------------------------------------------------------------
# results


@dataclass
class Row:
    metric: str
    stateward: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: informational


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, sw: str, base: str, ratio: str, target: str,
            met: bool | None) -> None:
        self.rows.append(Row(metric, sw, base, ratio, target, met))

    def note(self, text: str) -> None:
        self.notes.append(text)
        err.print(f"  [dim]{text}[/dim]")


def met_text(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "NO")


def rich_table(results: Results, title: str) -> Table:
    table = Table(title=title)
    for col in ("metric", "stateward", "baseline", "ratio", "target", "met?"):
        table.add_column(col, justify="left" if col in ("metric", "target") else "right")
    for r in results.rows:
        style = "" if r.met is None else ("green" if r.met else "bold red")
        table.add_row(r.metric, r.stateward, r.baseline, r.ratio, r.target, met_text(r.met),
                      style=style)
    return table


def markdown_table(results: Results) -> str:
    lines = ["| metric | stateward | baseline | ratio | target | met? |",
             "|---|---:|---:|---:|---|:---:|"]
    for r in results.rows:
        lines.append(f"| {r.metric} | {r.stateward} | {r.baseline} | {r.ratio} | {r.target} "
                     f"| {met_text(r.met)} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# 1. terraform apply: stateward vs local backend

TF_MAIN = """
variable "v" {
  type = string
}

resource "terraform_data" "app" {
  count = 5
  input = {
    version = var.v
    index   = count.index
    name    = "app-${count.index}"
  }
}

resource "terraform_data" "config" {
  input = "config-${var.v}"
}

resource "terraform_data" "static" {
  input = ["a", "b", "c"]
}

output "app_versions" {
  value = terraform_data.app[*].output
}

output "config" {
  value = terraform_data.config.output
}
"""

TF_HTTP_BACKEND = """
terraform {
  backend "http" {
    address        = "%(url)s"
    lock_address   = "%(url)s"
    unlock_address = "%(url)s"
  }
}
"""


def terraform_env(home: Path, token: str | None = None) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "terraformrc").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "STATEWARD_"))}
    if token:
        env.update(TF_HTTP_USERNAME="bench", TF_HTTP_PASSWORD=token)
    env.update(CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", HOME=str(home),
               TF_CLI_CONFIG_FILE=str(home / "terraformrc"))
    return env


def tf(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([TERRAFORM, *args, "-no-color", "-input=false"], cwd=cwd, env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"terraform {args[0]} failed in {cwd}:\n{proc.stdout}{proc.stderr}")
    return elapsed


def bench_terraform(p: Params, root: Path, sw: Server, res: Results) -> None:
    err.print(f"[bold]1. terraform apply[/bold] ({p.tf_applies} timed applies per backend)")
    env = terraform_env(root / "tf-home", sw.token)
    local_dir = root / "tf-local"
    http_dir = root / "tf-http"
    for d in (local_dir, http_dir):
        d.mkdir()
        (d / "main.tf").write_text(TF_MAIN)
    (http_dir / "backend.tf").write_text(
        TF_HTTP_BACKEND % {"url": f"http://127.0.0.1:{sw.port}/state/bench/terraform/prod"})
    dirs = {"local": local_dir, "stateward": http_dir}
    for d in dirs.values():
        tf(["init"], d, env)
        tf(["apply", "-auto-approve", "-var", "v=initial"], d, env)  # creates; not timed
    times: dict[str, list[float]] = {"local": [], "stateward": []}
    for i in range(p.tf_applies):
        order = ["local", "stateward"] if i % 2 == 0 else ["stateward", "local"]
        for name in order:
            times[name].append(tf(["apply", "-auto-approve", "-var", f"v=run-{i}"], dirs[name],
                                  env))
    sw_t = statistics.median(times["stateward"])
    local_t = statistics.median(times["local"])
    ratio = sw_t / local_t
    res.add(f"terraform apply wall time (median of {p.tf_applies})", f"{sw_t:.3f} s",
            f"{local_t:.3f} s (local)", f"{ratio:.2f}x", "≤ 1.10x", ratio <= 1.10)
    res.note("apply times stateward: " + ", ".join(f"{t:.3f}" for t in times["stateward"]))
    res.note("apply times local:     " + ", ".join(f"{t:.3f}" for t in times["local"]))


# ----------------------------------------------------------------------------------------------
# 2. throughput: GET and POST ops/s for a ~20 KB state


@dataclass
class LoadResult:
    ops: int
    errors: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.ops / self.seconds


def run_load(port: int, threads: int, seconds: float,
             make_op: Callable[[int], Callable[[http.client.HTTPConnection], bool]],
             warmup: int = 20) -> LoadResult:
    """``threads`` clients, each with its own keep-alive connection, for ``seconds``."""
    counts = [0] * threads
    errors = [0] * threads
    ends = [0.0] * threads
    start_at: list[float] = []
    barrier = threading.Barrier(threads, action=lambda: start_at.append(time.perf_counter()))

    def worker(idx: int) -> None:
        conn = connect(port)
        op = make_op(idx)
        for _ in range(warmup):
            op(conn)
        barrier.wait()
        deadline = start_at[0] + seconds
        n = bad = 0
        while time.perf_counter() < deadline:
            if not op(conn):
                bad += 1
            n += 1
        ends[idx] = time.perf_counter()
        counts[idx], errors[idx] = n, bad
        conn.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return LoadResult(sum(counts), sum(errors), max(ends) - start_at[0])


def get_op(url: str, size: int) -> Callable[[int], Callable[[http.client.HTTPConnection], bool]]:
    def make(_idx: int) -> Callable[[http.client.HTTPConnection], bool]:
        def op(conn: http.client.HTTPConnection) -> bool:
            status, data = request(conn, "GET", url)
            return status == 200 and len(data) == size
        return op
    return make


class PostOps:
    """Per-thread POST generators: own path, serial + 1 each time, same lineage, Content-MD5."""

    def __init__(self, template: tuple[bytes, bytes], prefix: str) -> None:
        self.template = template
        self.prefix = prefix
        self.serials: dict[int, int] = {}

    def url(self, idx: int) -> str:
        return f"{self.prefix}/t{idx}"

    def __call__(self, idx: int) -> Callable[[http.client.HTTPConnection], bool]:
        url = self.url(idx)
        self.serials.setdefault(idx, 0)

        def op(conn: http.client.HTTPConnection) -> bool:
            self.serials[idx] += 1
            body = make_body(self.template, self.serials[idx])
            status, _ = request(conn, "POST", url, body, body_headers(body))
            return status == 200
        return op


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads), from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_throughput(p: Params, sw: Server, base: Server, durable: Server,
                     res: Results) -> None:
    err.print(f"[bold]2. throughput[/bold] ({p.tput_threads} client threads, "
              f"{p.tput_rounds}x{p.tput_seconds:g} s per server and method)")
    lineage = str(uuid.uuid4())
    template = state_template(p.small_bytes, lineage)
    seed = make_body(template, 1)
    json.loads(seed)  # the generator must produce valid JSON
    size = len(seed)
    get_url = "/state/bench/tput/get"
    for s in (sw, base):
        conn = connect(s.port)
        status, _ = request(conn, "POST", get_url, seed, body_headers(seed))
        conn.close()
        if status != 200:
            raise RuntimeError(f"seeding {s.name} failed with {status}")
    # The fsync-ing baseline only runs the POST load: it shows what durability alone costs.
    plan = {"GET": [sw, base], "POST": [sw, base, durable]}
    posts = {s.name: PostOps(template, "/state/bench/tput/post") for s in plan["POST"]}
    rates: dict[tuple[str, str], list[float]] = {}
    cpu_per_op: dict[tuple[str, str], list[float]] = {}
    errors: dict[tuple[str, str], int] = {}
    for method, servers in plan.items():
        for rnd in range(p.tput_rounds):
            for s in servers if rnd % 2 == 0 else list(reversed(servers)):
                make = get_op(get_url, size) if method == "GET" else posts[s.name]
                cpu0 = cpu_seconds(s.pid)
                r = run_load(s.port, p.tput_threads, p.tput_seconds, make)
                cpu = (cpu_seconds(s.pid) - cpu0) / max(r.ops, 1) * 1000
                key = (s.name, method)
                rates.setdefault(key, []).append(r.rate)
                cpu_per_op.setdefault(key, []).append(cpu)
                errors[key] = errors.get(key, 0) + r.errors
                res.note(f"{method} {s.name} round {rnd + 1}: {r.rate:,.0f} ops/s "
                         f"({r.ops} ops, {r.errors} errors, {r.seconds:.2f} s), "
                         f"server CPU {cpu:.3f} ms/op")

    def rate(name: str, method: str) -> float:
        return statistics.mean(rates[(name, method)])

    label = f"{size / 1000:.0f} KB state, {p.tput_threads} clients"
    for method in ("GET", "POST"):
        sw_r, base_r = rate(sw.name, method), rate(base.name, method)
        ratio = sw_r / base_r
        res.add(f"{method} ops/s, {label}", f"{sw_r:,.0f}", f"{base_r:,.0f} (http.server)",
                f"{ratio:.2f}x", "≥ 1.00x", ratio >= 1.0)
    sw_r, dur_r = rate(sw.name, "POST"), rate(durable.name, "POST")
    res.add(f"POST ops/s, {label}, vs durable baseline", f"{sw_r:,.0f}",
            f"{dur_r:,.0f} (http.server + fsync)", f"{sw_r / dur_r:.2f}x", "(info)", None)
    for (name, method), values in cpu_per_op.items():
        res.note(f"server CPU per {method} on {name}: {statistics.mean(values):.3f} ms")
    for (name, method), n in errors.items():
        if n:
            res.note(f"WARNING: {n} failed {method}s against {name}")
    # Every POST must really have been stored as a new version: check the final serials.
    sw_posts = posts[sw.name]
    conn = connect(sw.port)
    stored = 0
    for idx, serial in sw_posts.serials.items():
        status, data = request(conn, "GET", sw_posts.url(idx))
        if status == 200 and json.loads(data)["serial"] == serial:
            stored += 1
        else:
            res.note(f"WARNING: stateward path t{idx} does not hold serial {serial}")
    conn.close()
    res.note(f"verified: all {stored} POST paths on stateward hold their last serial "
             f"({sum(sw_posts.serials.values())} states written)")


# ----------------------------------------------------------------------------------------------
# 3. large state: latency and peak RSS


def fsync_hash_time(body: bytes, directory: Path, reps: int) -> float:
    """In-process floor: write + fsync the bytes to a file, sha256 and md5 them."""
    times = []
    for i in range(reps):
        path = directory / f"fsync-hash-{i}.bin"
        t0 = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        hashlib.sha256(body).digest()
        hashlib.md5(body).digest()
        times.append(time.perf_counter() - t0)
        path.unlink()
    return statistics.median(times)


def bench_big(p: Params, root: Path, res: Results) -> None:
    size_label = f"{p.big_bytes // MB} MB"
    err.print(f"[bold]3. large state[/bold] ({size_label}, {p.big_reps} POSTs and GETs)")
    t0 = time.perf_counter()
    template = state_template(p.big_bytes, str(uuid.uuid4()), seed=7)
    bodies = [make_body(template, serial) for serial in range(1, p.big_reps + 1)]
    size = len(bodies[0])
    json.loads(bodies[0])  # the generator must produce valid JSON
    res.note(f"generated a {size / MB:.1f} MB state with {bodies[0].count(b'aws_instance')} "
             f"resources in {time.perf_counter() - t0:.1f} s")
    headers = [body_headers(b) for b in bodies]

    floor_dir = root / "fsync-floor"
    floor_dir.mkdir()
    floor = fsync_hash_time(bodies[0], floor_dir, p.big_reps)
    res.note(f"fsync+sha256+md5 of {size / MB:.1f} MB in-process: {floor:.3f} s")

    sw = stateward_server(root, "stateward-big", max_body=max(3 * size, 256 * 1024 * 1024))
    url = "/state/bench/big/prod"
    with running(sw):
        idle = proc_status(sw.pid, "VmRSS")
        can_reset = reset_peak_rss(sw.pid)
        post_times: list[float] = []
        get_times: list[float] = []
        conn = connect(sw.port)
        with RssPoller(sw.pid) as poller:
            for body, hdrs in zip(bodies, headers, strict=True):
                t = time.perf_counter()
                status, data = request(conn, "POST", url, body, hdrs)
                post_times.append(time.perf_counter() - t)
                if status != 200:
                    raise RuntimeError(f"large POST failed: {status} {data[:200]!r}")
            post_peak = poller.hwm()
        if can_reset:
            reset_peak_rss(sw.pid)
        with RssPoller(sw.pid) as poller:
            for _ in range(p.big_reps):
                t = time.perf_counter()
                status, data = request(conn, "GET", url)
                get_times.append(time.perf_counter() - t)
                if status != 200 or data != bodies[-1]:
                    raise RuntimeError(f"large GET returned {status}, {len(data)} bytes")
            get_peak = poller.hwm()
        conn.close()
        del data
    peak = max(post_peak, get_peak)
    post_t = statistics.median(post_times)
    get_t = statistics.median(get_times)
    res.note("POST times: " + ", ".join(f"{t:.3f}" for t in post_times))
    res.note("GET times: " + ", ".join(f"{t:.3f}" for t in get_times))
    res.note(f"server RSS idle {idle / MB:.0f} MB; peak during POSTs {post_peak / MB:.0f} MB, "
             f"during GETs {get_peak / MB:.0f} MB"
             + ("" if can_reset else " (VmHWM could not be reset between phases)"))
    base = f"{floor:.3f} s (fsync+hash)"
    for method, t in (("POST", post_t), ("GET", get_t)):
        ratio = t / floor
        res.add(f"{method} latency, {size_label} state (median of {p.big_reps})", f"{t:.3f} s",
                base, f"{ratio:.2f}x", "≤ 2.00x", ratio <= 2.0)
    ratio = peak / size
    if idle > size:
        res.note(f"the RSS ratio is dominated by the idle server ({idle / MB:.0f} MB); it is "
                 "meaningful only for the full-size (100 MB) run")
    res.add(f"peak server RSS (VmHWM), {size_label} state", f"{peak / MB:.0f} MB",
            f"{size / MB:.0f} MB (state)", f"{ratio:.2f}x", "≤ 3.00x", ratio <= 3.0)


# ----------------------------------------------------------------------------------------------
# 4. lock + unlock round trip


def sqlite_floor_ms(directory: Path, iters: int) -> float:
    """p50 of two durable SQLite commits (insert, then delete a lock row) in-process: WAL,
    synchronous=FULL, BEGIN IMMEDIATE, as stateward's metadata store is configured."""
    directory.mkdir(exist_ok=True)
    db = sqlite3.connect(directory / "floor.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE locks (path TEXT PRIMARY KEY, info BLOB)")
        samples = []
        for i in range(iters + 50):
            t = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO locks VALUES ('bench/lock', ?)", (lock_body(),))
            db.execute("COMMIT")
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM locks WHERE path = 'bench/lock'")
            db.execute("COMMIT")
            if i >= 50:
                samples.append((time.perf_counter() - t) * 1000)
    finally:
        db.close()
    return percentile(samples, 50)


def bench_lock(p: Params, root: Path, sw: Server, res: Results) -> None:
    err.print(f"[bold]4. lock+unlock round trip[/bold] ({p.lock_iters} iterations)")
    url = "/state/bench/lock/prod"
    bodies = [(b, body_headers(b)) for b in (lock_body() for _ in range(p.lock_iters + 50))]
    conn = connect(sw.port)
    samples: list[float] = []
    for i, (body, hdrs) in enumerate(bodies):
        t = time.perf_counter()
        s1, _ = request(conn, "LOCK", url, body, hdrs)
        s2, _ = request(conn, "UNLOCK", url, body, hdrs)
        elapsed = time.perf_counter() - t
        if s1 != 200 or s2 != 200:
            raise RuntimeError(f"LOCK/UNLOCK answered {s1}/{s2}")
        if i >= 50:  # the first 50 are warm-up
            samples.append(elapsed * 1000)
    conn.close()
    floor = sqlite_floor_ms(root / "sqlite-floor", min(p.lock_iters, 500))
    p50 = percentile(samples, 50)
    p99 = percentile(samples, 99)
    base = f"{floor:.2f} ms (2 SQLite commits)"
    res.add(f"LOCK+UNLOCK round trip p50 ({p.lock_iters} iterations)", f"{p50:.2f} ms", base,
            f"{p50 / floor:.2f}x", "≤ 2 ms", p50 <= 2.0)
    res.add("LOCK+UNLOCK round trip p99", f"{p99:.2f} ms", "—", "—", "(info)", None)
    res.note(f"lock round trip mean {statistics.mean(samples):.2f} ms, "
             f"max {max(samples):.2f} ms; in-process floor of two durable SQLite commits "
             f"p50 {floor:.2f} ms")


# ----------------------------------------------------------------------------------------------


SECTIONS = ("terraform", "throughput", "big", "lock")


def git_revision() -> str:
    """The commit of the checkout this script lives in (plus ``-dirty``), if it is one."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parent, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "(unknown revision)"
    return out.stdout.strip() or "(unknown revision)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and counts (smoke run)")
    ap.add_argument("--markdown", type=Path, help="also write the markdown table to this file")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    if unknown := sections - set(SECTIONS):
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    p = Params.quick() if args.quick else Params()
    if "terraform" in sections and not os.access(TERRAFORM, os.X_OK):
        ap.error(f"{TERRAFORM} is not available")

    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="stateward-bench-"))
    res = Results()
    res.note(f"stateward {git_revision()}; load average at start "
             f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        sw = stateward_server(root, "stateward")
        base = baseline_server(root)
        durable = baseline_server(root, durable=True)
        with running(sw, base, durable):
            if "terraform" in sections:
                bench_terraform(p, root, sw, res)
            if "throughput" in sections:
                bench_throughput(p, sw, base, durable, res)
            if "big" in sections:  # its own fresh server; the others stay idle meanwhile
                bench_big(p, root, res)
            if "lock" in sections:
                bench_lock(p, root, sw, res)
    finally:
        if args.keep:
            err.print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    res.note(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    elapsed = time.perf_counter() - started

    mode = "quick" if args.quick else "full"
    title = (f"stateward benchmark ({mode} run, {os.cpu_count()} CPUs, "
             f"Python {sys.version.split()[0]}, {elapsed:.0f} s)")
    out = Console()
    if not out.is_terminal:
        out = Console(width=150)  # do not wrap the table when piped to a file
    out.print(rich_table(res, title))
    notes = "\n".join(f"- {n}" for n in res.notes)
    md = f"**{title}**\n\n{markdown_table(res)}\n\nNotes:\n\n{notes}\n"
    print()
    print(md)
    if args.markdown:
        args.markdown.write_text(md)
        err.print(f"markdown written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
