"""The ``http`` backend protocol (docs/protocol.md), row by row, over real HTTP.

Every test talks to a real ``stateward serve`` process with httpx, the way Terraform and
OpenTofu do: custom methods LOCK/UNLOCK, ``Content-Md5`` on every body, chunked bodies,
keep-alive connections, re-encoded query strings. Every refused request is checked to have
changed nothing (state body, version list and lock), and every plain error to be one line of
text/plain.

Most tests share one module-scoped server and use their own random state path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.harness.pg import Store
from tests.harness.support import (
    TOFU_ENCRYPTED,
    TOFU_LINEAGE,
    TOFU_SHA256,
    ServerProcess,
    lock_body,
    make_state,
    md5_b64,
    tofu_force_unlock_body,
)

SMALL_LIMIT = 2048
STATE_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "LOCK", "UNLOCK"}


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, module_store: Store) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("protocol") / "data", store=module_store).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def small_srv(
    tmp_path_factory: pytest.TempPathFactory, module_store: Store
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("protocol-small") / "data",
        extra_args=["--max-body-bytes", str(SMALL_LIMIT)],
        store=module_store,
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def c(srv: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=15) as client:
        yield client


@pytest.fixture
def p() -> str:
    """A fresh state path per test, so tests can share one server."""
    return f"team-{uuid.uuid4().hex[:10]}/app/prod"


# -- request helpers ------------------------------------------------------------------------


def body_headers(body: bytes, md5: str | bool = True) -> dict[str, str]:
    """What Terraform sends with a body (Go canonicalises the name to ``Content-Md5``)."""
    headers = {"Content-Type": "application/json"}
    if md5 is True:
        headers["Content-Md5"] = md5_b64(body)
    elif isinstance(md5, str):
        headers["Content-Md5"] = md5
    return headers


def chunked(body: bytes, size: int = 7) -> Iterator[bytes]:
    """A generator body, which makes httpx send ``Transfer-Encoding: chunked``."""
    for i in range(0, len(body), size):
        yield body[i : i + size]


def write(
    c: httpx.Client,
    path: str,
    body: bytes,
    lock_id: str | None = None,
    *,
    method: str = "POST",
    md5: str | bool = True,
    params: list[tuple[str, str]] | None = None,
    stream: bool = False,
) -> httpx.Response:
    query = list(params or [])
    if lock_id is not None:
        query.append(("ID", lock_id))
    content: bytes | Iterator[bytes] = chunked(body) if stream else body
    return c.request(
        method,
        f"/state/{path}",
        content=content,
        headers=body_headers(body, md5),
        params=query or None,
    )


def lock(
    c: httpx.Client,
    path: str,
    body: bytes,
    *,
    method: str = "LOCK",
    lock_url: bool = False,
    md5: str | bool = True,
    stream: bool = False,
) -> httpx.Response:
    url = f"/state/{path}/lock" if lock_url else f"/state/{path}"
    content: bytes | Iterator[bytes] = chunked(body) if stream else body
    return c.request(method, url, content=content, headers=body_headers(body, md5))


def unlock(
    c: httpx.Client,
    path: str,
    body: bytes | None,
    *,
    method: str = "UNLOCK",
    lock_url: bool = False,
    md5: str | bool = True,
) -> httpx.Response:
    url = f"/state/{path}/lock" if lock_url else f"/state/{path}"
    if body is None:  # Terraform's force-unlock: no body at all
        return c.request(method, url)
    return c.request(method, url, content=body, headers=body_headers(body, md5))


def raw(c: httpx.Client, method: str, target: str, body: bytes | None = None) -> httpx.Response:
    """Send ``target`` exactly as given: httpx would otherwise remove dot segments."""
    headers = body_headers(body) if body is not None else {}
    return c.request(
        method, target, content=body, headers=headers, extensions={"target": target.encode()}
    )


# -- observation helpers --------------------------------------------------------------------


@dataclass(frozen=True)
class Snap:
    """Everything a refused request must leave alone."""

    state: tuple[int, bytes]
    versions: tuple[Any, ...]
    lock: tuple[int, bytes]


def snap(c: httpx.Client, path: str) -> Snap:
    g = c.get(f"/state/{path}")
    v = c.get("/api/v1/versions", params={"path": path})
    lk = c.get(f"/state/{path}/lock")
    assert g.status_code in (200, 404) and v.status_code in (200, 404)
    assert lk.status_code in (200, 404)
    versions: tuple[Any, ...] = (
        tuple((d["seq"], d["serial"], d["lineage"], d["sha256"], d["current"]) for d in v.json())
        if v.status_code == 200
        else ("none",)
    )
    return Snap(
        (g.status_code, g.content if g.status_code == 200 else b""),
        versions,
        (lk.status_code, lk.content if lk.status_code == 200 else b""),
    )


def everything(c: httpx.Client) -> tuple[Any, ...]:
    """Server-wide listing of states and locks, for refusals that name no valid path."""
    states = c.get("/api/v1/states", params={"include_deleted": "true"})
    locks = c.get("/api/v1/locks")
    assert states.status_code == 200 and locks.status_code == 200
    return (
        sorted(
            (s["path"], s["seq"], s["serial"], s["deleted_at"], s["lock_id"]) for s in states.json()
        ),
        sorted((lk["path"], lk["id"]) for lk in locks.json()),
    )


def version_count(c: httpx.Client, path: str) -> int:
    r = c.get("/api/v1/versions", params={"path": path})
    return len(r.json()) if r.status_code == 200 else 0


def assert_text_error(r: httpx.Response, status: int) -> None:
    """A plain refusal: the status, and one line of text/plain that Terraform will print."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    text = r.text
    assert text.endswith("\n") and text.count("\n") == 1 and text.strip(), repr(text)


def assert_holder(r: httpx.Response, holder: bytes) -> None:
    """A lock conflict: 423 with the holder's LockInfo, byte-identical, with an ``ID``."""
    assert r.status_code == 423, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert r.content == holder
    assert json.loads(r.content)["ID"]


def refused(r: httpx.Response, status: int, c: httpx.Client, path: str, before: Snap) -> None:
    if status != 423:
        assert_text_error(r, status)
    assert snap(c, path) == before


def seeded(c: httpx.Client, path: str, serial: int = 5, lineage: str = "lin-A") -> bytes:
    body = make_state(serial=serial, lineage=lineage)
    assert write(c, path, body).status_code == 200
    return body


def tofu_lock_body(lock_id: str) -> bytes:
    """LockInfo as OpenTofu marshals it: Go's compact JSON, fields in struct order."""
    return json.dumps(
        {
            "ID": lock_id,
            "Operation": "OperationTypePlan",
            "Info": "",
            "Who": "bob@ci",
            "Version": "1.10.0",
            "Created": "2026-11-22T10:11:12.123456789Z",
            "Path": "",
        },
        separators=(",", ":"),
    ).encode()


# -- health and API surface -----------------------------------------------------------------


def test_health_ready_and_openapi(c: httpx.Client) -> None:
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").status_code == 200
    r = c.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["paths"] and "/api/v1/versions" in doc["paths"]


def test_unreadable_blob_is_a_retryable_503(server: ServerProcess) -> None:
    """Fail closed on a lost blob, with a status Terraform retries (5xx, Retry-After)."""
    body = make_state(serial=1)
    with httpx.Client(timeout=15) as client:
        url = server.state_url("solo/app/dev")
        assert client.get(url).status_code == 404
        assert client.post(url, content=body, headers=body_headers(body)).status_code == 200
        assert client.get(url).content == body
        assert server.store is not None
        blobs = server.store.stored_blobs(server.data_dir)  # files, or objects in the bucket
        assert blobs
        for f in blobs:
            f.unlink()
        # Verified bodies are cached in memory (blobs are immutable); a restarted server has
        # only the store to go by and must refuse rather than serve nothing or garbage.
        server.stop()
        server.start()
        r = client.get(url)
        assert_text_error(r, 503)
        assert int(r.headers["retry-after"]) > 0
        assert "s3cr3t" not in r.text


# -- reads and writes -----------------------------------------------------------------------


def test_get_without_state_is_404(c: httpx.Client, p: str) -> None:
    assert_text_error(c.get(f"/state/{p}"), 404)
    assert c.head(f"/state/{p}").status_code == 404


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_write_then_read_is_byte_identical(c: httpx.Client, p: str, method: str) -> None:
    body = make_state(serial=1, lineage="lin-rt")
    w = write(c, p, body, method=method)
    assert w.status_code == 200, w.text
    g = c.get(f"/state/{p}")
    assert g.status_code == 200
    assert g.content == body
    assert g.headers["content-type"].startswith("application/json")
    digest = base64.b64decode(g.headers["content-md5"], validate=True)
    assert digest == hashlib.md5(body).digest()
    h = c.head(f"/state/{p}")
    assert h.status_code == 200 and h.content == b""
    assert h.headers["content-md5"] == g.headers["content-md5"]
    assert int(h.headers["content-length"]) == len(body)
    # the next change, with the other method, replaces it
    body2 = make_state(serial=2, lineage="lin-rt")
    assert write(c, p, body2, method="PUT" if method == "POST" else "POST").status_code == 200
    assert c.get(f"/state/{p}").content == body2
    assert version_count(c, p) == 2


def test_write_without_content_md5_is_accepted(c: httpx.Client, p: str) -> None:
    body = make_state(serial=1)
    assert write(c, p, body, md5=False).status_code == 200
    assert c.get(f"/state/{p}").content == body


def test_content_md5_header_name_is_case_insensitive(c: httpx.Client, p: str) -> None:
    body = make_state(serial=1)
    for name in ("content-md5", "CONTENT-MD5", "Content-MD5"):
        bad = {"Content-Type": "application/json", name: md5_b64(b"other")}
        assert_text_error(c.post(f"/state/{p}", content=body, headers=bad), 400)
    good = {"Content-Type": "application/json", "content-md5": md5_b64(body)}
    assert c.post(f"/state/{p}", content=body, headers=good).status_code == 200


def test_content_md5_mismatch_is_400_and_stores_nothing(c: httpx.Client, p: str) -> None:
    before = snap(c, p)
    body = make_state(serial=1, lineage="lin-md5")
    refused(write(c, p, body, md5=md5_b64(body + b" ")), 400, c, p, before)
    current = seeded(c, p, serial=1, lineage="lin-md5")
    before = snap(c, p)
    nxt = make_state(serial=2, lineage="lin-md5")
    refused(write(c, p, nxt, md5=md5_b64(current)), 400, c, p, before)
    refused(write(c, p, nxt, md5=md5_b64(current), stream=True), 400, c, p, before)
    refused(write(c, p, nxt, md5=md5_b64(current), method="PUT"), 400, c, p, before)


@pytest.mark.parametrize(
    "header",
    [
        "not base64!!",
        "abc",  # bad padding
        "====",
        "AAAAAAAAAAAAAAAAAAAAAA=",  # one pad char short
        base64.b64encode(b"\x00" * 15).decode(),  # valid base64, wrong length
        hashlib.md5(b"x").hexdigest(),  # hex is not base64 of the raw digest
        "",
    ],
)
def test_invalid_content_md5_is_400(c: httpx.Client, p: str, header: str) -> None:
    seeded(c, p, serial=1)
    before = snap(c, p)
    refused(write(c, p, make_state(serial=2, lineage="lin-A"), md5=header), 400, c, p, before)


def test_chunked_write(c: httpx.Client, p: str) -> None:
    body = make_state(serial=1, lineage="lin-chunk", resources=5)
    r = write(c, p, body, stream=True)
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    assert r.status_code == 200, r.text
    assert c.get(f"/state/{p}").content == body
    body2 = make_state(serial=2, lineage="lin-chunk")
    assert write(c, p, body2, method="PUT", stream=True).status_code == 200
    assert c.get(f"/state/{p}").content == body2


def test_empty_write_is_400(c: httpx.Client, p: str) -> None:
    seeded(c, p)
    before = snap(c, p)
    refused(write(c, p, b""), 400, c, p, before)
    refused(write(c, p, b"", stream=True), 400, c, p, before)
    refused(c.post(f"/state/{p}"), 400, c, p, before)


def test_keep_alive_connection_carries_a_whole_terraform_session(srv: ServerProcess) -> None:
    """Terraform 1.11 ``apply`` sequences, plus refusals, all on one kept-alive connection."""
    path = f"ka-{uuid.uuid4().hex[:8]}/app/prod"
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    seen: set[Any] = set()
    with httpx.Client(base_url=srv.url, limits=limits, timeout=15) as c:

        def on(r: httpx.Response, status: int) -> httpx.Response:
            assert r.status_code == status, (r.request.method, r.status_code, r.text)
            seen.add(r.extensions["network_stream"].get_extra_info("client_addr"))
            return r

        lineage = str(uuid.uuid4())
        # apply (new state): LOCK, GET(404), GET(404), POST ?ID, UNLOCK
        lk = lock_body()
        lid = json.loads(lk)["ID"]
        on(lock(c, path, lk), 200)
        on(c.get(f"/state/{path}"), 404)
        on(c.get(f"/state/{path}"), 404)
        on(write(c, path, make_state(serial=1, lineage=lineage), lid), 200)
        on(unlock(c, path, lk), 200)
        # long applies: several POSTs inside one lock, with refusals mixed in
        lk = lock_body()
        lid = json.loads(lk)["ID"]
        on(c.get(f"/state/{path}"), 200)  # Terraform >= 1.15: GET before LOCK
        on(lock(c, path, lk), 200)
        on(c.get(f"/state/{path}"), 200)
        for serial in range(2, 12):
            body = make_state(serial=serial, lineage=lineage)
            on(write(c, path, body, lid, stream=serial % 2 == 0), 200)
            on(write(c, path, body, "not-the-lock"), 409)
            on(lock(c, path, lock_body()), 423)
            on(c.request("FOO", f"/state/{path}"), 405)
            assert on(c.get(f"/state/{path}"), 200).content == body
        on(unlock(c, path, lk), 200)
        # apply (no change): LOCK, GET, UNLOCK; then a force-unlock of a stale lock
        on(lock(c, path, lk), 200)
        on(c.get(f"/state/{path}"), 200)
        on(unlock(c, path, lk), 200)
        on(lock(c, path, lock_body()), 200)
        on(unlock(c, path, None), 200)
        on(c.get(f"/state/{path}/lock"), 404)
    assert len(seen) == 1, seen
    with httpx.Client(base_url=srv.url, timeout=15) as c2:
        assert version_count(c2, path) == 11


# -- locks ----------------------------------------------------------------------------------


def test_lock_conflict_returns_holders_lockinfo_verbatim(c: httpx.Client, p: str) -> None:
    # odd but valid JSON spacing and field order: the server must not re-serialise it
    holder = (
        b'{ "Who": "alice@laptop", "ID": "11111111-aaaa", "Operation": "OperationTypeApply",'
        b' "Info": "", "Version": "1.11.4", "Created": "2026-11-22T00:00:00Z", "Path": "" }'
    )
    r = lock(c, p, holder)
    assert r.status_code == 200, r.text
    before = snap(c, p)
    assert before.lock == (200, holder)
    other = tofu_lock_body("22222222-bbbb")
    assert_holder(lock(c, p, other), holder)
    assert_holder(lock(c, p, other, method="POST", lock_url=True), holder)
    assert_holder(lock(c, p, other, stream=True), holder)
    assert snap(c, p) == before


def test_relock_with_the_same_id_is_200(c: httpx.Client, p: str) -> None:
    lk = lock_body("same-id")
    assert lock(c, p, lk).status_code == 200
    assert lock(c, p, lk).status_code == 200  # a retried LOCK
    assert lock(c, p, lock_body("same-id", who="retry@host")).status_code == 200
    assert unlock(c, p, lk).status_code == 200
    assert c.get(f"/state/{p}/lock").status_code == 404


def test_unlock_with_the_lock_body_releases(c: httpx.Client, p: str) -> None:
    lk = lock_body()
    assert lock(c, p, lk).status_code == 200
    r = unlock(c, p, lk)
    assert r.status_code == 200, r.text
    assert_text_error(c.get(f"/state/{p}/lock"), 404)
    # the lock is free for someone else now
    other = lock_body()
    assert lock(c, p, other).status_code == 200
    assert c.get(f"/state/{p}/lock").content == other
    assert unlock(c, p, other).status_code == 200


def test_unlock_with_another_id_is_423_and_keeps_the_lock(c: httpx.Client, p: str) -> None:
    seeded(c, p)
    lk = lock_body()
    assert lock(c, p, lk).status_code == 200
    before = snap(c, p)
    assert_holder(unlock(c, p, lock_body()), lk)
    assert_holder(unlock(c, p, tofu_force_unlock_body("nope")), lk)
    assert_holder(unlock(c, p, lock_body(), method="DELETE", lock_url=True), lk)
    assert snap(c, p) == before


def test_unlock_when_not_locked_is_200(c: httpx.Client, p: str) -> None:
    """A retried UNLOCK whose first attempt succeeded must not fail the client."""
    lk = lock_body()
    assert unlock(c, p, lk).status_code == 200
    assert unlock(c, p, None).status_code == 200
    assert c.get(f"/state/{p}/lock").status_code == 404


@pytest.mark.parametrize("shape", ["no-body", "content-length-0", "chunked-empty", "tofu-1.10"])
def test_force_unlock_shapes(c: httpx.Client, p: str, shape: str) -> None:
    seeded(c, p)
    lk = lock_body(who="gone@crashed-ci")
    lid = json.loads(lk)["ID"]
    assert lock(c, p, lk).status_code == 200
    url = f"/state/{p}"
    if shape == "no-body":
        r = c.request("UNLOCK", url)
    elif shape == "content-length-0":
        r = c.request("UNLOCK", url, headers={"Content-Length": "0"})
    elif shape == "chunked-empty":
        r = c.request("UNLOCK", url, content=iter(()))
        assert r.request.headers.get("transfer-encoding") == "chunked"
    else:
        r = unlock(c, p, tofu_force_unlock_body(lid))
    assert r.status_code == 200, r.text
    assert c.get(f"/state/{p}/lock").status_code == 404
    if shape != "tofu-1.10":  # an ID-less unlock is a force-unlock, and must be audited
        events = c.get("/api/v1/events", params={"path": p}).json()
        assert any(e["action"] == "force-unlock" and lid in e["detail"] for e in events)
    # state untouched, and writes without an ID work again
    assert write(c, p, make_state(serial=6, lineage="lin-A")).status_code == 200


def test_lock_and_unlock_with_chunked_bodies(c: httpx.Client, p: str) -> None:
    lk = lock_body()
    r = lock(c, p, lk, stream=True)
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 200, r.text
    assert c.get(f"/state/{p}/lock").content == lk
    assert_holder(lock(c, p, lock_body(), stream=True), lk)
    r = c.request("UNLOCK", f"/state/{p}", content=chunked(lk), headers=body_headers(lk))
    assert r.status_code == 200, r.text
    assert c.get(f"/state/{p}/lock").status_code == 404


def test_lock_content_md5_is_verified(c: httpx.Client, p: str) -> None:
    lk = lock_body()
    before = snap(c, p)
    refused(lock(c, p, lk, md5=md5_b64(b"x")), 400, c, p, before)
    refused(lock(c, p, lk, md5="%%%"), 400, c, p, before)
    assert lock(c, p, lk).status_code == 200
    before = snap(c, p)
    refused(unlock(c, p, lk, md5=md5_b64(b"x")), 400, c, p, before)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"ID"',
        b"{}",
        b'{"Who":"alice"}',
        b'{"ID":""}',
        b'{"ID":"   "}',
        b'{"ID":42}',
        b'{"ID":null}',
        b'{"ID":["a"]}',
        b'{"ID":"x","Who":7}',
        b'{"ID":"x","Info":{"a":1}}',
        ('{"ID":"' + "i" * 257 + '"}').encode(),
        b'\xff\xfe{"ID":"x"}',
    ],
)
def test_malformed_lockinfo_is_400(c: httpx.Client, p: str, body: bytes) -> None:
    before = snap(c, p)
    refused(lock(c, p, body), 400, c, p, before)
    refused(lock(c, p, body, method="PUT", lock_url=True), 400, c, p, before)
    # with a holder in place, a malformed LOCK or UNLOCK leaves it there
    holder = lock_body()
    assert lock(c, p, holder).status_code == 200
    before = snap(c, p)
    refused(lock(c, p, body), 400, c, p, before)
    if body:  # an empty UNLOCK body is the force-unlock shape, not malformed
        refused(unlock(c, p, body), 400, c, p, before)
        refused(unlock(c, p, body, method="DELETE", lock_url=True), 400, c, p, before)


def test_lockinfo_over_64k_is_413(c: httpx.Client, p: str) -> None:
    big = json.dumps({"ID": "big", "Info": "x" * (64 * 1024)}).encode()
    before = snap(c, p)
    refused(lock(c, p, big), 413, c, p, before)
    refused(lock(c, p, big, stream=True), 413, c, p, before)


# -- the lock URL ---------------------------------------------------------------------------


@pytest.mark.parametrize("take", ["LOCK", "POST", "PUT"])
@pytest.mark.parametrize("release", ["UNLOCK", "DELETE"])
def test_lock_url_methods(c: httpx.Client, p: str, take: str, release: str) -> None:
    """``lock_address = .../lock`` with ``lock_method``/``unlock_method`` in common shapes."""
    assert_text_error(c.get(f"/state/{p}/lock"), 404)
    assert c.head(f"/state/{p}/lock").status_code == 404
    lk = lock_body()
    lid = json.loads(lk)["ID"]
    r = lock(c, p, lk, method=take, lock_url=True)
    assert r.status_code == 200, r.text
    g = c.get(f"/state/{p}/lock")
    assert g.status_code == 200 and g.content == lk
    assert g.headers["content-type"].startswith("application/json")
    # it is the same lock as on the state URL
    assert_holder(lock(c, p, lock_body()), lk)
    assert_holder(lock(c, p, lock_body(), method=take, lock_url=True), lk)
    assert write(c, p, make_state(serial=1), lid).status_code == 200
    assert write(c, p, make_state(serial=2)).status_code == 409
    r = unlock(c, p, lk, method=release, lock_url=True)
    assert r.status_code == 200, r.text
    assert c.get(f"/state/{p}/lock").status_code == 404
    # force-unlock on the lock URL (empty body)
    assert lock(c, p, lk, method=take, lock_url=True).status_code == 200
    assert unlock(c, p, None, method=release, lock_url=True).status_code == 200
    assert c.get(f"/state/{p}/lock").status_code == 404


def test_state_body_posted_to_a_lock_url_is_not_a_state(c: httpx.Client, p: str) -> None:
    """``/state/<p>/lock`` is the lock URL of ``<p>``: a state POSTed there is not LockInfo."""
    before = snap(c, p)
    everything_before = everything(c)
    refused(write(c, f"{p}/lock", make_state(serial=1)), 400, c, p, before)
    assert everything(c) == everything_before


# -- writes and the lock ID -----------------------------------------------------------------


def test_write_with_the_lock_id(c: httpx.Client, p: str) -> None:
    lk = lock_body()
    lid = json.loads(lk)["ID"]
    assert lock(c, p, lk).status_code == 200
    r = write(c, p, make_state(serial=1, lineage="lin-A"), lid)
    assert r.status_code == 200, r.text
    assert write(c, p, make_state(serial=2, lineage="lin-A"), lid, method="PUT").status_code == 200
    assert version_count(c, p) == 2


def test_write_refused_by_the_lock_is_409(c: httpx.Client, p: str) -> None:
    seeded(c, p, serial=5)
    nxt = make_state(serial=6, lineage="lin-A")
    # ?ID= while no lock is held (released or broken)
    before = snap(c, p)
    refused(write(c, p, nxt, "stale-lock-id"), 409, c, p, before)
    lk = lock_body()
    lid = json.loads(lk)["ID"]
    assert lock(c, p, lk).status_code == 200
    before = snap(c, p)
    refused(write(c, p, nxt, "not-" + lid), 409, c, p, before)  # mismatching ID
    refused(write(c, p, nxt), 409, c, p, before)  # no ID while someone holds the lock
    refused(write(c, p, nxt, method="PUT"), 409, c, p, before)
    refused(write(c, p, nxt, lid.upper() if lid != lid.upper() else "X"), 409, c, p, before)
    assert write(c, p, nxt, lid).status_code == 200


def test_write_on_an_empty_path_with_someone_elses_lock(c: httpx.Client, p: str) -> None:
    lk = lock_body()
    assert lock(c, p, lk).status_code == 200
    before = snap(c, p)
    refused(write(c, p, make_state(serial=1)), 409, c, p, before)
    refused(write(c, p, make_state(serial=1), "other"), 409, c, p, before)


@pytest.mark.parametrize(
    "query",
    [
        [("foo", "1"), ("ID", "{id}")],
        [("ID", "{id}"), ("foo", "1")],
        [("a", ""), ("ID", "{id}"), ("z", "x y&z")],
        [("zzz", "1"), ("aaa", "2"), ("ID", "{id}"), ("mmm", "=")],
    ],
)
def test_query_string_in_any_order(c: httpx.Client, p: str, query: list[tuple[str, str]]) -> None:
    lid = str(uuid.uuid4())
    assert lock(c, p, lock_body(lid)).status_code == 200
    params = [(k, v.format(id=lid)) for k, v in query]
    body = make_state(serial=1)
    r = c.post(f"/state/{p}", params=params, content=body, headers=body_headers(body))
    assert r.status_code == 200, (r.request.url, r.text)
    assert c.get(f"/state/{p}").content == body


@pytest.mark.parametrize(
    ("lock_id", "encoded"),
    [
        ("a b/c", "ID=a+b%2Fc"),  # Go's url.Values.Encode
        ("a b/c", "ID=a%20b%2Fc"),
        ("x+y=z&w", "foo=bar&ID=x%2By%3Dz%26w"),
        ("ünï", "ID=%C3%BCn%C3%AF&a=1"),
    ],
)
def test_query_string_is_decoded(c: httpx.Client, p: str, lock_id: str, encoded: str) -> None:
    assert lock(c, p, lock_body(lock_id)).status_code == 200
    body = make_state(serial=1)
    r = raw(c, "POST", f"/state/{p}?{encoded}", body)
    assert r.status_code == 200, r.text
    assert c.get(f"/state/{p}").content == body


@pytest.mark.parametrize("query", ["ID=", "ID=a&ID=a", "ID=a&ID=b", "ID=a&x=" + "y" * 3000])
def test_bad_id_query_is_400(c: httpx.Client, p: str, query: str) -> None:
    assert lock(c, p, lock_body("a")).status_code == 200
    before = snap(c, p)
    r = raw(c, "POST", f"/state/{p}?{query}", make_state(serial=1))
    refused(r, 400, c, p, before)


def test_retried_identical_post_is_idempotent(c: httpx.Client, p: str) -> None:
    body = make_state(serial=1, lineage="lin-retry")
    first = write(c, p, body)
    assert first.status_code == 200
    for _ in range(3):
        again = write(c, p, body)
        assert again.status_code == 200, again.text
        assert again.headers.get("x-stateward-version") == first.headers.get("x-stateward-version")
    assert version_count(c, p) == 1
    # also inside a lock, and chunked
    lk = lock_body()
    lid = json.loads(lk)["ID"]
    assert lock(c, p, lk).status_code == 200
    body2 = make_state(serial=2, lineage="lin-retry")
    assert write(c, p, body2, lid).status_code == 200
    assert write(c, p, body2, lid).status_code == 200
    assert write(c, p, body2, lid, stream=True, method="PUT").status_code == 200
    assert version_count(c, p) == 2
    assert c.get(f"/state/{p}").content == body2


# -- lineage and serial guards --------------------------------------------------------------


def test_first_write_accepts_any_lineage(c: httpx.Client, p: str) -> None:
    body = make_state(serial=17, lineage="whatever-lineage")
    assert write(c, p, body).status_code == 200
    assert c.get(f"/state/{p}").content == body


def test_guards(c: httpx.Client, p: str) -> None:
    current = seeded(c, p, serial=5, lineage="lin-A")
    before = snap(c, p)
    refused(write(c, p, make_state(serial=6, lineage="lin-B")), 409, c, p, before)
    refused(write(c, p, make_state(serial=99, lineage="lin-B")), 409, c, p, before)
    refused(write(c, p, make_state(serial=4, lineage="lin-A")), 409, c, p, before)
    refused(write(c, p, make_state(serial=0, lineage="lin-A")), 409, c, p, before)
    same_serial = make_state(serial=5, lineage="lin-A", resources=2)
    assert same_serial != current
    refused(write(c, p, same_serial), 409, c, p, before)
    refused(write(c, p, same_serial, method="PUT", stream=True), 409, c, p, before)
    # a higher serial of the same lineage, even with a gap, is accepted
    assert write(c, p, make_state(serial=9, lineage="lin-A")).status_code == 200
    assert version_count(c, p) == 2


def test_guards_apply_inside_a_lock(c: httpx.Client, p: str) -> None:
    seeded(c, p, serial=5, lineage="lin-A")
    lk = lock_body()
    lid = json.loads(lk)["ID"]
    assert lock(c, p, lk).status_code == 200
    before = snap(c, p)
    refused(write(c, p, make_state(serial=6, lineage="lin-B"), lid), 409, c, p, before)
    refused(write(c, p, make_state(serial=4, lineage="lin-A"), lid), 409, c, p, before)


def test_override_lets_one_guarded_write_through(c: httpx.Client, p: str) -> None:
    """``state push -force`` is invisible on the wire: the admin override is the way out."""
    seeded(c, p, serial=5, lineage="lin-A")
    forced = make_state(serial=2, lineage="lin-B")
    before = snap(c, p)
    refused(write(c, p, forced), 409, c, p, before)
    assert c.post("/api/v1/allow-next-write", json={"path": p}).status_code == 200
    assert write(c, p, forced).status_code == 200
    assert c.get(f"/state/{p}").content == forced
    before = snap(c, p)  # the override was consumed
    refused(write(c, p, make_state(serial=1, lineage="lin-A")), 409, c, p, before)


def test_tofu_vector_is_the_real_one() -> None:
    assert hashlib.sha256(TOFU_ENCRYPTED).hexdigest() == TOFU_SHA256
    doc = json.loads(TOFU_ENCRYPTED)
    assert "version" not in doc and doc["encryption_version"] == "v0"


def _tofu(serial: int, lineage: str = TOFU_LINEAGE, data: str | None = None) -> bytes:
    """Another envelope in OpenTofu's shape (compact, same key order)."""
    doc = json.loads(TOFU_ENCRYPTED)
    doc["serial"] = serial
    doc["lineage"] = lineage
    if data is not None:
        doc["encrypted_data"] = data
    return json.dumps(doc, separators=(",", ":")).encode()


def test_tofu_encrypted_state_is_stored_verbatim_and_guarded(c: httpx.Client, p: str) -> None:
    r = write(c, p, TOFU_ENCRYPTED)
    assert r.status_code == 200, r.text
    g = c.get(f"/state/{p}")
    assert g.content == TOFU_ENCRYPTED
    assert base64.b64decode(g.headers["content-md5"]) == hashlib.md5(TOFU_ENCRYPTED).digest()
    (v,) = c.get("/api/v1/versions", params={"path": p}).json()
    assert v["serial"] == 3 and v["lineage"] == TOFU_LINEAGE and v["client_encrypted"] is True
    assert write(c, p, TOFU_ENCRYPTED).status_code == 200  # retried: idempotent
    assert version_count(c, p) == 1
    before = snap(c, p)
    other_data = base64.b64encode(b"\x01" * 64).decode()
    refused(write(c, p, _tofu(3, data=other_data)), 409, c, p, before)  # same serial
    refused(write(c, p, _tofu(2, data=other_data)), 409, c, p, before)  # lower serial
    refused(write(c, p, _tofu(4, lineage=str(uuid.uuid4()))), 409, c, p, before)  # lineage
    refused(write(c, p, make_state(serial=4, lineage="plain")), 409, c, p, before)
    nxt = _tofu(4, data=other_data)
    assert write(c, p, nxt, stream=True).status_code == 200
    assert c.get(f"/state/{p}").content == nxt


def test_plaintext_state_can_follow_an_encrypted_one_of_the_same_lineage(
    c: httpx.Client, p: str
) -> None:
    """Migration away from client-side encryption keeps lineage and bumps the serial."""
    assert write(c, p, TOFU_ENCRYPTED).status_code == 200
    plain = make_state(serial=4, lineage=TOFU_LINEAGE)
    assert write(c, p, plain).status_code == 200
    assert write(c, p, _tofu(5)).status_code == 200


# -- bad state bodies -----------------------------------------------------------------------


def _doc(**fields: Any) -> bytes:
    doc: dict[str, Any] = {
        "version": 4,
        "terraform_version": "1.11.4",
        "serial": 7,
        "lineage": "lin-A",
        "outputs": {},
        "resources": [],
    }
    for k, v in fields.items():
        if v is ...:
            doc.pop(k)
        else:
            doc[k] = v
    return json.dumps(doc).encode()


BAD_BODIES = {
    "invalid-json": b'{"version": 4, "serial": ',
    "not-utf8": b'{"version": 4, "lineage": "\xff\xfe"}',
    "json-array": b"[]",
    "json-array-of-state": b"[" + make_state(serial=7, lineage="lin-A") + b"]",
    "json-string": b'"state"',
    "json-null": b"null",
    "json-number": b"7",
    "empty-object": b"{}",
    "no-serial": _doc(serial=...),
    "no-lineage": _doc(lineage=...),
    "serial-string": _doc(serial="7"),
    "serial-negative": _doc(serial=-1),
    "serial-float": _doc(serial=7.5),
    "serial-bool": _doc(serial=True),
    "lineage-empty": _doc(lineage=""),
    "lineage-number": _doc(lineage=12),
    "version-3": _doc(version=3),
    "version-5": _doc(version=5),
    "version-string": _doc(version="4"),
    "version-missing": _doc(version=...),
    "no-terraform-version": _doc(terraform_version=...),
    "resources-not-list": _doc(resources={}),
    "outputs-not-object": _doc(outputs=[]),
    "tofu-fake-encrypted": (
        b'{\n  "encryption_version": "v0",\n  "meta": {\n    "key_provider.pbkdf2.main": {\n'
        b'      "salt": "ZmFrZXNhbHQ=",\n      "iterations": 600000\n    }\n  },\n'
        b'  "encrypted_data": "ZmFrZS1lbmNyeXB0ZWQtcGF5bG9hZA=="\n}\n'
    ),
    "tofu-unknown-encryption-version": _tofu(8).replace(b'"v0"', b'"v1"'),
    "tofu-no-encrypted-data": _tofu(8).replace(b'"encrypted_data"', b'"encrypted_dat"'),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_state_body_is_400(c: httpx.Client, p: str, name: str) -> None:
    body = BAD_BODIES[name]
    before = snap(c, p)
    refused(write(c, p, body), 400, c, p, before)  # empty path: nothing gets created
    seeded(c, p, serial=5, lineage="lin-A")
    before = snap(c, p)
    refused(write(c, p, body), 400, c, p, before)
    refused(write(c, p, body, method="PUT", stream=True), 400, c, p, before)


def _state_of_size(size: int, serial: int, lineage: str) -> bytes:
    body = make_state(serial=serial, lineage=lineage)
    body = make_state(serial=serial, lineage=lineage, pad=size - len(body))
    assert len(body) == size
    return body


def test_body_size_limit(small_srv: ServerProcess) -> None:
    path = f"big-{uuid.uuid4().hex[:8]}/app/prod"
    with httpx.Client(base_url=small_srv.url, timeout=15) as c:
        at_limit = _state_of_size(SMALL_LIMIT, 1, "lin-big")
        assert write(c, path, at_limit).status_code == 200
        before = snap(c, path)
        over = _state_of_size(SMALL_LIMIT + 1, 2, "lin-big")
        refused(write(c, path, over), 413, c, path, before)
        refused(write(c, path, over, stream=True), 413, c, path, before)
        huge = _state_of_size(20 * SMALL_LIMIT, 3, "lin-big")
        refused(write(c, path, huge), 413, c, path, before)
        refused(write(c, path, huge, stream=True, method="PUT"), 413, c, path, before)
        # chunked, exactly at the limit, still fits
        at_limit2 = _state_of_size(SMALL_LIMIT, 4, "lin-big")
        assert write(c, path, at_limit2, stream=True).status_code == 200
        # on an empty path, nothing is created either
        empty = f"big-{uuid.uuid4().hex[:8]}/app/dev"
        before = snap(c, empty)
        refused(write(c, empty, over), 413, c, empty, before)
        refused(write(c, empty, over, stream=True), 413, c, empty, before)
        # lock bodies have their own limit, independent of the state limit
        lk = lock_body(who="x" * (SMALL_LIMIT + 10))
        assert lock(c, path, lk).status_code == 200
        assert unlock(c, path, lk).status_code == 200


# -- paths ----------------------------------------------------------------------------------


BAD_PATHS = {
    "space": "team/app/pr%20od",
    "percent-slash": "team%2Fapp/prod",
    "percent-dot": "team/%2e%2e/prod",
    "percent-unicode": "team/%C3%A9/prod",
    "tilde": "team/app~/prod",
    "colon": "team/app:1/prod",
    "at": "team/@app/prod",
    "plus": "team/a+b/prod",
    "dollar": "team/$app/prod",
    "comma": "team/a,b/prod",
    "percent-null": "team/a%00b/prod",
    "dot": "team/./prod",
    "dotdot": "team/../prod",
    "only-dotdot": "..",
    "only-dot": ".",
    "empty-segment": "a//b",
    "leading-slash": "/a/b",
    "trailing-slash": "a/b/",
    "empty": "",
    "too-deep": "/".join("s" * 9),
    "too-long": "/".join(["x" * 64] * 4) + "/y",
    "segment-too-long": "team/" + "x" * 65 + "/prod",
    "state-named-lock": "lock",
    "lock-url-of-a-state-named-lock": "team/lock/lock",
    "lock-url-ending-in-lock": "lock/lock",
    "trailing-slash-after-lock": "team/app/lock/",
}


@pytest.mark.parametrize("name", sorted(BAD_PATHS))
def test_bad_path_is_400(c: httpx.Client, name: str) -> None:
    path = BAD_PATHS[name]
    before = everything(c)
    body = make_state(serial=1)
    lk = lock_body()
    for target in (f"/state/{path}", f"/state/{path}/lock"):
        for method, content in (
            ("GET", None),
            ("HEAD", None),
            ("POST", body),
            ("PUT", body),
            ("DELETE", None),
            ("LOCK", lk),
            ("UNLOCK", lk),
            ("UNLOCK", None),
        ):
            if target.endswith("/lock") and method in ("POST", "PUT"):
                content = lk
            r = raw(c, method, target, content)
            assert r.status_code == 400, (method, target, r.status_code, r.text)
            if method != "HEAD":
                assert_text_error(r, 400)
    assert everything(c) == before


def test_path_limits_are_inclusive(c: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    paths = [
        "/".join([tag, *("s" * 7)]),  # 8 segments
        f"{tag}/" + "x" * 64 + "/prod",  # 64-character segment
        f"{tag}/" + "/".join(["y" * 64] * 3) + "/" + "z" * (256 - 9 - 3 * 65),  # 256 chars
        f"{tag}/A-Z_a-z.0-9/.hidden/-/_",
        f"{tag}/lock/x",  # 'lock' is reserved only as the last segment
        f"{tag}/app/Lock",
        f"{tag}/app/locks",
    ]
    assert len(paths[2]) == 256
    for i, path in enumerate(paths):
        body = make_state(serial=i + 1)
        assert write(c, path, body).status_code == 200, path
        assert c.get(f"/state/{path}").content == body
        lk = lock_body()
        assert lock(c, path, lk, lock_url=True).status_code == 200, path
        assert c.get(f"/state/{path}/lock").content == lk
        assert unlock(c, path, lk).status_code == 200


def test_percent_encoded_path_never_aliases_a_state(c: httpx.Client, p: str) -> None:
    body = seeded(c, p)
    encoded = p.replace("/", "%2F", 1)
    assert_text_error(raw(c, "GET", f"/state/{encoded}"), 400)
    assert_text_error(raw(c, "GET", f"/state/{p.replace('a', '%61', 1)}"), 400)
    assert_text_error(raw(c, "GET", f"/state/x/../{p}"), 400)
    assert c.get(f"/state/{p}").content == body


# -- methods --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "FOO", "TRACE", "PROPFIND"])
@pytest.mark.parametrize("lock_url", [False, True])
def test_unknown_method_is_405_with_allow(
    c: httpx.Client, p: str, method: str, lock_url: bool
) -> None:
    seeded(c, p)
    before = snap(c, p)
    url = f"/state/{p}/lock" if lock_url else f"/state/{p}"
    body = make_state(serial=6, lineage="lin-A")
    for content in (None, body):
        r = c.request(method, url, content=content)
        refused(r, 405, c, p, before)
        allowed = {m.strip() for m in r.headers["allow"].split(",")}
        assert allowed >= STATE_METHODS
        assert method not in allowed


# -- delete and protection ------------------------------------------------------------------


def test_delete_is_soft_and_restorable(c: httpx.Client, p: str) -> None:
    body = seeded(c, p, serial=5, lineage="lin-A")
    r = c.delete(f"/state/{p}")
    assert r.status_code == 200, r.text
    assert_text_error(c.get(f"/state/{p}"), 404)
    assert c.head(f"/state/{p}").status_code == 404
    # versions survive a delete
    assert version_count(c, p) == 1
    # a second DELETE finds nothing
    before = snap(c, p)
    refused(c.delete(f"/state/{p}"), 404, c, p, before)
    assert c.post("/api/v1/restore", json={"path": p}).status_code == 200
    assert c.get(f"/state/{p}").content == body


def test_write_after_delete_starts_fresh(c: httpx.Client, p: str) -> None:
    seeded(c, p, serial=5, lineage="lin-A")
    assert c.delete(f"/state/{p}").status_code == 200
    fresh = make_state(serial=1, lineage="lin-new")
    assert write(c, p, fresh).status_code == 200
    assert c.get(f"/state/{p}").content == fresh
    assert version_count(c, p) == 2


def test_delete_of_nothing_is_404(c: httpx.Client, p: str) -> None:
    before = snap(c, p)
    refused(c.delete(f"/state/{p}"), 404, c, p, before)


def test_delete_while_locked_is_423(c: httpx.Client, p: str) -> None:
    seeded(c, p)
    lk = lock_body()
    assert lock(c, p, lk).status_code == 200
    before = snap(c, p)
    r = c.delete(f"/state/{p}")
    assert_holder(r, lk)
    assert snap(c, p) == before
    assert unlock(c, p, lk).status_code == 200
    assert c.delete(f"/state/{p}").status_code == 200


def test_delete_of_a_protected_path_is_403(c: httpx.Client, p: str) -> None:
    seeded(c, p)
    r = c.post("/api/v1/protect", json={"path": p})
    assert r.status_code == 200, r.text
    before = snap(c, p)
    refused(c.delete(f"/state/{p}"), 403, c, p, before)
    lk = lock_body()
    assert lock(c, p, lk).status_code == 200
    before = snap(c, p)
    refused(c.delete(f"/state/{p}"), 403, c, p, before)
    assert unlock(c, p, lk).status_code == 200
    # protection does not stop ordinary writes
    assert write(c, p, make_state(serial=6, lineage="lin-A")).status_code == 200
    assert c.post("/api/v1/protect", json={"path": p, "protected": False}).status_code == 200
    assert c.delete(f"/state/{p}").status_code == 200


# -- response shape of errors ----------------------------------------------------------------


def _status_line_requests(c: httpx.Client, p: str) -> Iterable[httpx.Response]:
    yield c.get(f"/state/{p}")
    yield write(c, p, b"{")
    yield write(c, p, make_state(serial=1), md5=md5_b64(b"x"))
    yield write(c, p, make_state(serial=1), "nolock")
    yield c.request("PATCH", f"/state/{p}")
    yield raw(c, "GET", "/state/a//b")


def test_error_messages_are_one_line_and_leak_no_state(c: httpx.Client, p: str) -> None:
    secret = "s3cr3t"  # in every make_state() body
    for r in _status_line_requests(c, p):
        assert 400 <= r.status_code < 500
        assert_text_error(r, r.status_code)
        assert secret not in r.text


def test_client_text_cannot_forge_log_lines(server: ServerProcess) -> None:
    """A newline smuggled in through ?ID= or a path escape stays on one log line."""
    with httpx.Client(base_url=server.url) as c:
        body = make_state(serial=1)
        r = c.post("/state/logs/x", params={"ID": "a\nINFO: forged"}, content=body)
        assert_text_error(r, 409)
        assert c.post("/state/logs/x", params={"ID": "a" * 257}, content=body).status_code == 400
        assert_text_error(c.get("/state/logs%0AINFO:%20forged"), 400)
    assert server.log_path is not None
    log = server.log_path.read_text()
    assert "\nINFO: forged" not in log and "refused POST /state/logs/x" in log
