"""The audit trail: one record per request and command, the hash chain, tampering, fail-closed
writes, and the SIEM sinks (JSON-lines file, RFC 5424 syslog over UDP and TCP)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.pg import Store
from tests.harness.support import ServerProcess, lock_body, make_state, md5_b64

MARKER = "audit-secret-marker-93f1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, module_store: Store) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("audit") / "data", store=module_store).start()
    yield proc
    proc.stop()


def records(srv: ServerProcess) -> list[dict[str, Any]]:
    out = srv.cli("audit", "export").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def new_records(srv: ServerProcess, before: int) -> list[dict[str, Any]]:
    return [r for r in records(srv) if r["seq"] > before and not r["operation"].startswith("cli ")]


def head(srv: ServerProcess) -> int:
    rows = records(srv)
    return rows[-1]["seq"] if rows else 0


def post(srv: ServerProcess, path: str, body: bytes, creds: bool = True, **params: str) -> int:
    r = httpx.post(srv.state_url(path, creds=creds), content=body, params=params,
                   headers={"Content-MD5": md5_b64(body)}, timeout=10)  # fmt: skip
    return r.status_code


def test_one_record_per_request_with_its_facts(srv: ServerProcess) -> None:
    path = f"audit/{uuid.uuid4().hex[:8]}/prod"
    before = head(srv)
    reader = srv.create_token(f"rd-{uuid.uuid4().hex[:6]}", "reader")
    lock_id = str(uuid.uuid4())
    lineage = str(uuid.uuid4())
    body1 = make_state(
        serial=1, lineage=lineage, outputs={"pw": {"value": MARKER, "type": "string"}}
    )
    assert post(srv, path, body1) == 200
    assert httpx.request("LOCK", srv.state_url(path), content=lock_body(lock_id)).status_code == 200
    assert post(srv, path, make_state(serial=2, lineage=lineage), ID=lock_id) == 200
    assert (
        httpx.request("UNLOCK", srv.state_url(path), content=lock_body(lock_id)).status_code == 200
    )
    assert httpx.get(srv.state_url(path)).status_code == 200
    assert httpx.get(srv.state_url(path, creds=False)).status_code == 401
    assert httpx.get(srv.state_url(path, creds=False), auth=("x", reader)).status_code == 200
    assert post(srv, path, make_state(serial=3, lineage=lineage), creds=False) == 401
    r = httpx.post(srv.state_url(path, creds=False), content=make_state(serial=3, lineage=lineage),
                   auth=("x", reader))  # fmt: skip
    assert r.status_code == 403
    assert post(srv, path, make_state(serial=1, lineage=lineage)) == 409  # stale
    assert httpx.get(srv.state_url("bad/@path")).status_code == 400
    assert httpx.get(f"{srv.url}/api/v1/versions", params={"path": path}).status_code == 200

    rows = new_records(srv, before)
    summary = [(r["operation"], r["action"], r["outcome"], r["status"]) for r in rows]
    assert summary == [
        ("POST /state", "write", "ok", 200),
        ("LOCK /state", "lock", "ok", 200),
        ("POST /state", "write", "ok", 200),
        ("UNLOCK /state", "unlock", "ok", 200),
        ("GET /state", "read", "ok", 200),
        ("GET /state", "authenticate", "denied", 401),
        ("GET /state", "read", "ok", 200),
        ("POST /state", "authenticate", "denied", 401),
        ("POST /state", "write", "denied", 403),
        ("POST /state", "write", "failed", 409),
        ("GET /state", "request", "failed", 400),
        ("GET /api/v1/versions", "history", "ok", 200),
    ], summary
    first, lock, locked_write = rows[0], rows[1], rows[2]
    assert first["principal"] == "token:initial-admin" and first["source"] == "127.0.0.1"
    assert (first["version"], first["serial"], first["bytes_in"]) == (1, 1, len(body1))
    assert lock["lock_id"] == lock_id and locked_write["lock_id"] == lock_id
    assert locked_write["version"] == 2 and locked_write["prev_resources"] == 1
    assert rows[4]["bytes_out"] > 0 and rows[6]["principal"].startswith("token:rd-")
    assert "does not grant write" in rows[8]["reason"]
    assert "stale write" in rows[9]["reason"]
    assert all(r["path"] == path for r in rows[:10])
    assert len({r["request_id"] for r in rows}) == len(rows)
    # nothing secret in the trail: no state values, no token
    everything = srv.cli("audit", "export").stdout
    assert MARKER not in everything and reader not in everything
    assert srv.token is not None and srv.token not in everything


def test_cli_commands_are_recorded(srv: ServerProcess) -> None:
    before = head(srv)
    srv.cli("list")
    srv.cli("history", "no/such/path", check=False)
    rows = records(srv)
    cli_rows = [r for r in rows if r["seq"] > before and not r["operation"].startswith("cli audit")]
    assert [(r["operation"], r["outcome"], r["status"]) for r in cli_rows] == [
        ("cli list", "ok", 200),
        ("cli history", "failed", 404),
    ]
    assert cli_rows[0]["principal"].startswith("cli:") and cli_rows[0]["source"] == "cli"


def test_verify_and_report(srv: ServerProcess) -> None:
    out = srv.cli("audit", "verify").stdout
    assert "audit trail intact" in out
    path = f"report/{uuid.uuid4().hex[:8]}/prod"
    assert post(srv, path, make_state()) == 200
    report = srv.cli("audit", "report", path).stdout
    assert "token:initial-admin" in report and "127.0.0.1" in report and "write 1" in report


# -- tampering ------------------------------------------------------------------------------


@pytest.fixture
def trail(tmp_path: Path, store: Store) -> Iterator[ServerProcess]:
    """A fresh server with a few records, stopped, for direct database surgery."""
    srv = ServerProcess(tmp_path / "data", store=store).start()
    lineage = str(uuid.uuid4())
    for serial in range(1, 5):
        assert post(srv, "t/app/prod", make_state(serial=serial, lineage=lineage)) == 200
    srv.stop()
    yield srv


def sql(srv: ServerProcess, statement: str, *args: Any) -> list[Any]:
    """Tampering goes straight to the server's database (its SQLite file, or PostgreSQL)."""
    assert srv.store is not None
    return srv.store.sql(srv.data_dir, statement, *args)


def verify_fails_at(srv: ServerProcess, seq: int) -> str:
    r = srv.cli("audit", "verify", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"BROKEN at record {seq}:" in r.stderr, r.stderr
    return r.stderr


def test_edited_record_is_found(trail: ServerProcess) -> None:
    (text,) = sql(trail, "SELECT record FROM audit WHERE seq = 3")[0]
    doc = json.loads(text)
    doc["principal"] = "token:someone-else"
    sql(trail, "UPDATE audit SET record = ? WHERE seq = 3", json.dumps(doc))
    assert "hash mismatch" in verify_fails_at(trail, 3)


def test_edited_column_is_found(trail: ServerProcess) -> None:
    sql(trail, "UPDATE audit SET hash = ? WHERE seq = 2", "f" * 64)
    verify_fails_at(trail, 2)


def test_deleted_record_is_found(trail: ServerProcess) -> None:
    sql(trail, "DELETE FROM audit WHERE seq = 2")
    assert "deleted or moved" in verify_fails_at(trail, 3)


def test_deleted_last_records_leave_a_shorter_but_valid_chain(trail: ServerProcess) -> None:
    """Truncating the end cannot be seen from the chain alone: the count in a shipped copy
    (sinks) is what reveals it; verify reports how many records it checked."""
    (n,) = sql(trail, "SELECT count(*) FROM audit")[0]
    sql(trail, "DELETE FROM audit WHERE seq = ?", n)
    out = trail.cli("audit", "verify").stdout
    assert f"{n - 1} record(s)" in out or f"{n} record(s)" in out


def test_inserted_record_is_found(trail: ServerProcess) -> None:
    rows = sql(trail, "SELECT seq, at, principal, action, path, outcome, prev_hash, hash, record "
                      "FROM audit ORDER BY seq")  # fmt: skip
    # shift records 3.. up by one and forge a record 3 that links to record 2
    for row in reversed(rows[2:]):
        sql(trail, "UPDATE audit SET seq = ? WHERE seq = ?", row[0] + 1, row[0])
    doc = json.loads(rows[2][8])
    doc.update(seq=3, principal="token:forger", prev_hash=rows[1][7])
    values = (3, doc["at"], "token:forger", doc["action"], doc["path"], doc["outcome"],
              rows[1][7], "0" * 64, json.dumps(doc))  # fmt: skip
    sql(trail, "INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?)", *values)
    verify_fails_at(trail, 3)


def test_reordered_records_are_found(trail: ServerProcess) -> None:
    sql(trail, "UPDATE audit SET seq = -1 WHERE seq = 2")
    sql(trail, "UPDATE audit SET seq = 2 WHERE seq = 3")
    sql(trail, "UPDATE audit SET seq = 3 WHERE seq = -1")
    verify_fails_at(trail, 2)


# -- fail closed ------------------------------------------------------------------------------


def test_audit_write_failure_fails_the_request_and_changes_nothing(
    tmp_path: Path, store: Store
) -> None:
    srv = ServerProcess(tmp_path / "data", store=store).start()
    try:
        lineage = str(uuid.uuid4())
        assert post(srv, "fc/app/prod", make_state(serial=1, lineage=lineage)) == 200
        if store.postgres:
            sql(srv, "CREATE FUNCTION no_audit() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN RAISE EXCEPTION 'audit disk full'; END $$")  # fmt: skip
            sql(srv, "CREATE TRIGGER no_audit BEFORE INSERT ON audit "
                     "FOR EACH ROW EXECUTE FUNCTION no_audit()")  # fmt: skip
        else:
            sql(srv, "CREATE TRIGGER no_audit BEFORE INSERT ON audit "
                     "BEGIN SELECT RAISE(ABORT, 'audit disk full'); END")  # fmt: skip
        assert post(srv, "fc/app/prod", make_state(serial=2, lineage=lineage)) == 503
        assert httpx.get(srv.state_url("fc/app/prod")).status_code == 503  # reads too
        lock = httpx.request("LOCK", srv.state_url("fc/app/prod"), content=lock_body())
        assert lock.status_code == 503
        assert httpx.get(srv.state_url("fc/app/prod", creds=False)).status_code == 503
        sql(srv, "DROP TRIGGER no_audit" + (" ON audit" if store.postgres else ""))
        state = httpx.get(srv.state_url("fc/app/prod"))
        assert state.status_code == 200 and state.json()["serial"] == 1  # nothing changed
        assert httpx.get(srv.state_url("fc/app/prod") + "/lock").status_code == 404
        versions = httpx.get(f"{srv.url}/api/v1/versions", params={"path": "fc/app/prod"})
        assert [v["seq"] for v in versions.json()] == [1]
        assert "audit trail intact" in srv.cli("audit", "verify").stdout
    finally:
        srv.stop()


# -- sinks ------------------------------------------------------------------------------------


class UdpReceiver:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.messages: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(65535))
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class TcpReceiver:
    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.data = b""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            while chunk := conn.recv(65536):
                self.data += chunk

    def close(self) -> None:
        self._thread.join(timeout=5)
        self.server.close()

    def frames(self) -> list[bytes]:
        out, data = [], self.data
        while data:
            length, _, rest = data.partition(b" ")
            out.append(rest[: int(length)])
            data = rest[int(length) :]
        return out


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_sinks_ship_every_record(tmp_path: Path, store: Store) -> None:
    udp, tcp = UdpReceiver(), TcpReceiver()
    jsonl = tmp_path / "siem" / "audit.jsonl"
    cfg = tmp_path / "sinks.toml"
    cfg.write_text(
        f'[[audit_sinks]]\ntype = "file"\npath = "{jsonl}"\n'
        f'[[audit_sinks]]\ntype = "syslog"\nport = {udp.port}\n'
        f'[[audit_sinks]]\ntype = "syslog"\nprotocol = "tcp"\nport = {tcp.port}\n'
        'facility = "local0"\n'
    )
    srv = ServerProcess(tmp_path / "data", config=cfg, store=store).start()
    try:
        assert post(srv, "sink/app/prod", make_state()) == 200
        assert httpx.get(srv.state_url("sink/app/prod", creds=False)).status_code == 401
        srv.cli("list")  # a CLI record is shipped too (the follower reads the database)
        wait_for(lambda: jsonl.exists() and len(jsonl.read_text().splitlines()) >= 3)
        wait_for(lambda: len(udp.messages) >= 3 and len(tcp.frames()) >= 3)
        lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
        assert [x["seq"] for x in lines] == list(range(1, len(lines) + 1))
        assert {x["operation"] for x in lines} >= {"POST /state", "GET /state", "cli list"}
        first = udp.messages[0]
        # <authpriv(10)*8 + info(6)>1 TIMESTAMP HOST stateward PID MSGID [SD] BOM JSON
        assert first.startswith(b"<86>1 ")
        header, _, msg = first.partition(b"\xef\xbb\xbf")
        assert b" stateward " in header and b" write [stateward@32473 " in header
        assert b'path="sink/app/prod"' in header and b'outcome="ok"' in header
        assert json.loads(msg)["seq"] == 1
        denied = [m for m in udp.messages if b'outcome="denied"' in m]
        assert denied and denied[0].startswith(b"<85>1 ")  # notice
        assert tcp.frames()[0].startswith(b"<134>1 ")  # local0(16)*8 + 6
    finally:
        srv.stop()
        udp.close()
        tcp.close()
