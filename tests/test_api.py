"""The JSON API under /api/v1, against a real server process."""

from __future__ import annotations

import httpx

from tests.harness.support import ServerProcess, lock_body, make_state, md5_b64

P = "team/api/prod"


def _post_state(c: httpx.Client, srv: ServerProcess, body: bytes, lock_id: str | None = None
                ) -> httpx.Response:
    params = {"ID": lock_id} if lock_id else None
    return c.post(srv.state_url(P), content=body, params=params,
                  headers={"Content-MD5": md5_b64(body), "Content-Type": "application/json"})


def test_api_end_to_end(server: ServerProcess) -> None:
    with httpx.Client(base_url=f"{server.url}/api/v1") as c:
        b1 = make_state(serial=1, lineage="lin", resources=1)
        b2 = make_state(serial=2, lineage="lin", resources=2)
        assert _post_state(c, server, b1).status_code == 200
        assert _post_state(c, server, b2).status_code == 200

        states = c.get("/states").json()
        assert states[0]["path"] == P and states[0]["serial"] == 2
        hist = c.get("/versions", params={"path": P}).json()
        assert [v["seq"] for v in hist] == [2, 1] and hist[0]["current"]
        meta = c.get("/version", params={"path": P, "seq": 1}).json()
        assert meta["serial"] == 1 and meta["resource_count"] == 1
        raw = c.get("/version", params={"path": P, "seq": 1, "download": "true"})
        assert raw.content == b1
        diff = c.get("/diff", params={"path": P, "from": 1, "to": 2}).json()
        assert diff["resources_added"] == ["terraform_data.r1"]
        assert "s3cr3t" not in str(diff)

        # locks: list, rollback refused while locked, break, rollback
        assert c.request("LOCK", server.state_url(P),
                         content=lock_body("L9", who="eve@h")).status_code == 200
        [lock] = c.get("/locks").json()
        assert lock["id"] == "L9" and lock["who"] == "eve@h" and lock["age_seconds"] >= 0
        r = c.post("/rollback", json={"path": P, "seq": 1})
        assert r.status_code == 423 and "locked" in r.json()["error"]
        assert c.post("/locks/break", json={"path": P}).json()["id"] == "L9"
        r = c.post("/rollback", json={"path": P, "seq": 1})
        assert r.json() == {"created": True, "seq": 3, "serial": 1}
        assert httpx.get(server.state_url(P)).content == b1

        # protect, delete, restore, purge
        assert c.post("/protect", json={"path": P}).status_code == 200
        assert c.post("/delete", json={"path": P}).status_code == 403
        c.post("/protect", json={"path": P, "protected": False})
        assert c.post("/delete", json={"path": P}).status_code == 200
        assert httpx.get(server.state_url(P)).status_code == 404
        assert c.post("/restore", json={"path": P}).status_code == 200
        assert httpx.get(server.state_url(P)).content == b1
        assert c.post("/allow-next-write", json={"path": P}).status_code == 200
        actions = [e["action"] for e in c.get("/events", params={"path": P}).json()]
        assert {"break-lock", "rollback", "delete", "restore", "override-next-write"} <= set(
            actions)
        assert c.post("/purge", json={"path": P}).status_code == 409  # not deleted
        c.post("/delete", json={"path": P})
        assert c.post("/purge", json={"path": P}).json()["versions_removed"] == 3
        assert c.post("/maintenance").status_code == 200


def test_api_errors_are_json_and_bounded(server: ServerProcess) -> None:
    with httpx.Client(base_url=f"{server.url}/api/v1") as c:
        for resp in (
            c.get("/versions", params={"path": "../etc"}),
            c.get("/versions", params={"path": "a" * 300}),
            c.post("/rollback", json={"path": P, "seq": 0}),
            c.post("/delete", json={"path": P, "extra": 1}),
            c.get("/diff", params={"path": P}),
        ):
            assert resp.status_code == 400, resp.text
            assert set(resp.json()) == {"error"}
        assert c.get("/versions", params={"path": "no/such"}).status_code == 404
        assert c.get("/version", params={"path": "no/such", "seq": 1}).status_code == 404
        spec = c.get("/openapi.json").json()
        assert "/api/v1/rollback" in spec["paths"]
