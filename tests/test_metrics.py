"""Observability: Prometheus ``/metrics``, JSON logs and request IDs (real server processes)."""

from __future__ import annotations

import json
import logging
import platform
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stateward import __version__, logs, metrics
from stateward.config import ConfigError, load_settings
from stateward.http import metrics as http_metrics
from tests.harness.aws import REGION
from tests.harness.pg import Store
from tests.harness.support import ServerProcess, lock_body, make_state, md5_b64

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(srv: ServerProcess, auth: bool = True) -> str:
    r = httpx.get(f"{srv.url if auth else srv.bare_url}/metrics", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(s: Samples, name: str, **labels: str) -> float:
    return s.get((name, frozenset(labels.items())), 0.0)


def requests_of(s: Samples, route: str, method: str, status: int) -> float:
    return value(s, "stateward_http_requests_total", route=route, method=method, status=str(status))


def _post(c: httpx.Client, url: str, body: bytes) -> httpx.Response:
    return c.post(url, content=body, headers={"Content-MD5": md5_b64(body)})


def _config(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "stateward.toml"
    cfg.write_text(text)
    return cfg


@pytest.fixture
def server_with(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for srv in started:
        srv.stop()


def _start(started: list[ServerProcess], srv: ServerProcess) -> ServerProcess:
    started.append(srv)
    return srv.start()


# -- counts per route template --------------------------------------------------------------------


def test_request_counts_per_route_template(server: ServerProcess) -> None:
    before = samples(scrape(server))
    p = "team/metrics/prod"
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert _post(c, f"/state/{p}", make_state(serial=1, lineage="L")).status_code == 200
        assert _post(c, f"/state/{p}", make_state(serial=2, lineage="L")).status_code == 200
        assert c.get(f"/state/{p}").status_code == 200
        assert c.head(f"/state/{p}").status_code == 200
        assert c.get("/state/team/metrics/none").status_code == 404
        assert c.request("LOCK", f"/state/{p}/lock", content=lock_body("A")).status_code == 200
        assert c.get(f"/state/{p}/lock").status_code == 200
        r = c.request("LOCK", f"/state/{p}", content=lock_body("B"))
        assert r.status_code == 423
        assert c.request("UNLOCK", f"/state/{p}/lock", content=lock_body("A")).status_code == 200
        assert c.request("FOO", f"/state/{p}").status_code == 405
        assert c.get("/api/v1/versions", params={"path": p}).status_code == 200
        assert c.get("/api/v1/versions", params={"path": "x/y"}).status_code == 404
        assert c.get("/api/v1/states").status_code == 200
        assert c.get("/api/v1/no-such-thing").status_code == 404
        assert c.get("/elsewhere/entirely").status_code == 404
        assert c.get("/readyz").status_code == 200
    assert httpx.get(f"{server.bare_url}/state/{p}").status_code == 401  # no credentials
    bad = httpx.get(f"{server.bare_url}/state/{p}", auth=("x", "swt_wrong"))
    assert bad.status_code == 401
    after = samples(scrape(server))

    def delta(route: str, method: str, status: int) -> float:
        return requests_of(after, route, method, status) - requests_of(
            before, route, method, status
        )

    state, lock = "/state/{path}", "/state/{path}/lock"
    assert delta(state, "POST", 200) == 2
    assert delta(state, "GET", 200) == 1 and delta(state, "HEAD", 200) == 1
    assert delta(state, "GET", 404) == 1
    assert delta(state, "GET", 401) == 2
    assert delta(state, "LOCK", 423) == 1
    assert delta(state, "other", 405) == 1
    assert delta(lock, "LOCK", 200) == 1 and delta(lock, "GET", 200) == 1
    assert delta(lock, "UNLOCK", 200) == 1
    assert delta("/api/v1/versions", "GET", 200) == 1
    assert delta("/api/v1/versions", "GET", 404) == 1
    assert delta("/api/v1/states", "GET", 200) == 1
    assert delta("other", "GET", 404) == 2  # unknown API route and unknown path alike
    assert delta("/readyz", "GET", 200) == 1
    assert delta("/metrics", "GET", 200) == 1  # the first scrape (counted once answered)

    def counted(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert counted("stateward_lock_conflicts_total") == 1
    assert counted("stateward_auth_failures_total", reason="missing-credentials") == 1
    assert counted("stateward_auth_failures_total", reason="invalid-credentials") == 1
    hist = "stateward_http_request_duration_seconds_count"
    assert counted(hist, route=state, method="POST") == 2
    assert counted(hist, route="/api/v1/versions", method="GET") == 2
    assert value(after, "stateward_states", status="active") == 0  # cached 15 s since `before`
    build = {"version": __version__, "python": platform.python_version()}
    assert value(after, "stateward_build_info", **build) == 1
    text = scrape(server)
    for name in ("audit_write_failures", "kms_calls", "alerts", "lock_conflicts"):
        assert f"# TYPE stateward_{name}_total counter" in text
    assert p not in text and "team/" not in text


# -- access ---------------------------------------------------------------------------------------


def test_metrics_need_audit_on_the_whole_store(
    tmp_path: Path, server_with: list[ServerProcess], store: Store
) -> None:
    cfg = _config(
        tmp_path,
        '[roles.monitoring]\n[[roles.monitoring.rules]]\nactions = ["audit"]\npaths = ["**"]\n'
        '[roles.team-audit]\n[[roles.team-audit.rules]]\nactions = ["audit"]\n'
        'paths = ["team/**"]\n',
    )
    srv = _start(server_with, ServerProcess(tmp_path / "data", config=cfg, store=store))
    url = f"{srv.bare_url}/metrics"
    anonymous = httpx.get(url)
    assert anonymous.status_code == 401 and "stateward_" not in anonymous.text
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(url, headers={"Authorization": "Bearer swt_nope"}).status_code == 401
    for role in ("reader", "writer", "team-audit"):
        secret = srv.create_token(f"t-{role}", role)
        r = httpx.get(url, headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 403 and "stateward_" not in r.text, role
    monitoring = srv.create_token("prometheus", "monitoring")
    r = httpx.get(url, headers={"Authorization": f"Bearer {monitoring}"})  # Prometheus' way
    assert r.status_code == 200 and "stateward_http_requests_total" in r.text
    assert httpx.get(url, auth=("admin", srv.token or "")).status_code == 200
    assert r.headers["cache-control"] == "no-store" and "x-request-id" in r.headers
    forbidden = samples(r.text)
    assert requests_of(forbidden, "/metrics", "GET", 403) == 3
    assert requests_of(forbidden, "/metrics", "GET", 401) == 2


def test_metrics_public_needs_no_credentials(
    tmp_path: Path, server_with: list[ServerProcess], store: Store
) -> None:
    cfg = _config(tmp_path, "metrics_public = true\n")
    srv = _start(server_with, ServerProcess(tmp_path / "data", config=cfg, store=store))
    text = scrape(srv, auth=False)
    assert "stateward_build_info" in text
    assert httpx.get(f"{srv.bare_url}/state/a/b").status_code == 401  # the rest is unchanged
    assert httpx.get(f"{srv.bare_url}/api/v1/states").status_code == 401


# -- bounded label cardinality --------------------------------------------------------------------

N_PATHS = 10_000


def test_label_cardinality_stays_bounded_under_10000_state_paths(server: ServerProcess) -> None:
    """Distinct state paths, methods and URLs never become label values."""
    body = make_state(serial=1, lineage="card")
    md5 = md5_b64(body)

    def batch(worker: int) -> Counter[int]:
        seen: Counter[int] = Counter()
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for i in range(worker, N_PATHS, 4):
                path = f"/state/card-{i:05d}/app-{i}/env"
                if i % 10 == 0:
                    r = c.post(path, content=body, headers={"Content-MD5": md5})
                elif i % 10 == 1:
                    r = c.get(f"{path}/lock")
                elif i % 10 == 2:
                    r = c.request(f"X{i}", path)  # a different unknown method every time
                elif i % 10 == 3:
                    r = c.get(f"/api/v1/card-{i}")
                else:
                    r = c.get(path)
                seen[r.status_code] += 1
        return seen

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        statuses = sum(pool.map(batch, range(4)), Counter[int]())
    elapsed = time.monotonic() - started
    assert sum(statuses.values()) == N_PATHS
    assert statuses == {200: 1000, 404: 8000, 405: 1000}, statuses

    text = scrape(server)
    assert "card-" not in text and "X1" not in text
    s = samples(text)
    request_sets = [dict(k[1]) for k in s if k[0] == "stateward_http_requests_total"]
    assert len(request_sets) <= 12, request_sets
    assert {r["route"] for r in request_sets} <= {
        "/state/{path}", "/state/{path}/lock", "other", "/metrics", "/healthz",
    }  # fmt: skip
    assert {r["method"] for r in request_sets} <= {"GET", "POST", "other"}
    series = [k for k in s if k[0].startswith("stateward_")]
    assert len(series) < 150, len(series)
    assert requests_of(s, "/state/{path}", "GET", 404) == 6000
    assert requests_of(s, "/state/{path}/lock", "GET", 404) == 1000
    assert requests_of(s, "/state/{path}", "other", 405) == 1000
    assert requests_of(s, "/state/{path}", "POST", 200) == 1000
    assert requests_of(s, "other", "GET", 404) == 1000
    print(f"{N_PATHS} requests in {elapsed:.1f}s")


# -- KMS calls ------------------------------------------------------------------------------------


def test_kms_calls_are_counted_by_provider_and_operation(
    tmp_path: Path,
    server_with: list[ServerProcess],
    store: Store,
    moto_url: str,
    kms_key: str,
    aws_env: None,
) -> None:
    cfg = _config(
        tmp_path,
        "data_key_max_uses = 1\n"
        f'[key_providers.kms]\ntype = "aws-kms"\nkey_id = "{kms_key}"\n'
        f'endpoint_url = "{moto_url}"\nregion = "{REGION}"\n'
        '[[encryption]]\npaths = ["kms/**"]\nprovider = "kms"\n',
    )
    srv = _start(server_with, ServerProcess(tmp_path / "data", config=cfg, store=store))
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for serial in (1, 2, 3):
            body = make_state(serial=serial, lineage="kms")
            assert _post(c, "/state/kms/app/prod", body).status_code == 200
        body = make_state(serial=1, lineage="local")
        assert _post(c, "/state/plain/app/prod", body).status_code == 200  # keyfile: no count
    s = samples(scrape(srv))
    kms = {dict(k[1])["operation"]: v for k, v in s.items() if k[0] == "stateward_kms_calls_total"}
    assert kms.get("GenerateDataKey") == 3, kms
    labels = [dict(k[1]) for k in s if k[0] == "stateward_kms_calls_total"]
    assert all(lab["provider"] == "kms" and lab["provider_kind"] == "aws-kms" for lab in labels)
    assert value(s, "stateward_states", status="active") == 2


# -- logs -----------------------------------------------------------------------------------------

MARKER = "MARKER-7f3c91d2-do-not-log"
HEX32 = re.compile(r"[0-9a-f]{32}")


def _json_lines(srv: ServerProcess) -> list[dict[str, object]]:
    assert srv.log_path is not None
    out = []
    for line in srv.log_path.read_text().splitlines():
        if re.fullmatch(r"swt_[A-Za-z0-9_-]{43}", line):
            continue  # the initial admin token: stdout, once, by design
        out.append(json.loads(line))  # every other line is one JSON object
    return out


def test_json_logs_carry_request_ids_and_no_state_content(
    tmp_path: Path, server_with: list[ServerProcess], store: Store
) -> None:
    cfg = _config(tmp_path, 'log_level = "debug"\n')
    srv = _start(
        server_with,
        ServerProcess(
            tmp_path / "data", config=cfg, extra_args=["--log-format", "json"], store=store
        ),
    )
    secret_outputs = {"leak": {"value": MARKER, "type": "string", "sensitive": True}}
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        state = make_state(serial=5, lineage="json-logs", outputs=secret_outputs)
        ok = c.post(
            "/state/logs/app/prod", content=state, headers={"X-Request-ID": "deploy.42_a-b"}
        )
        assert ok.status_code == 200 and ok.headers["x-request-id"] == "deploy.42_a-b"
        # refused writes: a stale serial, a different lineage, malformed JSON around the marker
        stale = make_state(serial=4, lineage="json-logs", outputs=secret_outputs)
        assert c.post("/state/logs/app/prod", content=stale).status_code == 409
        other = make_state(serial=9, lineage="other", outputs=secret_outputs)
        assert c.post("/state/logs/app/prod", content=other).status_code == 409
        broken = c.post("/state/logs/app/prod", content=f'{{"x": "{MARKER}"'.encode())
        assert broken.status_code == 400
        read = c.get("/state/logs/app/prod", headers={"X-Request-ID": "bad id!"})
        assert MARKER in read.text
        assert HEX32.fullmatch(read.headers["x-request-id"])
        too_long = c.get("/healthz", headers={"X-Request-ID": "a" * 65})
        assert HEX32.fullmatch(too_long.headers["x-request-id"])
    denied = httpx.get(
        f"{srv.bare_url}/state/logs/app/prod",
        auth=("x", "swt_invalid"),
        headers={"X-Request-ID": "wrong-creds-1"},
    )
    assert denied.status_code == 401 and denied.headers["x-request-id"] == "wrong-creds-1"
    srv.stop()

    records = _json_lines(srv)
    assert srv.log_path is not None and MARKER not in srv.log_path.read_text()
    for rec in records:
        assert {"ts", "level", "logger", "msg", "request_id"} <= rec.keys(), rec
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(rec["ts"]))
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    first = next(r for r in access if r["request_id"] == "deploy.42_a-b")
    assert first["method"] == "POST" and first["status"] == 200
    assert first["path"] == "/state/logs/app/prod"
    assert any(r["request_id"] == read.headers["x-request-id"] for r in access)
    refusals = [r for r in records if r["logger"] == "stateward.backend"]
    assert len(refusals) == 4, refusals  # 2 conflicts, bad JSON, bad credentials
    assert sum(bool(HEX32.fullmatch(str(r["request_id"]))) for r in refusals) == 3
    # logged in a worker thread (authentication): the request's ID is carried there too
    failed = [r for r in records if r["logger"] == "stateward.auth"]
    assert [r["request_id"] for r in failed] == ["wrong-creds-1"], failed
    serving = [r for r in records if "stateward serving" in str(r["msg"])]
    assert serving and serving[0]["request_id"] is None


def test_text_logs_append_the_request_id(server: ServerProcess) -> None:
    r = httpx.get(f"{server.url}/state/text/none", headers={"X-Request-ID": "text-log-1"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "text-log-1"
    server.stop()
    assert server.log_path is not None
    log = server.log_path.read_text()
    assert re.search(r'^INFO: +\S+ - "GET /state/text/none HTTP/1.1" 404 request_id=text-log-1$',
                     log, re.M), log  # fmt: skip


# -- in-process units -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "raw", "route"),
    [
        ("/state/a/b", None, "/state/{path}"),
        ("/state/a/b/lock", None, "/state/{path}/lock"),
        ("/state/a/b/lock", b"/state/a/b/lock?ID=1", "/state/{path}/lock"),
        ("/state/a%2Flock", b"/state/a%2Flock", "/state/{path}"),
        ("/state", None, "/state/{path}"),
        ("/api/v1/versions", None, "/api/v1/versions"),
        ("/api/v1/versions/x", None, "other"),
        ("/metrics", None, "/metrics"),
        ("/", None, "other"),
        ("/statefoo", None, "other"),
    ],
)
def test_route_template(path: str, raw: bytes | None, route: str) -> None:
    scope = {"path": path, "raw_path": raw}
    assert http_metrics.route_template(scope, frozenset({"/api/v1/versions", "/metrics"})) == route


def test_route_template_prefers_the_matched_route() -> None:
    class Matched:
        path = "/api/v1/locks/break"

    scope = {"path": "/api/v1/locks/break", "route": Matched()}
    assert http_metrics.route_template(scope, frozenset()) == "/api/v1/locks/break"
    scope = {"path": "/state/x/lock", "route": Matched()}  # the protocol never goes to FastAPI
    assert http_metrics.route_template(scope, frozenset()) == "/state/{path}/lock"


def test_method_label_and_hooks_are_bounded() -> None:
    assert http_metrics.method_label("UNLOCK") == "UNLOCK"
    assert http_metrics.method_label("get") == "other"
    assert http_metrics.method_label("PROPFIND") == "other"
    metrics.auth_failed("made-up")
    metrics.audit_write_failed()
    metrics.lock_conflict()
    for i in range(100):
        metrics.alert_raised(f"kind-{i}")
    metrics.alert_raised("Not A Kind!")
    s = samples(metrics.exposition().decode())
    kinds = {dict(k[1])["rule_kind"] for k in s if k[0] == "stateward_alerts_total"}
    assert len(kinds) <= metrics.MAX_ALERT_KINDS + 1 and "other" in kinds
    assert value(s, "stateward_auth_failures_total", reason="other") >= 1
    assert value(s, "stateward_audit_write_failures_total") >= 1


def test_request_id_validation_and_json_formatter() -> None:
    assert logs.request_id_for("abc-DEF_1.2") == "abc-DEF_1.2"
    for bad in ("", "a b", "a\nb", "x" * 65, "é", None):
        assert HEX32.fullmatch(logs.request_id_for(bad))
    record = logging.LogRecord(
        "stateward.test", logging.INFO, __file__, 1, "hello %s", ("w",), None
    )
    record.path = "team/app"  # an extra= field
    record.level = "forged"  # an extra= cannot replace a base field
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["msg"] == "hello w" and line["level"] == "INFO" and line["path"] == "team/app"
    assert line["request_id"] is None and line["logger"] == "stateward.test"


def test_observability_settings() -> None:
    s = load_settings(
        None, {}, env={"STATEWARD_LOG_FORMAT": "json", "STATEWARD_METRICS_PUBLIC": "1"}
    )
    assert s.log_format == "json" and s.metrics_public is True
    defaults = load_settings(None, {}, env={})
    assert defaults.log_format == "text" and defaults.metrics_public is False
    with pytest.raises(ConfigError, match="log_format"):
        load_settings(None, {}, env={"STATEWARD_LOG_FORMAT": "xml"})


def test_lock_held_time_is_observed_on_release(server: ServerProcess) -> None:
    before = value(samples(scrape(server)), "stateward_lock_held_seconds_count")
    url = server.state_url(f"held/{uuid.uuid4().hex[:6]}/prod")
    for _ in range(2):
        body = lock_body()
        assert httpx.request("LOCK", url, content=body).status_code == 200
        assert httpx.request("UNLOCK", url, content=body).status_code == 200
    assert httpx.request("LOCK", url, content=lock_body()).status_code == 200
    assert httpx.request("UNLOCK", url).status_code == 200  # force-unlock
    after = value(samples(scrape(server)), "stateward_lock_held_seconds_count")
    assert after - before == 3
