"""Access control: the permission matrix on the service, and authentication over real HTTP.

The matrix calls every service operation (each protocol request, API call and CLI command ends
in one of them) as principals whose only role grants exactly the operation's action --
unconditionally, outside a time window, from another network, or with a deny rule on top --
and as a principal whose role grants everything else. "Allowed" means the policy let the call
through (it may still fail later, e.g. 404 for a missing version); "denied" means Forbidden
with the policy's reason and nothing changed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stateward.domain.actions import ACTION_TABLE, GRANTS, Action
from stateward.domain.errors import Forbidden, ServiceError
from stateward.domain.policy_model import DAYS, Role, Rule, TimeWindow
from stateward.domain.principal import Principal
from stateward.service.core import StateService
from stateward.service.factory import build_service
from tests.harness.pg import Store
from tests.harness.support import ServerProcess, lock_body, make_state, md5_b64

P = "m/app/prod"  # a live state with two versions
GONE = "m/app/old"  # a soft-deleted state
SOURCE = "192.0.2.10"
ADMIN = Principal("setup", roles=("admin",), source=SOURCE)

Call = Callable[[StateService, Principal], Any]

#: One call per service operation, with the action it needs (mirrors actions.ACTION_TABLE).
OPERATIONS: list[tuple[str, Action, Call]] = [
    ("read", Action.READ, lambda s, w: s.writes.read(w, P)),
    ("get_version_body", Action.READ, lambda s, w: s.history.get_version_body(w, P, 1)),
    ("get_lock_info", Action.READ, lambda s, w: s.locks.get_lock_info(w, P)),
    ("write", Action.WRITE, lambda s, w: s.writes.write(w, P, _next_state(s))),
    ("lock", Action.LOCK, lambda s, w: s.locks.lock(w, P, lock_body())),
    ("unlock", Action.UNLOCK, lambda s, w: s.locks.unlock(w, P, lock_body())),
    ("force_unlock", Action.FORCE_UNLOCK, lambda s, w: s.locks.unlock(w, P, b"")),
    ("delete", Action.DELETE, lambda s, w: s.admin.delete(w, P)),
    ("history", Action.HISTORY, lambda s, w: s.history.history(w, P)),
    ("get_version", Action.HISTORY, lambda s, w: s.history.get_version(w, P, 1)),
    ("diff", Action.HISTORY, lambda s, w: s.history.diff(w, P, 1, 2)),
    ("get_lock", Action.HISTORY, lambda s, w: s.locks.get_lock(w, P)),
    ("rollback", Action.ROLLBACK, lambda s, w: s.writes.rollback(w, P, 1)),
    ("break_lock", Action.ADMIN, lambda s, w: s.locks.break_lock(w, P)),
    ("restore", Action.ADMIN, lambda s, w: s.admin.restore(w, GONE)),
    ("purge", Action.ADMIN, lambda s, w: s.admin.purge(w, GONE)),
    ("protect", Action.ADMIN, lambda s, w: s.admin.set_protected(w, P, False)),
    ("allow_next_write", Action.ADMIN, lambda s, w: s.admin.allow_next_write(w, P)),
    ("maintenance", Action.ADMIN, lambda s, w: s.admin.run_maintenance(w)),
    (
        "create_token",
        Action.ADMIN,
        lambda s, w: s.tokens.create_token(w, uuid.uuid4().hex, ["reader"]),
    ),
    ("list_tokens", Action.ADMIN, lambda s, w: s.tokens.list_tokens(w)),
    ("revoke_token", Action.ADMIN, lambda s, w: s.tokens.revoke_token(w, "nobody")),
    ("events_path", Action.AUDIT, lambda s, w: s.admin.events(w, P)),
    ("events_store", Action.AUDIT, lambda s, w: s.admin.events(w)),
]


def _next_state(svc: StateService) -> bytes:
    current = svc.writes.read(ADMIN, P)
    assert current is not None
    doc = json.loads(current.body)
    return make_state(serial=doc["serial"] + 1, lineage=doc["lineage"])


def _closed_window() -> TimeWindow:
    """A whole-day window two days away: never contains now."""
    today = dt.datetime.now(dt.UTC).weekday()
    return TimeWindow(days=(DAYS[(today + 2) % 7],), start="00:00", end="24:00")


def _roles() -> dict[str, Role]:
    roles: dict[str, Role] = {}
    for action in Action:
        name = action.value
        roles[f"only-{name}"] = Role(rules=(Rule(actions=(action,), paths=("**",)),))
        roles[f"window-{name}"] = Role(
            rules=(Rule(actions=(action,), paths=("**",), windows=(_closed_window(),)),)
        )
        roles[f"net-{name}"] = Role(
            rules=(Rule(actions=(action,), paths=("**",), cidrs=("10.0.0.0/8",)),)  # type: ignore[arg-type]
        )
        roles[f"deny-{name}"] = Role(
            rules=(
                Rule(actions=("*",), paths=("**",)),
                Rule(actions=(action,), paths=("m/**",), effect="deny"),
            )
        )
        # nothing that overlaps: for read, not even the outputs-only fallback
        others = tuple(a for a in Action if not GRANTS[a] & GRANTS[action])
        roles[f"all-but-{name}"] = Role(rules=(Rule(actions=others, paths=("**",)),))
    return roles


@pytest.fixture
def svc(tmp_path: Path, store: Store) -> Iterator[StateService]:
    """The service-level matrix runs on both stores (SQLite + files, PostgreSQL + S3)."""
    service = build_service(store.settings(tmp_path / "d", roles=_roles()))
    lineage = str(uuid.uuid4())
    service.writes.write(ADMIN, P, make_state(serial=1, lineage=lineage))
    service.writes.write(ADMIN, P, make_state(serial=2, lineage=lineage))
    service.writes.write(ADMIN, GONE, make_state(serial=1))
    service.admin.delete(ADMIN, GONE)
    yield service
    service.engine.dispose()


def _snapshot(svc: StateService) -> Any:
    state = svc.writes.read(ADMIN, P)
    return (
        state.body if state else None,
        [v.seq for v in svc.history.history(ADMIN, P)],
        svc.locks.get_lock(ADMIN, P),
        [t.name for t in svc.tokens.list_tokens(ADMIN)],
        [e.id for e in svc.admin.events(ADMIN, limit=10000)],
    )


def _who(role: str, source: str = SOURCE) -> Principal:
    return Principal(f"p-{role}", source=source, roles=(role,))


def test_matrix_covers_every_action_of_the_table() -> None:
    table_actions = {op.action for op in ACTION_TABLE} - {Action.READ_OUTPUTS}
    assert table_actions <= {action for _, action, _ in OPERATIONS}


@pytest.mark.parametrize(("name", "action", "call"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_allowed_by_exactly_its_action(
    svc: StateService, name: str, action: Action, call: Call
) -> None:
    try:
        call(svc, _who(f"only-{action.value}"))
    except Forbidden as exc:
        # only the store's own guards may refuse (never the policy)
        assert "grant" not in str(exc) and "denies" not in str(exc), str(exc)
    except ServiceError:
        pass  # authorized; refused later (missing version, lock mismatch, ...)


@pytest.mark.parametrize(
    "variant",
    ["all-but", "window", "net", "deny", "no-role"],
)
@pytest.mark.parametrize(("name", "action", "call"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_denied_without_it_or_when_a_condition_is_unmet(
    svc: StateService, name: str, action: Action, call: Call, variant: str
) -> None:
    who = Principal("nobody", source=SOURCE) if variant == "no-role" else _who(
        f"{variant}-{action.value}"
    )
    before = _snapshot(svc)
    if name == "read" and variant == "deny":
        # denying `read` still leaves the outputs view (the role allows read-outputs)
        state = call(svc, who)
        assert json.loads(state.body)["resources"] == []
        return
    with pytest.raises(Forbidden) as err:
        call(svc, who)
    reason = str(err.value)
    expected = {
        "all-but": "does not grant",
        "window": "only inside its time windows",
        "net": "only from its allowed networks",
        "deny": "denies",
        "no-role": "the credential has none",
    }[variant]
    assert expected in reason, reason
    assert _snapshot(svc) == before


def test_network_condition_is_met_from_an_allowed_address(svc: StateService) -> None:
    assert svc.writes.read(_who("net-read", source="10.1.2.3"), P) is not None
    with pytest.raises(Forbidden):
        svc.writes.read(_who("net-read", source="cli"), P)  # no address: a network rule fails


def test_path_limits_and_listings(svc: StateService) -> None:
    svc.writes.write(ADMIN, "other/app/prod", make_state())
    limited = Principal("lim", source=SOURCE, roles=("reader",), paths=("m/**",))
    assert svc.writes.read(limited, P) is not None
    with pytest.raises(Forbidden, match="restricted to paths other than other/app/prod"):
        svc.writes.read(limited, "other/app/prod")
    assert [s.path for s in svc.history.list_states(limited)] == [P]
    assert {s.path for s in svc.history.list_states(ADMIN)} == {P, "other/app/prod"}
    svc.locks.lock(ADMIN, "other/app/prod", lock_body())
    svc.locks.lock(ADMIN, P, lock_body())
    assert [lk.path for lk in svc.locks.list_locks(limited)] == [P]
    assert svc.history.list_states(Principal("none", source=SOURCE)) == []


def test_outputs_only_reads(svc: StateService) -> None:
    full = svc.writes.read(ADMIN, P)
    assert full is not None
    outputs = svc.writes.read(_who("only-read-outputs"), P)
    assert outputs is not None
    doc = json.loads(outputs.body)
    assert doc["resources"] == [] and set(doc["outputs"]) == {"name"}
    assert (doc["serial"], doc["lineage"]) == (json.loads(full.body)["serial"],
                                               json.loads(full.body)["lineage"])  # fmt: skip
    assert outputs.md5 != full.md5 and b"s3cr3t" not in outputs.body
    sensitive = svc.writes.read(_who("only-read-sensitive-outputs"), P)
    assert sensitive is not None
    assert set(json.loads(sensitive.body)["outputs"]) == {"name", "secret"}
    # an outputs-only principal sees no history or other versions
    with pytest.raises(Forbidden):
        svc.history.get_version_body(_who("only-read-outputs"), P, 1)


def test_outputs_only_refused_for_client_encrypted_states(svc: StateService) -> None:
    from tests.harness.support import TOFU_ENCRYPTED

    svc.writes.write(ADMIN, "m/enc/prod", TOFU_ENCRYPTED)
    with pytest.raises(Forbidden, match="encrypted by its client"):
        svc.writes.read(_who("only-read-outputs"), "m/enc/prod")
    state = svc.writes.read(_who("only-read"), "m/enc/prod")
    assert state is not None and state.body == TOFU_ENCRYPTED


def test_opentofu_force_unlock_body_needs_force_unlock(svc: StateService) -> None:
    from tests.harness.support import tofu_force_unlock_body

    lock_id = str(uuid.uuid4())
    svc.locks.lock(ADMIN, P, lock_body(lock_id))
    with pytest.raises(Forbidden, match="does not grant force-unlock"):
        svc.locks.unlock(_who("only-unlock"), P, tofu_force_unlock_body(lock_id))
    svc.locks.unlock(_who("only-force-unlock"), P, tofu_force_unlock_body(lock_id))
    assert svc.locks.get_lock(ADMIN, P) is None
    assert any(e.action == "force-unlock" for e in svc.admin.events(ADMIN, P))


# -- over HTTP --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, module_store: Store) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("access") / "data"
    config = data.parent / "stateward.toml"
    config.write_text(
        "auth_failure_limit = 3\nauth_block_seconds = 30\n"
        'trusted_proxies = ["127.0.0.1/32"]\n'
    )
    proc = ServerProcess(data, config=config, store=module_store).start()
    yield proc
    proc.stop()


def _basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def _from(address: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Requests that appear (through the trusted proxy) to come from ``address``."""
    return {"X-Forwarded-For": address, **(headers or {})}


def test_initial_admin_token_is_printed_once(srv: ServerProcess, tmp_path: Path) -> None:
    assert srv.log_path is not None
    log = srv.log_path.read_text()
    assert log.count(srv.token or "-") == 1 and "initial-admin" in log
    again = ServerProcess(srv.data_dir, token=srv.token, store=srv.store).start()
    try:
        assert again.log_path is not None
        assert "swt_" not in again.log_path.read_text()  # a restart shows no token
    finally:
        again.stop()


def test_every_request_needs_credentials(srv: ServerProcess) -> None:
    base = srv.bare_url
    path = f"anon/{uuid.uuid4().hex[:8]}/prod"
    body = make_state()
    requests = [
        ("GET", f"/state/{path}", None),
        ("HEAD", f"/state/{path}", None),
        ("POST", f"/state/{path}", body),
        ("LOCK", f"/state/{path}", lock_body()),
        ("UNLOCK", f"/state/{path}", b""),
        ("DELETE", f"/state/{path}", None),
        ("GET", f"/state/{path}/lock", None),
        ("GET", "/api/v1/states", None),
        ("GET", "/api/v1/events", None),
        ("POST", "/api/v1/maintenance", None),
    ]
    for method, url, content in requests:
        headers = {"Content-MD5": md5_b64(content)} if content else {}
        r = httpx.request(method, base + url, content=content, headers=headers, timeout=10)
        assert r.status_code == 401, (method, url, r.status_code)
        assert r.headers["www-authenticate"].startswith("Basic realm=")
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(srv.state_url(path)).status_code == 404  # nothing was created


def test_token_forms_and_refusals(srv: ServerProcess) -> None:
    path = f"forms/{uuid.uuid4().hex[:8]}/prod"
    url = srv.state_url(path, creds=False)
    writer = srv.create_token(f"w-{uuid.uuid4().hex[:6]}", "writer")
    reader = srv.create_token(f"r-{uuid.uuid4().hex[:6]}", "reader")
    body = make_state()
    headers = {"Content-MD5": md5_b64(body)}
    assert httpx.post(url, content=body, headers={**headers, **_basic("any", writer)}).is_success
    for auth in (
        _basic("name", reader),
        {"Authorization": f"Bearer {reader}"},
        {"Authorization": "Basic " + base64.b64encode(reader.encode()).decode()},
    ):
        assert httpx.get(url, headers=auth).content == body
    r = httpx.post(url, content=make_state(serial=2), headers={**headers, **_basic("r", reader)})
    assert r.status_code == 403
    assert r.text == f"role reader does not grant write on {path}\n"
    for bad in ({"Authorization": "Digest abc"}, {"Authorization": "Basic !!!"},
                {"Authorization": "Bearer"}):  # fmt: skip
        r = httpx.get(url, headers=bad)
        assert r.status_code == 401 and "www-authenticate" in r.headers
        assert "abc" not in r.text
    assert httpx.get(url).status_code == 401
    assert httpx.get(srv.state_url(path)).content == body


def test_outputs_only_get_over_http(srv: ServerProcess) -> None:
    path = f"outs/{uuid.uuid4().hex[:8]}/prod"
    body = make_state()
    assert httpx.post(srv.state_url(path), content=body).is_success
    token = srv.create_token(f"o-{uuid.uuid4().hex[:6]}", "outputs-reader")
    r = httpx.get(srv.state_url(path, creds=False), headers=_basic("o", token))
    assert r.status_code == 200
    assert r.headers["content-md5"] == md5_b64(r.content)
    doc = r.json()
    assert doc["resources"] == [] and "secret" not in doc["outputs"]
    head = httpx.head(srv.state_url(path, creds=False), headers=_basic("o", token))
    assert head.headers["content-md5"] == r.headers["content-md5"]
    # listings are filtered, the history needs more than outputs
    api = srv.bare_url + "/api/v1"
    assert httpx.get(f"{api}/versions", params={"path": path},
                     headers=_basic("o", token)).status_code == 403  # fmt: skip


def test_throttling_blocks_the_address_and_not_other_clients(srv: ServerProcess) -> None:
    url = srv.state_url("throttle/app/prod", creds=False)
    good = srv.create_token(f"g-{uuid.uuid4().hex[:6]}", "reader")
    attacker = "203.0.113.66"
    for _ in range(3):
        r = httpx.get(url, headers=_from(attacker, _basic("x", "swt_" + "C" * 43)))
        assert r.status_code == 401
    r = httpx.get(url, headers=_from(attacker, _basic("x", "swt_" + "C" * 43)))
    assert r.status_code == 401  # the 4th failure starts the block
    blocked = httpx.get(url, headers=_from(attacker, _basic("x", good)))
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert "retry later" in blocked.text
    # another client, even with the same token, is not slowed down
    assert httpx.get(url, headers=_from("198.51.100.20", _basic("x", good))).status_code == 404
    events = httpx.get(f"{srv.url}/api/v1/events").json()
    assert any(e["action"] == "auth-throttled" and attacker in e["detail"] for e in events)


def test_throttling_by_claimed_token_name_across_addresses(srv: ServerProcess) -> None:
    url = srv.state_url("throttle/app/name", creds=False)
    for i in range(4):
        r = httpx.get(url, headers=_from(f"198.18.0.{i + 1}", _basic("ci-prod", "wrong-secret")))
        assert r.status_code == 401
    r = httpx.get(url, headers=_from("198.18.1.1", _basic("ci-prod", "another-guess")))
    assert r.status_code == 429
    # names are not secret: the real holder of a valid credential is not locked out
    ok = srv.create_token(f"n-{uuid.uuid4().hex[:6]}", "reader")
    assert httpx.get(url, headers=_from("198.18.1.2", _basic("ci-prod", ok))).status_code == 404
    assert httpx.get(url, headers=_from("198.18.1.1", _basic("other", ok))).status_code == 404
