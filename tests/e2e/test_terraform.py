"""End to end: the real Terraform binaries (1.11 and 0.15) against a real ``stateward serve``.

No network: configurations use only built-ins. Terraform 1.11 manages a ``terraform_data``
resource; Terraform 0.15 has no built-in resource, so its state holds outputs only (outputs
alone make state writes with serial + 1). Every test runs once per binary.

Terraform 0.15 (the cloudrail build) logs at TRACE on stderr and prefixes some stdout/stderr
writes with ``o:``/``e:``; :func:`clean` removes that noise and ANSI colours before assertions.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.support import ServerProcess, lock_body, md5_b64, terraform_env

pytestmark = pytest.mark.terraform

TF_TIMEOUT = 120
APPLY = ("apply", "-input=false", "-no-color", "-auto-approve", "-lock-timeout=0s")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PREFIX = re.compile(r"(?m)^[oe]:")
_LOG_LINE = re.compile(r"^\s*(\S+ \S+ )?\[(TRACE|DEBUG|INFO|WARN|ERROR)\]")

BASE_TF = """
variable "v" {
  type    = string
  default = "one"
}

output "name" {
  value = var.v
}

output "secret" {
  value     = "s3cr3t-${var.v}"
  sensitive = true
}
"""

RESOURCE_TF = """
resource "terraform_data" "r" {
  input = var.v
}
"""


# -- helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """One Terraform binary with a private HOME / CLI config."""

    version: str
    binary: str
    env: dict[str, str]

    @property
    def modern(self) -> bool:
        """Terraform 1.11: has ``terraform_data``, ``-migrate-state``, prints Lock Info."""
        return self.version == "1.11"


def clean(text: str) -> str:
    """Output without ANSI colours, 0.15's ``o:``/``e:`` prefixes and its debug log lines."""
    text = _PREFIX.sub("", _ANSI.sub("", text))
    return "\n".join(line for line in text.splitlines() if not _LOG_LINE.match(line))


def combined(r: subprocess.CompletedProcess[str]) -> str:
    return clean(r.stdout + "\n" + r.stderr)


def tf(
    client: Client, cwd: Path, *args: str, ok: bool | None = True
) -> subprocess.CompletedProcess[str]:
    """Run Terraform in ``cwd``; ``ok`` = expected success (None: don't check)."""
    r = subprocess.run(
        [client.binary, *args],
        cwd=cwd,
        env=client.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TF_TIMEOUT,
    )
    if ok is not None:
        assert (r.returncode == 0) == ok, (
            f"terraform {' '.join(args)} (v{client.version}) exited {r.returncode}:\n"
            + combined(r)[-6000:]
        )
    return r


def apply(
    client: Client, cwd: Path, value: str | None, ok: bool | None = True
) -> subprocess.CompletedProcess[str]:
    """``apply -auto-approve`` with ``-var=v=<value>`` (None: a config without ``var.v``)."""
    var = () if value is None else (f"-var=v={value}",)
    return tf(client, cwd, *APPLY, *var, ok=ok)


def init(client: Client, cwd: Path, *extra: str) -> None:
    tf(client, cwd, "init", "-input=false", "-no-color", *extra)


def http_backend(server: ServerProcess, path: str, **extra: str) -> dict[str, str]:
    url = server.state_url(path)
    return {"address": url, "lock_address": url, "unlock_address": url, **extra}


def write_config(
    cwd: Path, client: Client, backend: dict[str, str] | None = None, body: str | None = None
) -> Path:
    """Write ``main.tf``: optional ``backend "http"`` block, then ``body`` (default: the
    variable/outputs config, plus a ``terraform_data`` resource on Terraform 1.11)."""
    cwd.mkdir(parents=True, exist_ok=True)
    parts = []
    if backend is not None:
        settings = "\n".join(f'    {k} = "{v}"' for k, v in backend.items())
        parts.append(f'terraform {{\n  backend "http" {{\n{settings}\n  }}\n}}\n')
    if body is None:
        body = BASE_TF + (RESOURCE_TF if client.modern else "")
    parts.append(body)
    (cwd / "main.tf").write_text("\n".join(parts))
    return cwd


def current_state(server: ServerProcess, path: str) -> dict[str, Any] | None:
    r = httpx.get(server.state_url(path), timeout=10)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def state_bytes(server: ServerProcess, path: str) -> bytes:
    r = httpx.get(server.state_url(path), timeout=10)
    assert r.status_code == 200, r.text
    return r.content


def versions(server: ServerProcess, path: str) -> list[dict[str, Any]]:
    """Versions of ``path`` (newest first) from the JSON API; [] when there is no state."""
    r = httpx.get(f"{server.url}/api/v1/versions", params={"path": path}, timeout=10)
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


def events(server: ServerProcess, path: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.url}/api/v1/events", params={"path": path}, timeout=10)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


def lock_holder(server: ServerProcess, path: str) -> dict[str, Any] | None:
    r = httpx.get(server.state_url(path) + "/lock", timeout=10)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def take_lock(server: ServerProcess, url: str, who: str, method: str = "LOCK") -> str:
    """Take the lock as someone else would (a LockInfo body, as Terraform sends it)."""
    lock_id = str(uuid.uuid4())
    body = lock_body(lock_id, who=who)
    r = httpx.request(
        method,
        url,
        content=body,
        headers={"Content-Type": "application/json", "Content-MD5": md5_b64(body)},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return lock_id


def stateward(server: ServerProcess, *args: str) -> str:
    """The admin CLI, offline on the running server's data directory (and store)."""
    r = server.cli(*args, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def assert_lock_error(text: str, client: Client, holder_id: str) -> None:
    """The refused client names the lock it ran into.

    Both versions print ``HTTP remote state already locked: ID=<holder's ID>``. Terraform 1.11
    then prints a "Lock Info:" block, but (a Terraform quirk) with its *own* LockInfo, so the
    holder's ``Who`` never reaches the user; the holder's ID is what identifies it.
    """
    flat = " ".join(text.split())  # Terraform wraps its messages
    assert "Error acquiring the state lock" in flat, text
    assert f"HTTP remote state already locked: ID={holder_id}" in flat, text
    if client.modern:
        assert "Lock Info:" in text, text


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(params=["1.11", "0.15"])
def client(request: pytest.FixtureRequest, tf_binaries: dict[str, str], tmp_path: Path) -> Client:
    home = tmp_path / "home"
    home.mkdir()
    return Client(request.param, tf_binaries[request.param], terraform_env(home))


def state_path(client: Client, name: str) -> str:
    return f"e2e/{name}/tf{client.version}"


# -- tests --------------------------------------------------------------------------------


def test_init_apply_output_change_and_noop(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    path = state_path(client, "life")
    work = write_config(tmp_path / "w", client, http_backend(server, path))
    init(client, work)
    assert current_state(server, path) is None

    apply(client, work, "one")
    first = current_state(server, path)
    assert first is not None
    assert first["outputs"]["name"]["value"] == "one"
    assert first["outputs"]["secret"]["sensitive"] is True
    if client.modern:
        (res,) = first["resources"]
        assert (res["type"], res["name"]) == ("terraform_data", "r")
        # ``input`` is dynamically typed, so the state stores its type next to the value
        assert res["instances"][0]["attributes"]["input"]["value"] == "one"
    assert lock_holder(server, path) is None

    out = json.loads(clean(tf(client, work, "output", "-no-color", "-json").stdout))
    assert out["name"]["value"] == "one"
    assert out["secret"] == {"sensitive": True, "type": "string", "value": "s3cr3t-one"}
    raw = clean(tf(client, work, "output", "-no-color", "-raw", "name").stdout)
    assert raw.strip() == "one"

    apply(client, work, "two")
    second = current_state(server, path)
    assert second is not None
    assert second["outputs"]["name"]["value"] == "two"
    assert second["lineage"] == first["lineage"]
    assert second["serial"] == first["serial"] + 1
    assert [v["serial"] for v in versions(server, path)] == [second["serial"], first["serial"]]

    # Nothing changed: Terraform sends no POST and the server creates no version.
    apply(client, work, "two")
    assert current_state(server, path) == second
    assert len(versions(server, path)) == 2
    history = json.loads(stateward(server, "history", path, "--json"))
    assert [(v["seq"], v["current"]) for v in history] == [(2, True), (1, False)]
    assert all(v["lock_id"] for v in history), "writes were made under the lock"
    assert lock_holder(server, path) is None


def test_two_concurrent_applies_one_wins_no_lost_update(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    """Both processes start at once; neither gets ``-auto-approve``, so whichever takes the
    lock holds it at the approval prompt until the other has been refused: deterministic."""
    path = state_path(client, "race")
    dirs = {
        value: write_config(tmp_path / value, client, http_backend(server, path))
        for value in ("alpha", "beta")
    }
    for d in dirs.values():
        init(client, d)

    procs: dict[str, subprocess.Popen[str]] = {}
    logs: dict[str, Path] = {}
    for value, d in dirs.items():
        logs[value] = d / "apply.log"
        with open(logs[value], "w") as log:
            procs[value] = subprocess.Popen(
                [client.binary, "apply", "-no-color", "-lock-timeout=0s", f"-var=v={value}"],
                cwd=d,
                env=client.env,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
    try:
        deadline = time.monotonic() + TF_TIMEOUT
        while all(p.poll() is None for p in procs.values()):
            assert time.monotonic() < deadline, "neither apply finished"
            time.sleep(0.05)
        loser = next(v for v, p in procs.items() if p.returncode is not None)
        winner = next(v for v in procs if v != loser)
        holder = lock_holder(server, path)
        assert holder is not None, "the winner holds the lock while it waits for approval"
        win = procs[winner]
        assert win.stdin is not None
        win.stdin.write("yes\n")
        win.stdin.close()
        win.wait(TF_TIMEOUT)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stdin is not None and not p.stdin.closed:
                p.stdin.close()

    loser_text = clean(logs[loser].read_text())
    winner_text = clean(logs[winner].read_text())
    assert procs[loser].returncode != 0, loser_text
    assert procs[winner].returncode == 0, winner_text
    assert_lock_error(loser_text, client, holder["ID"])
    assert lock_holder(server, path) is None

    won = current_state(server, path)
    assert won is not None
    assert won["outputs"]["name"]["value"] == winner
    assert len(versions(server, path)) == 1

    # The refused side retries: it builds on the winner's state instead of replacing it.
    apply(client, dirs[loser], loser)
    final = current_state(server, path)
    assert final is not None
    assert final["outputs"]["name"]["value"] == loser
    assert final["lineage"] == won["lineage"]
    assert final["serial"] == won["serial"] + 1
    assert [v["serial"] for v in versions(server, path)] == [final["serial"], won["serial"]]


def test_foreign_lock_refuses_apply_until_force_unlock(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    path = state_path(client, "foreign")
    work = write_config(tmp_path / "w", client, http_backend(server, path))
    init(client, work)

    lock_id = take_lock(server, server.state_url(path), who="mallory@elsewhere")
    r = apply(client, work, "one", ok=False)
    assert_lock_error(combined(r), client, lock_id)
    holder = lock_holder(server, path)
    assert holder is not None
    assert (holder["ID"], holder["Who"]) == (lock_id, "mallory@elsewhere")
    assert current_state(server, path) is None, "a refused apply writes nothing"

    r = tf(client, work, "force-unlock", "-force", lock_id)
    assert "successfully unlocked" in combined(r)
    assert lock_holder(server, path) is None
    (event,) = [e for e in events(server, path) if e["action"] == "force-unlock"]
    assert lock_id in event["detail"]
    assert "mallory@elsewhere" in event["detail"]

    apply(client, work, "one")
    state = current_state(server, path)
    assert state is not None
    assert state["outputs"]["name"]["value"] == "one"


def test_remote_state_data_source_reads_outputs(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    path = state_path(client, "producer")
    producer = write_config(tmp_path / "producer", client, http_backend(server, path))
    init(client, producer)
    apply(client, producer, "shared")

    consumer = write_config(
        tmp_path / "consumer",
        client,
        body=f"""
data "terraform_remote_state" "p" {{
  backend = "http"
  config = {{
    address = "{server.state_url(path)}"
  }}
}}

output "from_remote" {{
  value = data.terraform_remote_state.p.outputs.name
}}

output "secret_from_remote" {{
  value     = data.terraform_remote_state.p.outputs.secret
  sensitive = true
}}
""",
    )
    init(client, consumer)
    apply(client, consumer, None)
    out = json.loads(clean(tf(client, consumer, "output", "-no-color", "-json").stdout))
    assert out["from_remote"]["value"] == "shared"
    assert out["secret_from_remote"]["value"] == "s3cr3t-shared"
    assert out["secret_from_remote"]["sensitive"] is True
    assert len(versions(server, path)) == 1, "reading remote state never writes it"
    assert lock_holder(server, path) is None


def test_migrate_local_state_into_backend(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    path = state_path(client, "migrated")
    work = write_config(tmp_path / "w", client)
    init(client, work)
    apply(client, work, "local")
    local = json.loads((work / "terraform.tfstate").read_text())

    write_config(work, client, http_backend(server, path))
    # 0.15.0 has no -migrate-state flag: a changed backend always offers to migrate.
    init(client, work, *(["-migrate-state"] if client.modern else []), "-force-copy")
    remote = current_state(server, path)
    assert remote is not None
    # The content moves over. The lineage does not: migrating from local state, both
    # Terraform versions upload the snapshot (a single POST) under a fresh lineage. That is
    # client behaviour, so lineage/serial are not compared with the local file here.
    assert remote["outputs"] == local["outputs"]
    assert remote["resources"] == local["resources"]
    raw = clean(tf(client, work, "output", "-no-color", "-raw", "name").stdout)
    assert raw.strip() == "local"

    apply(client, work, "remote")
    after = current_state(server, path)
    assert after is not None
    assert (after["lineage"], after["serial"]) == (remote["lineage"], remote["serial"] + 1)
    assert after["outputs"]["name"]["value"] == "remote"


def test_put_update_and_lock_url_with_post_delete(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    path = state_path(client, "methods")
    url = server.state_url(path)
    backend = {
        "address": url,
        "update_method": "PUT",
        "lock_address": f"{url}/lock",
        "lock_method": "POST",
        "unlock_address": f"{url}/lock",
        "unlock_method": "DELETE",
    }
    work = write_config(tmp_path / "w", client, backend)
    init(client, work)
    apply(client, work, "one")

    lock_id = take_lock(server, f"{url}/lock", who="mallory@elsewhere", method="POST")
    r = apply(client, work, "two", ok=False)
    assert_lock_error(combined(r), client, lock_id)
    tf(client, work, "force-unlock", "-force", lock_id)
    assert lock_holder(server, path) is None

    apply(client, work, "two")
    state = current_state(server, path)
    assert state is not None
    assert state["outputs"]["name"]["value"] == "two"
    rows = versions(server, path)
    assert len(rows) == 2
    assert all(v["lock_id"] for v in rows), "writes carried ?ID= of the lock taken by POST"

    assert server.log_path is not None
    log = server.log_path.read_text()
    assert f'"PUT /state/{path}?ID=' in log
    assert f'"POST /state/{path}?' not in log, "update_method = PUT is honoured"
    assert f'"POST /state/{path}/lock HTTP' in log
    assert f'"DELETE /state/{path}/lock HTTP' in log
    assert f'"LOCK /state/{path}' not in log


def test_state_push_of_older_serial_and_admin_override(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    path = state_path(client, "push")
    url = server.state_url(path)
    work = write_config(tmp_path / "w", client, http_backend(server, path))
    init(client, work)
    apply(client, work, "one")
    old = state_bytes(server, path)
    old_doc = json.loads(old)
    (work / "old.tfstate").write_bytes(old)
    apply(client, work, "two")
    apply(client, work, "three")
    newest = current_state(server, path)
    assert newest is not None
    assert newest["serial"] == old_doc["serial"] + 2

    # The client itself refuses to push an older serial.
    r = tf(client, work, "state", "push", "old.tfstate", ok=False)
    assert "cannot import state with serial" in combined(r)
    assert len(versions(server, path)) == 3

    # The server refuses it too, for writers that skip the client-side check.
    direct = httpx.post(
        url,
        content=old,
        headers={"Content-Type": "application/json", "Content-MD5": md5_b64(old)},
        timeout=10,
    )
    assert direct.status_code == 409, direct.text
    assert "stale write" in direct.text
    assert len(direct.text.strip().splitlines()) == 1, "a one-line, human-readable refusal"

    # `state push -force` is invisible on the wire (pushed serial + 1): the server says 409,
    # and Terraform reports it readably and releases its lock.
    r = tf(client, work, "state", "push", "-force", "old.tfstate", ok=False)
    text = combined(r)
    errors = [line for line in text.splitlines() if "409" in line]
    assert errors, text
    assert any("HTTP error: 409" in line for line in errors), text
    assert all(len(line) < 200 and line.isprintable() for line in errors), errors
    assert "Traceback" not in text
    assert "<html" not in text.lower()
    assert current_state(server, path) == newest
    assert lock_holder(server, path) is None

    # An admin allows exactly one guard-free write; the forced push then succeeds.
    stateward(server, "allow-next-write", path)
    tf(client, work, "state", "push", "-force", "old.tfstate")
    pushed = current_state(server, path)
    assert pushed is not None
    assert pushed["outputs"]["name"]["value"] == "one"
    assert pushed["lineage"] == old_doc["lineage"]
    assert pushed["serial"] < newest["serial"], "the override let the serial go back"
    assert len(versions(server, path)) == 4
    actions = [e["action"] for e in json.loads(stateward(server, "events", path, "--json"))]
    assert "override-next-write" in actions
    assert "override-consumed" in actions

    # The override was consumed: the guards are armed again ...
    again = httpx.post(
        url,
        content=old,
        headers={"Content-Type": "application/json", "Content-MD5": md5_b64(old)},
        timeout=10,
    )
    assert again.status_code == 409, again.text
    # ... and ordinary work continues on top of the pushed state.
    apply(client, work, "four")
    final = current_state(server, path)
    assert final is not None
    assert final["serial"] == pushed["serial"] + 1
    assert final["outputs"]["name"]["value"] == "four"
