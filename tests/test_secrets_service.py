"""Secret detection wired into the store: background scans, history, scan/sanitize commands
and API, purge, against a real server."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx

from tests.harness.pg import Store
from tests.harness.support import ServerProcess, make_state, md5_b64

AKID = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key


def leaky_state(serial: int, lineage: str) -> bytes:
    doc = json.loads(make_state(serial=serial, lineage=lineage))
    doc["resources"][0]["instances"][0]["attributes"]["password"] = "Tr0ub4dor&3-horse"
    doc["resources"][0]["instances"][0]["attributes"]["note"] = f"key {AKID} here"
    return (json.dumps(doc, indent=2) + "\n").encode()


def test_scan_history_sanitize_and_purge(tmp_path: Path, store: Store) -> None:
    cfg = tmp_path / "fast.toml"
    cfg.write_text("audit_follow_interval_seconds = 0.2\n")
    srv = ServerProcess(tmp_path / "data", config=cfg, store=store).start()
    try:
        path = f"sec/{uuid.uuid4().hex[:6]}/prod"
        lineage = str(uuid.uuid4())
        for body in (make_state(serial=1, lineage=lineage, outputs={}),
                     leaky_state(2, lineage)):  # fmt: skip
            r = httpx.post(
                srv.state_url(path), content=body, headers={"Content-MD5": md5_b64(body)}
            )
            assert r.status_code == 200
        api = f"{srv.url}/api/v1"
        deadline = time.monotonic() + 15
        while True:  # the background scanner gets to both versions
            versions = httpx.get(f"{api}/versions", params={"path": path}).json()
            if all(v["secrets"] is not None for v in versions) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert {v["seq"]: v["secrets"] for v in versions} == {1: 0, 2: 3}
        found = httpx.get(f"{api}/findings", params={"path": path, "seq": 2}).json()
        kinds = {f["kind"] for f in found}
        assert {"aws-access-key", "secret-name", "sensitive-output"} <= kinds, found
        assert "Tr0ub4dor" not in json.dumps(found) and AKID not in json.dumps(found)
        assert "secrets" in srv.cli("history", path).stdout

        r = srv.cli("state", "scan", path, check=False)
        assert r.returncode == 1 and "3 finding(s)" in r.stdout
        assert "Tr0ub4dor" not in r.stdout and AKID not in r.stdout
        assert srv.cli("state", "scan", path, "--version", "1").returncode == 0

        clean = httpx.get(f"{api}/version", params={"path": path, "seq": 2, "sanitized": "true"})
        assert clean.status_code == 200
        doc = clean.json()
        assert doc["serial"] == 2 and doc["lineage"] == lineage
        assert b"Tr0ub4dor" not in clean.content and AKID.encode() not in clean.content
        assert b"REDACTED(" in clean.content
        assert srv.cli("state", "sanitize", path).stdout.encode() == clean.content
        reader = srv.create_token(f"o-{uuid.uuid4().hex[:6]}", "outputs-reader")
        denied = httpx.get(srv.bare_url + "/api/v1/version", auth=("o", reader),
                           params={"path": path, "seq": 2, "sanitized": "true"})  # fmt: skip
        assert denied.status_code == 403

        srv.cli("delete", path)
        srv.cli("purge", path, "--yes")
        assert httpx.get(f"{api}/findings", params={"path": path, "seq": 2}).json() == []
    finally:
        srv.stop()
