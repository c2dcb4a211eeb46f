"""Alerts (docs/alerts.md): rules over the audit trail, stored, logged and POSTed to webhooks.

Server tests run a real ``stateward serve`` with ``[[alert_rules]]`` and a webhook pointing at a
receiver in this process (stdlib ``http.server`` on loopback) that checks every signature
itself. Each config also has a *sentinel* rule (force-unlock on ``sentinel/**``): the follower
handles records in order, so once the alert of a force-unlock sent last is stored, every
earlier record has been evaluated, and "exactly N alerts" can be asserted without sleeping.
Window and burst logic are unit-tested on the evaluator with fixed times.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from stateward.config import ConfigError, load_settings
from stateward.config.alerts import AlertRule, WebhookConfig
from stateward.domain.alerts import AlertDraft, dedup_key
from stateward.domain.audit_record import AuditRecord
from stateward.domain.errors import Forbidden, NotFound
from stateward.domain.principal import Principal
from stateward.jobs.evaluator import AlertEvaluator
from stateward.jobs.webhook import WebhookSender, sign, verify
from stateward.service.core import StateService
from stateward.service.views import LockView
from tests.e2e.test_terraform import Client, init, tf, write_config
from tests.harness.pg import Store
from tests.harness.support import (
    TERRAFORM_111,
    ServerProcess,
    free_port,
    lock_body,
    make_state,
    md5_b64,
    terraform_env,
    tofu_force_unlock_body,
)

SECRET = b"alert-webhook-test-secret-0123456789"
SENTINEL_RULE = """
[[alert_rules]]
name = "sentinel"
kind = "force-unlock"
paths = ["sentinel/**"]
"""
RULES = TypeAdapter(list[AlertRule])


# -- a webhook receiver ----------------------------------------------------------------------


class Receiver:
    """Records each POST; answers with the queued statuses, then 200."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.statuses = deque(statuses)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = outer.statuses.popleft() if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/stateward?team=ops"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def alerts(self, timeout: float = 20.0, *, count: int = 1) -> list[dict[str, Any]]:
        """Wait for ``count`` POSTs; every one must carry a valid signature."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                posts = list(self.posts)
            if len(posts) >= count:
                return [checked(headers, body) for headers, body in posts]
            time.sleep(0.05)
        raise AssertionError(f"{len(self.posts)} webhook POST(s), expected {count}")


def checked(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """Verify a POST the way docs/alerts.md tells receivers to, independently of stateward."""
    timestamp = headers["x-stateward-timestamp"]
    assert abs(time.time() - int(timestamp)) < 300
    expected = hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-stateward-signature"], "sha256=" + expected)
    assert headers["content-type"] == "application/json"
    assert headers["x-stateward-delivery"]
    assert b"s3cr3t" not in body and b"swt_" not in body, "no state content, no token"
    doc: dict[str, Any] = json.loads(body)
    return doc


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# -- servers with alert rules ----------------------------------------------------------------


Start = Callable[..., ServerProcess]


@pytest.fixture
def alerting(tmp_path: Path, store: Store) -> Iterator[Start]:
    """``alerting(rules_toml, webhook_url)`` starts a server with those rules (plus the
    sentinel) and one webhook; ``top`` adds top-level settings, ``hook`` webhook keys."""
    servers: list[ServerProcess] = []
    secret = tmp_path / "hook.secret"
    secret.write_bytes(SECRET + b"\n")

    def start(rules: str, url: str | None, top: str = "", hook: str = "") -> ServerProcess:
        webhook = ""
        if url is not None:
            webhook = (
                f'[[alert_webhooks]]\nurl = "{url}"\nsecret_file = "{secret}"\n'
                f"backoff_seconds = 0.05\nmax_attempts = 3\ntimeout_seconds = 2\n{hook}\n"
            )
        config = tmp_path / f"stateward-{len(servers)}.toml"
        config.write_text(
            f"audit_follow_interval_seconds = 0.1\n{top}\n{SENTINEL_RULE}\n{rules}\n{webhook}"
        )
        srv = ServerProcess(tmp_path / f"data{len(servers)}", config=config, store=store)
        servers.append(srv)
        return srv.start()

    yield start
    for srv in servers:
        srv.stop()


def api_alerts(server: ServerProcess, include_acknowledged: bool = True) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{server.url}/api/v1/alerts",
        params={"all": str(include_acknowledged).lower()},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


def settle(server: ServerProcess, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Every request so far evaluated: force-unlock a sentinel path, wait for its alert.
    Returns the stored alerts, oldest first, without sentinels."""
    path = f"sentinel/{uuid.uuid4().hex[:8]}"
    r = httpx.request("UNLOCK", server.state_url(path), timeout=10)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = api_alerts(server)
        if any(a["path"] == path for a in rows):
            return [a for a in reversed(rows) if a["rule"] != "sentinel"]
        time.sleep(0.05)
    raise AssertionError("the alert follower did not catch up")


def without_sentinels(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["rule"] != "sentinel"]


def put_state(server: ServerProcess, path: str, body: bytes, token: str | None = None) -> int:
    url = server.state_url(path) if token is None else _url_as(server, path, token)
    r = httpx.post(
        url,
        content=body,
        headers={"Content-Type": "application/json", "Content-MD5": md5_b64(body)},
        timeout=10,
    )
    return r.status_code


def _url_as(server: ServerProcess, path: str, token: str) -> str:
    return f"http://user:{token}@127.0.0.1:{server.port}/state/{path}"


def take_lock(server: ServerProcess, path: str) -> str:
    lock_id = str(uuid.uuid4())
    body = lock_body(lock_id, who="mallory@elsewhere")
    r = httpx.request(
        "LOCK",
        server.state_url(path),
        content=body,
        headers={"Content-Type": "application/json", "Content-MD5": md5_b64(body)},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return lock_id


def server_log(server: ServerProcess) -> str:
    assert server.log_path is not None
    return server.log_path.read_text(errors="replace")


# -- one test per rule kind, through a real server and a real receiver ------------------------


def test_delete_alert_is_stored_logged_signed_and_honours_windows(
    alerting: Start, receiver: Receiver
) -> None:
    srv = alerting(
        """
[[alert_rules]]
name = "deletes"
kind = "delete"
severity = "critical"

[[alert_rules]]
name = "deletes-outside-an-always-open-window"
kind = "delete"
outside_windows = [{start = "00:00", end = "24:00"}]

[[alert_rules]]
name = "deletes-elsewhere"
kind = "delete"
paths = ["other/**"]
""",
        receiver.url,
    )
    path = "team/app/prod"
    assert put_state(srv, path, make_state(1)) == 200
    assert httpx.delete(srv.state_url(path), timeout=10).status_code == 200

    (alert,) = settle(srv)
    assert alert["rule"] == "deletes" and alert["kind"] == "delete"
    assert alert["severity"] == "critical" and alert["path"] == path
    assert alert["principal"] == "token:initial-admin"
    assert alert["acknowledged_at"] is None and alert["audit_seq"] > 0

    (doc,) = without_sentinels(receiver.alerts(count=2))
    assert doc["id"] == alert["id"] and doc["type"] == "stateward.alert"
    assert doc["text"].startswith("[stateward] CRITICAL delete: token:initial-admin deleted")
    assert doc["audit"]["action"] == "delete" and doc["audit"]["seq"] == alert["audit_seq"]
    assert (doc["audit"]["operation"], doc["audit"]["path"]) == ("DELETE /state", path)
    assert doc["audit"]["source"] == "127.0.0.1"
    log = server_log(srv)
    (line,) = [x for x in log.splitlines() if "rule deletes)" in x]
    assert line.startswith("WARNING:") and f"alert #{alert['id']} critical delete" in line
    metrics = httpx.get(f"{srv.url}/metrics", timeout=10).text
    assert 'stateward_alerts_total{rule_kind="delete"} 1.0' in metrics


def test_rollback_alert(alerting: Start, receiver: Receiver) -> None:
    srv = alerting('[[alert_rules]]\nname = "rollbacks"\nkind = "rollback"\n', receiver.url)
    path = "team/app/rb"
    lineage = str(uuid.uuid4())
    assert put_state(srv, path, make_state(1, lineage)) == 200
    assert put_state(srv, path, make_state(2, lineage)) == 200
    r = httpx.post(f"{srv.url}/api/v1/rollback", json={"path": path, "seq": 1}, timeout=10)
    assert r.status_code == 200, r.text

    (alert,) = settle(srv)
    assert (alert["kind"], alert["severity"], alert["path"]) == ("rollback", "warning", path)
    assert "rolled back team/app/rb (new version 3)" in alert["summary"]
    (doc,) = without_sentinels(receiver.alerts(count=2))
    assert doc["audit"]["operation"] == "POST /api/v1/rollback"


def test_break_lock_alert_from_the_cli_and_the_api(alerting: Start, receiver: Receiver) -> None:
    srv = alerting('[[alert_rules]]\nname = "breaks"\nkind = "break-lock"\n', receiver.url)
    take_lock(srv, "team/a")
    out = srv.cli("locks", "break", "team/a").stdout
    assert "broke lock" in out
    take_lock(srv, "team/b")
    r = httpx.post(f"{srv.url}/api/v1/locks/break", json={"path": "team/b"}, timeout=10)
    assert r.status_code == 200, r.text

    cli_alert, api_alert = settle(srv)
    assert cli_alert["path"] == "team/a" and cli_alert["principal"].startswith("cli:")
    assert "via cli locks break" in cli_alert["summary"]
    assert api_alert["path"] == "team/b" and api_alert["principal"] == "token:initial-admin"
    docs = without_sentinels(receiver.alerts(count=3))
    assert sorted(d["audit"]["operation"] for d in docs) == [
        "POST /api/v1/locks/break",
        "cli locks break",
    ]


@pytest.mark.terraform
def test_real_terraform_force_unlock_raises_the_alert(
    alerting: Start, receiver: Receiver, tmp_path: Path
) -> None:
    srv = alerting(
        '[[alert_rules]]\nname = "force-unlocks"\nkind = "force-unlock"\n'
        'paths = ["tf/**", "tofu/**"]\nseverity = "critical"\n',
        receiver.url,
    )
    token = srv.create_token("ci-tf", "admin")
    home = tmp_path / "home"
    home.mkdir()
    client = Client("1.11", TERRAFORM_111, terraform_env(home, token))
    path = "tf/net/prod"
    url = srv.state_url(path, creds=False)
    work = write_config(
        tmp_path / "w", client, {"address": url, "lock_address": url, "unlock_address": url}
    )
    init(client, work)
    lock_id = take_lock(srv, path)
    r = tf(client, work, "force-unlock", "-force", lock_id)
    assert "successfully unlocked" in (r.stdout + r.stderr)

    # OpenTofu >= 1.10 sends the ID with every other field empty: the same alert
    tofu_id = take_lock(srv, "tofu/net/prod")
    body = tofu_force_unlock_body(tofu_id)
    r2 = httpx.request(
        "UNLOCK",
        srv.state_url("tofu/net/prod"),
        content=body,
        headers={"Content-Type": "application/json", "Content-MD5": md5_b64(body)},
        timeout=10,
    )
    assert r2.status_code == 200, r2.text

    tf_alert, tofu_alert = settle(srv)
    assert (tf_alert["kind"], tf_alert["path"]) == ("force-unlock", path)
    assert tf_alert["principal"] == "token:ci-tf" and tf_alert["severity"] == "critical"
    assert f"(lock {lock_id})" in tf_alert["summary"]
    assert tofu_alert["path"] == "tofu/net/prod" and tofu_id in tofu_alert["summary"]
    docs = without_sentinels(receiver.alerts(count=3))
    tf_doc = next(d for d in docs if d["path"] == path)
    assert tf_doc["audit"]["lock_id"] == lock_id
    assert tf_doc["audit"]["source"] == "127.0.0.1" and tf_doc["audit"]["action"] == "force-unlock"
    assert tf_doc["audit"]["operation"] == "UNLOCK /state"


def test_unknown_network_alert(alerting: Start, receiver: Receiver) -> None:
    srv = alerting(
        """
[[alert_rules]]
name = "office-only"
kind = "unknown-network"
allowed_cidrs = ["10.0.0.0/8", "192.168.0.0/16"]
paths = ["net/**"]

[[alert_rules]]
name = "loopback-is-fine"
kind = "unknown-network"
allowed_cidrs = ["127.0.0.0/8"]
""",
        receiver.url,
    )
    reader = srv.create_token("reader", "reader")
    assert put_state(srv, "net/a", make_state(1)) == 200
    assert httpx.get(srv.state_url("net/a"), timeout=10).status_code == 200  # repeat: quiet
    assert put_state(srv, "net/a", make_state(2), token=reader) == 403  # another principal
    srv.cli("list")  # the offline CLI has no address

    first, refused = settle(srv)
    assert first["rule"] == "office-only" and first["principal"] == "token:initial-admin"
    assert "did write net/a from 127.0.0.1, outside the allowed networks" in first["summary"]
    assert refused["principal"] == "token:reader"
    assert "was refused write net/a" in refused["summary"]
    assert len(without_sentinels(receiver.alerts(count=3))) == 2


def test_auth_failures_alert_once_per_burst(alerting: Start, receiver: Receiver) -> None:
    srv = alerting(
        """
[[alert_rules]]
name = "brute-force"
kind = "auth-failures"
count = 3
window_minutes = 5
overall_count = 5
""",
        receiver.url,
    )
    for _ in range(6):
        r = httpx.get(_url_as(srv, "team/x", "swt_" + "x" * 43), timeout=10)
        assert r.status_code == 401

    per_source, overall = settle(srv)
    assert per_source["kind"] == "auth-failures" and per_source["principal"] == "anonymous"
    assert "3 failed authentications from 127.0.0.1 within 5 min" in per_source["summary"]
    assert "5 failed authentications from all addresses" in overall["summary"]
    docs = without_sentinels(receiver.alerts(count=3))
    assert {d["details"]["scope"] for d in docs} == {"source 127.0.0.1", "overall"}
    assert all(d["audit"]["action"] == "authenticate" for d in docs)
    assert all(d["audit"]["status"] == 401 for d in docs)


def test_mass_destroy_alert(alerting: Start, receiver: Receiver) -> None:
    srv = alerting(
        '[[alert_rules]]\nname = "mass-destroy"\nkind = "mass-destroy"\npercent = 50\n'
        "min_resources = 4\n",
        receiver.url,
    )
    lineage = str(uuid.uuid4())
    assert put_state(srv, "big/app", make_state(1, lineage, resources=10)) == 200
    assert put_state(srv, "big/app", make_state(2, lineage, resources=6)) == 200  # -40%: quiet
    assert put_state(srv, "big/app", make_state(3, lineage, resources=2)) == 200  # -67%
    small = str(uuid.uuid4())
    assert put_state(srv, "small/app", make_state(1, small, resources=3)) == 200
    assert put_state(srv, "small/app", make_state(2, small, resources=0)) == 200  # prev < 4

    (alert,) = settle(srv)
    assert (alert["kind"], alert["severity"], alert["path"]) == (
        "mass-destroy",
        "critical",
        "big/app",
    )
    assert "with 2 managed resources, down from 6 (-67%)" in alert["summary"]
    (doc,) = without_sentinels(receiver.alerts(count=2))
    assert doc["details"] == {"resources": 2, "prev_resources": 6, "drop_percent": 66.7}
    assert (doc["audit"]["resources"], doc["audit"]["prev_resources"]) == (2, 6)


def test_guard_refusal_alert(alerting: Start, receiver: Receiver) -> None:
    srv = alerting('[[alert_rules]]\nname = "guards"\nkind = "guard-refusal"\n', receiver.url)
    lineage = str(uuid.uuid4())
    assert put_state(srv, "g/app", make_state(5, lineage)) == 200
    assert put_state(srv, "g/app", make_state(3, lineage)) == 409
    assert put_state(srv, "g/app", make_state(9)) == 409  # another lineage

    stale, lineage_alert = settle(srv)
    assert stale["kind"] == "guard-refusal" and stale["severity"] == "info"
    assert "refused from 127.0.0.1: stale write: serial 3" in stale["summary"]
    assert "lineage mismatch" in lineage_alert["summary"]
    docs = without_sentinels(receiver.alerts(count=3))
    assert {(d["audit"]["outcome"], d["audit"]["status"]) for d in docs} == {("failed", 409)}


def test_long_lock_alerts_once_per_lock_id(alerting: Start, receiver: Receiver) -> None:
    srv = alerting(
        '[[alert_rules]]\nname = "stuck-locks"\nkind = "long-lock"\nseconds = 0.5\n',
        receiver.url,
    )
    first = take_lock(srv, "ll/app")
    (doc,) = without_sentinels(receiver.alerts(count=1))
    assert doc["kind"] == "long-lock" and doc["path"] == "ll/app"
    assert doc["audit"] is None and doc["audit_seq"] is None
    assert doc["details"]["lock"]["id"] == first and doc["details"]["lock"]["who"] == (
        "mallory@elsewhere"
    )
    assert f"lock {first}" in doc["summary"] and "by mallory@elsewhere" in doc["summary"]
    time.sleep(1.0)  # ten more polls: still one alert for this lock
    assert len(api_alerts(srv)) == 1

    assert httpx.request("UNLOCK", srv.state_url("ll/app"), timeout=10).status_code == 200
    second = take_lock(srv, "ll/app")
    docs = receiver.alerts(count=2)
    assert [d["details"]["lock"]["id"] for d in docs] == [first, second]


def test_decryption_failure_alert_after_a_restart(alerting: Start, receiver: Receiver) -> None:
    srv = alerting(
        '[[alert_rules]]\nname = "tampering"\nkind = "decryption-failure"\n', receiver.url
    )
    assert put_state(srv, "enc/app", make_state(1)) == 200
    srv.stop()  # the server caches bodies it wrote: restart to read the blob from disk
    assert srv.store is not None
    (blob,) = srv.store.stored_blobs(srv.data_dir)  # its file, or its object in the bucket
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01  # the GCM tag
    blob.write_bytes(bytes(data))
    srv.start()

    r = httpx.get(srv.state_url("enc/app"), timeout=10)
    assert r.status_code == 503
    (alert,) = settle(srv)
    assert (alert["kind"], alert["severity"]) == ("decryption-failure", "critical")
    assert (
        "GET /state of enc/app by token:initial-admin" in alert["summary"]
        and "unreadable" in alert["summary"]
    )
    (doc,) = without_sentinels(receiver.alerts(count=2))
    assert doc["audit"]["status"] == 503


def test_rare_reader_alert(alerting: Start, receiver: Receiver) -> None:
    srv = alerting(
        '[[alert_rules]]\nname = "rare"\nkind = "rare-reader"\ndays = 30\npaths = ["rr/**"]\n',
        receiver.url,
    )
    reader = srv.create_token("auditor", "reader")
    assert put_state(srv, "rr/app", make_state(1)) == 200
    assert httpx.get(srv.state_url("rr/app"), timeout=10).status_code == 200
    assert httpx.get(srv.state_url("rr/app"), timeout=10).status_code == 200  # read before
    assert httpx.get(_url_as(srv, "rr/app", reader), timeout=10).status_code == 200

    admin, auditor = settle(srv)
    assert admin["principal"] == "token:initial-admin" and auditor["principal"] == "token:auditor"
    assert "its first read of it in 30 days" in auditor["summary"]
    assert len(without_sentinels(receiver.alerts(count=3))) == 2


# -- delivery ---------------------------------------------------------------------------------


def test_webhook_retries_after_500_then_succeeds(alerting: Start) -> None:
    flaky = Receiver(statuses=(500, 503))
    try:
        srv = alerting(
            '[[alert_rules]]\nname = "deletes"\nkind = "delete"\n',
            flaky.url,
            hook='kinds = ["delete"]',  # the sentinel's force-unlocks are not sent
        )
        assert put_state(srv, "r/app", make_state(1)) == 200
        assert httpx.delete(srv.state_url("r/app"), timeout=10).status_code == 200
        docs = flaky.alerts(count=3)  # two failures, then delivered
        assert [d["kind"] for d in docs] == ["delete"] * 3
        deliveries = {headers["x-stateward-delivery"] for headers, _ in flaky.posts}
        assert len(deliveries) == 1, "one delivery ID across the attempts"
        time.sleep(0.5)
        assert len(flaky.posts) == 3, "no attempt after a success"
        log = server_log(srv)
        assert "attempt 1/3 failed (HTTP 500); retrying in 0.05s" in log
        assert "attempt 2/3 failed (HTTP 503); retrying in 0.1s" in log
        assert f"alert #{docs[0]['id']} delivered" in log
        assert "/hooks/stateward" not in log, "the webhook's path is never logged"
    finally:
        flaky.close()


def test_receiver_down_does_not_touch_requests(alerting: Start) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"
    srv = alerting('[[alert_rules]]\nname = "deletes"\nkind = "delete"\n', down)
    for i in range(3):
        assert put_state(srv, f"d/app{i}", make_state(1)) == 200
        assert httpx.delete(srv.state_url(f"d/app{i}"), timeout=10).status_code == 200
    alerts = settle(srv)
    assert [a["path"] for a in alerts] == ["d/app0", "d/app1", "d/app2"]
    deadline = time.monotonic() + 20
    while "not delivered" not in server_log(srv) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "ConnectionRefusedError" in server_log(srv)


def test_ack_via_cli_and_api(alerting: Start) -> None:
    srv = alerting('[[alert_rules]]\nname = "deletes"\nkind = "delete"\n', None)
    for i in range(3):
        assert put_state(srv, f"ack/app{i}", make_state(1)) == 200
        assert httpx.delete(srv.state_url(f"ack/app{i}"), timeout=10).status_code == 200
    ids = [a["id"] for a in settle(srv)]
    assert len(ids) == 3
    sentinels = [a["id"] for a in api_alerts(srv) if a["rule"] == "sentinel"]

    listed = json.loads(srv.cli("alerts", "--json").stdout)
    assert sorted(a["id"] for a in listed) == sorted([*ids, *sentinels])
    out = srv.cli("alerts", "ack", str(ids[0]), *map(str, sentinels)).stdout
    assert f"acknowledged #{ids[0]}" in out
    assert srv.cli("alerts", "ack", str(ids[0])).stdout.strip() == f"already acknowledged #{ids[0]}"

    open_ids = [a["id"] for a in api_alerts(srv, include_acknowledged=False)]
    assert sorted(open_ids) == ids[1:]
    r = httpx.post(f"{srv.url}/api/v1/alerts/ack", json={"ids": [ids[1]]}, timeout=10)
    assert r.status_code == 200 and r.json() == {"acknowledged": [ids[1]], "already": []}
    r = httpx.post(f"{srv.url}/api/v1/alerts/ack", json={"ids": [ids[2], 999]}, timeout=10)
    assert r.status_code == 404 and "999" in r.json()["error"]
    assert [a["id"] for a in api_alerts(srv, include_acknowledged=False)] == [ids[2]]

    by_id = {a["id"]: a for a in api_alerts(srv)}
    assert by_id[ids[0]]["acknowledged_by"].startswith("cli:")
    assert by_id[ids[1]]["acknowledged_by"] == "token:initial-admin"
    assert by_id[ids[2]]["acknowledged_at"] is None
    text = srv.cli("alerts", "list", "--all").stdout
    assert "deletes" in text and "ack/app0" in text
    assert "no open alerts" not in srv.cli("alerts").stdout

    # both need audit on the whole store
    reader = srv.create_token("reader", "reader")
    base = f"http://reader:{reader}@127.0.0.1:{srv.port}/api/v1/alerts"
    assert httpx.get(base, timeout=10).status_code == 403
    assert httpx.post(base + "/ack", json={"ids": [ids[2]]}, timeout=10).status_code == 403
    assert (
        httpx.post(f"{srv.url}/api/v1/alerts/ack", json={"ids": []}, timeout=10).status_code == 400
    )

    # and every call is in the audit trail
    trail = srv.cli("audit", "export", "--action", "audit").stdout.splitlines()
    operations = [json.loads(line)["operation"] for line in trail]
    assert "POST /api/v1/alerts/ack" in operations and "cli alerts ack" in operations


def test_first_start_of_the_follower_skips_older_history(tmp_path: Path, store: Store) -> None:
    config = tmp_path / "stateward.toml"
    config.write_text("audit_follow_interval_seconds = 0.1\n")  # no rules: no follower
    srv = ServerProcess(tmp_path / "data", config=config, store=store).start()
    try:
        assert put_state(srv, "h/old", make_state(1)) == 200
        assert httpx.delete(srv.state_url("h/old"), timeout=10).status_code == 200
        srv.stop()
        config.write_text(
            config.read_text() + SENTINEL_RULE + '[[alert_rules]]\nname = "d"\nkind = "delete"\n'
        )
        srv.start()
        assert put_state(srv, "h/new", make_state(1)) == 200
        assert httpx.delete(srv.state_url("h/new"), timeout=10).status_code == 200
        assert [a["path"] for a in settle(srv)] == ["h/new"]
    finally:
        srv.stop()


def test_a_webhook_without_its_secret_stops_the_server(tmp_path: Path, store: Store) -> None:
    config = tmp_path / "stateward.toml"
    config.write_text(
        '[[alert_rules]]\nname = "d"\nkind = "delete"\n'
        '[[alert_webhooks]]\nurl = "https://hooks.example.com/T000/B000/XXXX"\n'
        'secret_env = "TEST_UNSET_STATEWARD_HOOK_SECRET"\n'
    )
    srv = ServerProcess(tmp_path / "data", config=config, store=store)
    with pytest.raises(RuntimeError, match="server exited early") as err:
        srv.start()
    assert "environment variable TEST_UNSET_STATEWARD_HOOK_SECRET is not set" in str(err.value)
    assert "T000/B000" not in str(err.value), "the URL path is never logged"


# -- unit tests: the evaluator with fixed times -----------------------------------------------


def rules(text: str) -> list[AlertRule]:
    import tomllib

    return RULES.validate_python(tomllib.loads(text)["alert_rules"])


def record(
    at: dt.datetime | float,
    action: str = "delete",
    outcome: str = "ok",
    status: int = 200,
    seq: int = 1,
    **kw: Any,
) -> AuditRecord:
    when = at.timestamp() if isinstance(at, dt.datetime) else at
    base: dict[str, Any] = dict(
        request_id="r",
        principal="token:ci",
        principal_kind="token",
        source="203.0.113.9",
        user_agent="Terraform/1.11.4",
        operation="DELETE /state/prod/app",
        path="prod/app",
    )
    base.update(kw)
    return AuditRecord(
        at=when,
        action=action,
        outcome=outcome,
        status=status,
        seq=seq,
        **base,  # type: ignore[arg-type]
    )


PARIS = dt.timezone(dt.timedelta(hours=2))  # Paris in summer (CEST)
WINDOW_RULES = """
[[alert_rules]]
name = "prod-deletes"
kind = "delete"
outside_windows = [
  {days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00", tz = "Europe/Paris"},
  {days = ["sat"], start = "22:00", end = "02:00", tz = "Europe/Paris"},
]
"""


@pytest.mark.parametrize(
    ("when", "alerts"),
    [
        (dt.datetime(2026, 7, 15, 10, 0, tzinfo=PARIS), False),  # Wednesday, inside
        (dt.datetime(2026, 7, 15, 9, 0, tzinfo=PARIS), False),  # start is inclusive
        (dt.datetime(2026, 7, 15, 16, 59, 59, tzinfo=PARIS), False),  # minute resolution
        (dt.datetime(2026, 7, 15, 17, 0, tzinfo=PARIS), True),  # end is exclusive
        (dt.datetime(2026, 7, 15, 8, 59, tzinfo=PARIS), True),
        (dt.datetime(2026, 7, 18, 10, 0, tzinfo=PARIS), True),  # Saturday morning
        (dt.datetime(2026, 7, 18, 23, 0, tzinfo=PARIS), False),  # Saturday night window
        (dt.datetime(2026, 7, 19, 1, 30, tzinfo=PARIS), False),  # ... into Sunday
        (dt.datetime(2026, 7, 19, 2, 0, tzinfo=PARIS), True),
        (dt.datetime(2026, 7, 15, 8, 0, tzinfo=dt.UTC), False),  # 10:00 in Paris
    ],
)
def test_outside_windows(when: dt.datetime, alerts: bool) -> None:
    evaluator = AlertEvaluator(rules(WINDOW_RULES))
    drafts = evaluator.evaluate(record(when))
    assert bool(drafts) is alerts
    if drafts:
        assert drafts[0].summary.endswith("(outside the change windows)")


def test_no_windows_means_always() -> None:
    evaluator = AlertEvaluator(rules('[[alert_rules]]\nname = "d"\nkind = "delete"\n'))
    (draft,) = evaluator.evaluate(record(dt.datetime(2026, 7, 15, 10, 0, tzinfo=PARIS)))
    assert draft.summary == (
        "token:ci deleted prod/app from 203.0.113.9 via DELETE /state/prod/app"
    )
    assert not evaluator.evaluate(record(0, outcome="denied", status=403))
    assert not evaluator.evaluate(record(0, action="read"))


def test_auth_failure_bursts() -> None:
    evaluator = AlertEvaluator(
        rules(
            '[[alert_rules]]\nname = "bf"\nkind = "auth-failures"\ncount = 3\nwindow_minutes = 5\n'
        )
    )
    t0 = 1_800_000_000.0

    def fail(at: float, source: str = "198.51.100.7", seq: int = 1) -> list[AlertDraft]:
        return evaluator.evaluate(
            record(at, action="authenticate", outcome="denied", status=401, source=source,
                   principal="anonymous", seq=seq)
        )  # fmt: skip

    assert not fail(t0) and not fail(t0 + 10)
    (burst,) = fail(t0 + 20, seq=3)
    assert "3 failed authentications from 198.51.100.7 within 5 min" in burst.summary
    assert all(not fail(t0 + 30 + i) for i in range(50)), "the same burst alerts once"
    assert not fail(t0 + 100, source="198.51.100.8"), "per source"
    # a new burst once the window since the alert has passed
    (again,) = fail(t0 + 20 + 300, seq=99)
    assert again.dedup != burst.dedup
    # failures spread wider than the window never alert
    slow = AlertEvaluator(evaluator.rules)
    assert not any(
        slow.evaluate(record(t0 + i * 200, action="authenticate", outcome="denied", status=401))
        for i in range(10)
    )
    # forgotten after a quiet window; primed counters do not alert on replay
    evaluator.prune(t0 + 10_000)
    assert not evaluator._failures and not evaluator._burst_at
    primed = AlertEvaluator(evaluator.rules)
    for i in range(3):
        primed.prime(record(t0 + i, action="authenticate", outcome="denied", status=401))
    assert not primed.evaluate(
        record(t0 + 4, action="authenticate", outcome="denied", status=401)
    ), "a burst that alerted before a restart does not alert again"


def test_mass_destroy_thresholds() -> None:
    evaluator = AlertEvaluator(
        rules('[[alert_rules]]\nname = "md"\nkind = "mass-destroy"\npercent = 50\n')
    )

    def write(new: int | None, prev: int | None) -> bool:
        return bool(
            evaluator.evaluate(record(0, action="write", resources=new, prev_resources=prev))
        )

    assert write(4, 10) and write(0, 1)
    assert not write(5, 10), "exactly 50% is not more than 50%"
    assert not write(10, 10) and not write(12, 10) and not write(0, 0) and not write(3, None)


def test_unknown_network_sources() -> None:
    evaluator = AlertEvaluator(
        rules(
            '[[alert_rules]]\nname = "n"\nkind = "unknown-network"\nrepeat_minutes = 0\n'
            'allowed_cidrs = ["10.0.0.0/8", "2001:db8::/32"]\n'
        )
    )

    def alerts(source: str, outcome: str = "ok") -> bool:
        return bool(evaluator.evaluate(record(0, action="read", source=source, outcome=outcome)))

    assert alerts("203.0.113.9") and alerts("203.0.113.9", "denied")
    assert not alerts("203.0.113.9", "failed")
    assert not alerts("10.1.2.3") and not alerts("::ffff:10.1.2.3") and not alerts("2001:db8::1")
    assert not alerts("cli") and not alerts("internal") and not alerts("")
    assert alerts("2001:db9::1")


def test_guard_refusal_and_decryption_reasons() -> None:
    evaluator = AlertEvaluator(
        rules(
            '[[alert_rules]]\nname = "g"\nkind = "guard-refusal"\n'
            '[[alert_rules]]\nname = "gl"\nkind = "guard-refusal"\nlock_conflicts = true\n'
            '[[alert_rules]]\nname = "dec"\nkind = "decryption-failure"\n'
        )
    )

    def names(**kw: Any) -> list[str]:
        return [d.rule for d in evaluator.evaluate(record(0, **kw))]

    write_409 = {"action": "write", "outcome": "failed", "status": 409}
    assert names(**write_409, reason="stale write: serial 1 is lower") == ["g", "gl"]
    assert names(**write_409, reason="serial 4 of a/b already stored with different") == [
        "g",
        "gl",
    ]
    assert names(**write_409, reason="lock ID mismatch: a/b is locked") == ["gl"]
    assert names(**{**write_409, "status": 423}, reason="stale write") == []
    assert names(
        action="read", outcome="failed", status=503,
        reason="stored blob for a/b version 1 is unreadable (bad tag)",
    ) == ["dec"]  # fmt: skip
    assert names(
        action="read",
        outcome="failed",
        status=503,
        reason="a stored data key of a/b does not unwrap",
    ) == ["dec"]
    assert names(action="read", outcome="failed", status=503, reason="key service down") == []


def test_paths_and_ignored_principals() -> None:
    evaluator = AlertEvaluator(
        rules(
            '[[alert_rules]]\nname = "d"\nkind = "delete"\npaths = ["prod/**"]\n'
            'ignore_principals = ["token:ci-*", "cli:root"]\n'
        )
    )
    assert evaluator.evaluate(record(0, path="prod/app", principal="token:alice"))
    assert not evaluator.evaluate(record(0, path="dev/app", principal="token:alice"))
    assert not evaluator.evaluate(record(0, path=None, principal="token:alice"))
    assert not evaluator.evaluate(record(0, path="prod/app", principal="token:ci-prod"))
    assert not evaluator.evaluate(record(0, path="prod/app", principal="cli:root"))
    assert evaluator.evaluate(record(0, path="prod/app", principal="cli:rooted"))


def test_long_lock_check_and_windows() -> None:
    evaluator = AlertEvaluator(
        rules(
            '[[alert_rules]]\nname = "ll"\nkind = "long-lock"\nseconds = 3600\n'
            'outside_windows = [{days = ["sat"], start = "00:00", end = "24:00"}]\n'
        )
    )

    def view(age: float, lock_id: str = "L1") -> LockView:
        return LockView("prod/app", lock_id, "bob@ci", "OperationTypeApply", "1.11.4",
                        "token:ci", 0.0, age)  # fmt: skip

    wednesday = dt.datetime(2026, 7, 15, 12, 0, tzinfo=dt.UTC).timestamp()
    saturday = dt.datetime(2026, 7, 18, 12, 0, tzinfo=dt.UTC).timestamp()
    assert not evaluator.check_locks([view(3000)], wednesday)
    assert not evaluator.check_locks([view(4000)], saturday), "inside the window: not yet"
    (draft,) = evaluator.check_locks([view(4000)], wednesday)
    assert draft.summary.startswith("prod/app locked for 67 min (over 60 min) by bob@ci")
    assert evaluator.check_locks([view(4000)], wednesday), "not stored yet: raised again"
    evaluator.lock_alerted(draft.dedup)
    assert not evaluator.check_locks([view(9000)], wednesday), "one alert per lock ID"
    assert evaluator.check_locks([view(9000, "L2")], wednesday)
    evaluator.check_locks([], wednesday)  # L1 released: forgotten
    assert not evaluator._locks_alerted


# -- unit tests: signatures, configuration, delivery, service ----------------------------------


def test_signature_sign_and_verify() -> None:
    body = b'{"id":1}'
    now = 1_800_000_000
    signature = sign(SECRET, str(now), body)
    expected = hmac.new(SECRET, f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    assert verify(SECRET, str(now), body, signature, now=now + 10)
    assert not verify(SECRET, str(now), body + b" ", signature, now=now)
    assert not verify(SECRET, str(now + 1), body, signature, now=now), "timestamp is signed"
    assert not verify(SECRET, str(now), body, signature, now=now + 301), "stale"
    assert not verify(b"another-secret-of-some-length", str(now), body, signature, now=now)


@pytest.mark.parametrize(
    ("hook", "needle"),
    [
        ({"url": "http://hooks.example.com/x"}, "must be https"),
        ({"url": "ftp://hooks.example.com/x"}, "must be https"),
        ({"url": "https://u:p@hooks.example.com/x"}, "credentials"),
        ({"url": "https://hooks.example.com/x", "secret_file": None}, "exactly one"),
        ({"url": "https://hooks.example.com/x", "secret_env": "S"}, "exactly one"),
        ({"url": "https://hooks.example.com/x", "kinds": ["deletes"]}, "kinds"),
        (
            {"url": "https://h.example.com/x", "secret_file": None, "secret_env": "STATEWARD_K"},
            "settings",
        ),
    ],
)
def test_webhook_config_is_strict(hook: dict[str, Any], needle: str) -> None:
    doc = {"secret_file": "/etc/stateward/hook.secret", **hook}
    with pytest.raises(ValidationError, match=needle):
        WebhookConfig.model_validate({k: v for k, v in doc.items() if v is not None})


def test_webhook_urls_allowed() -> None:
    for url in ("https://hooks.example.com/x", "http://127.0.0.1:9000/x", "http://[::1]/x",
                "http://localhost/x"):  # fmt: skip
        hook = WebhookConfig(url=url, secret_env="HOOK_SECRET")
        assert "/x" not in hook.label


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[[alert_rules]]\nname = "a"\nkind = "nope"\n', "alert_rules.0"),
        ('[[alert_rules]]\nname = "a"\nkind = "delete"\n' * 2, "used twice"),
        ('[[alert_rules]]\nname = "A b"\nkind = "delete"\n', "alert_rules.0"),
        ('[[alert_rules]]\nname = "a"\nkind = "long-lock"\n', "seconds"),
        ('[[alert_rules]]\nname = "a"\nkind = "unknown-network"\nallowed_cidrs = ["10.0.0.1/8"]\n',
         "allowed_cidrs"),
        ('[[alert_rules]]\nname = "a"\nkind = "delete"\nseverity = "high"\n', "severity"),
        ('[[alert_rules]]\nname = "a"\nkind = "delete"\nwindows = []\n', "windows"),
        ("audit_follow_interval_seconds = 0\n", "audit_follow_interval_seconds"),
    ],
)  # fmt: skip
def test_alert_settings_are_validated(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_settings(config, env={})


def test_alert_tables_are_file_only() -> None:
    for name in ("STATEWARD_ALERT_RULES", "STATEWARD_ALERT_WEBHOOKS"):
        with pytest.raises(ConfigError, match="non-scalar"):
            load_settings(None, env={name: "x"})
    settings = load_settings(None, env={"STATEWARD_AUDIT_FOLLOW_INTERVAL_SECONDS": "0.5"})
    assert settings.audit_follow_interval_seconds == 0.5


def test_sender_does_not_retry_client_errors(receiver: Receiver) -> None:
    receiver.statuses.extend([400])
    hook = WebhookConfig(url=receiver.url, secret_env="X", max_attempts=4, backoff_seconds=0.01)
    sender = WebhookSender(hook, SECRET)
    assert not sender.deliver(1, b'{"id":1}', "d1")
    assert len(receiver.posts) == 1 and sender.failed == 1
    assert sender.deliver(2, b'{"id":2}', "d2") and sender.delivered == 1
    headers, body = receiver.posts[1]
    assert body == b'{"id":2}' and headers["x-stateward-delivery"] == "d2"
    checked(headers, body)


def test_sender_queue_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    hook = WebhookConfig(url="https://hooks.example.com/x", secret_env="X")
    sender = WebhookSender(hook, SECRET)  # not started: nothing drains the queue
    with caplog.at_level(logging.WARNING, logger="stateward.alerts"):
        assert all(sender.submit(i, b"{}") for i in range(1000))
        assert not sender.submit(1000, b"{}")
    assert sender.dropped == 1 and "queue full" in caplog.text
    assert "hooks.example.com:443" in caplog.text and "/x" not in caplog.text


def test_service_store_is_idempotent_and_access_is_audit_only(service: StateService) -> None:
    draft = AlertDraft("d", "delete", "warning", 1.0, "a/b", "token:x", "token:x deleted a/b",
                       7, dedup_key("d", "seq", 7))  # fmt: skip
    alert = service.alerts.store_alert(draft)
    assert alert is not None and alert.id == 1 and alert.audit_seq == 7
    assert service.alerts.store_alert(draft) is None, "a redelivered record alerts once"

    admin = Principal("token:admin", roles=("admin",))
    reader = Principal("token:reader", roles=("reader",))
    assert [a.id for a in service.alerts.list_alerts(admin)] == [1]
    with pytest.raises(Forbidden):
        service.alerts.list_alerts(reader)
    with pytest.raises(Forbidden):
        service.alerts.acknowledge_alerts(reader, [1])
    with pytest.raises(NotFound):
        service.alerts.acknowledge_alerts(admin, [1, 2])
    assert service.alerts.list_alerts(admin)[0].acknowledged_at is None, "all or nothing"
    result = service.alerts.acknowledge_alerts(admin, [1])
    assert result.acknowledged == [1] and result.already == []
    assert service.alerts.list_alerts(admin) == []
    (acked,) = service.alerts.list_alerts(admin, include_acknowledged=True)
    assert acked.acknowledged_by == "token:admin"


def test_docs_examples_load(tmp_path: Path) -> None:
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "alerts.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    assert len(blocks) == 3
    config = tmp_path / "c.toml"
    config.write_text("\n".join(blocks).replace('name = "prod-force-unlock"', 'name = "first"'))
    settings = load_settings(config, env={})
    assert len(settings.alert_rules) == 10 and len(settings.alert_webhooks) == 1
    kinds = {r.kind for r in settings.alert_rules}
    assert len(kinds) == 9
