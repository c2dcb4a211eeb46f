"""Access control seen from the real Terraform binaries (1.11 and 0.15).

Credentials travel the way the docs recommend: ``TF_HTTP_USERNAME``/``TF_HTTP_PASSWORD`` in
the environment, never in the configuration. Terraform's ``http`` backend does not print the
server's reason for a 401/403; it prints fixed texts ("HTTP remote state endpoint requires
auth" / "... invalid auth"), so the tests also check the reason in the server log, which is
where an operator reads it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_terraform import (
    Client,
    apply,
    clean,
    combined,
    init,
    tf,
    versions,
    write_config,
)
from tests.harness.support import ServerProcess, terraform_env

pytestmark = pytest.mark.terraform

PLAN = ("plan", "-input=false", "-no-color")
REQUIRES_AUTH = "HTTP remote state endpoint requires auth"  # Terraform's text for a 401
INVALID_AUTH = "HTTP remote state endpoint invalid auth"  # ... and for a 403


@pytest.fixture(params=["1.11", "0.15"])
def client(request: pytest.FixtureRequest, tf_binaries: dict[str, str], tmp_path: Path) -> Client:
    home = tmp_path / "home"
    home.mkdir()
    return Client(request.param, tf_binaries[request.param], terraform_env(home))


def as_token(client: Client, token: str | None) -> Client:
    """The same binary with ``token`` as the backend password (None: no credentials)."""
    env = terraform_env(Path(client.env["HOME"]), token)
    return replace(client, env=env)


def backend(server: ServerProcess, path: str) -> dict[str, str]:
    url = server.state_url(path, creds=False)
    return {"address": url, "lock_address": url, "unlock_address": url}


def flat(text: str) -> str:
    return " ".join(text.split())


def server_log(server: ServerProcess) -> str:
    assert server.log_path is not None
    return server.log_path.read_text(errors="replace")


def test_writer_applies_reader_plans_without_lock_and_cannot_apply(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    path = f"access/rw/tf{client.version}"
    writer = as_token(client, server.create_token("ci-writer", "writer", paths=("access/**",)))
    reader = as_token(client, server.create_token("dev-reader", "reader"))
    work = write_config(tmp_path / "w", client, backend(server, path))
    init(writer, work)
    apply(writer, work, "one")
    (v1,) = versions(server, path)
    assert v1["author"] == "token:ci-writer"

    # plan -lock=false only reads: a reader may do that
    r = tf(reader, work, *PLAN, "-lock=false", "-var=v=one")
    assert "No changes" in combined(r)
    # a plan that locks, and an apply, are refused at the lock with Terraform's 403 text
    for args in (PLAN, ("apply", "-input=false", "-no-color", "-auto-approve")):
        r = tf(reader, work, *args, "-var=v=two", ok=False)
        text = flat(combined(r))
        assert "Error acquiring the state lock" in text and INVALID_AUTH in text, text
    assert f"role reader does not grant lock on {path}" in server_log(server)
    assert [v["seq"] for v in versions(server, path)] == [1]  # nothing was written

    # the writer's token is limited to access/**: another path is refused (init reads it)
    other = write_config(tmp_path / "o", client, backend(server, f"elsewhere/tf{client.version}"))
    r = tf(writer, other, "init", "-input=false", "-no-color", ok=False)
    assert INVALID_AUTH in flat(combined(r))
    assert "this credential is restricted to paths other than elsewhere/" in server_log(server)


def test_outputs_only_token_through_terraform_remote_state(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    path = f"access/producer/tf{client.version}"
    writer = as_token(client, server.create_token("producer", "writer"))
    work = write_config(tmp_path / "p", client, backend(server, path))
    init(writer, work)
    apply(writer, work, "shared-value")

    consumer_token = server.create_token("consumer", "outputs-reader", paths=("access/**",))
    url = server.state_url(path, creds=False)
    consumer_tf = f"""
variable "stateward_token" {{
  type      = string
  sensitive = true
}}

data "terraform_remote_state" "producer" {{
  backend = "http"
  config = {{
    address  = "{url}"
    username = "consumer"
    password = var.stateward_token
  }}
}}

output "name" {{
  value = data.terraform_remote_state.producer.outputs.name
}}

output "names" {{
  value = sort(keys(data.terraform_remote_state.producer.outputs))
}}
"""
    consumer = as_token(client, None)  # local state; the token goes only to the data source
    cwork = write_config(tmp_path / "c", client, None, consumer_tf)
    init(consumer, cwork)
    tf(consumer, cwork, "apply", "-input=false", "-no-color", "-auto-approve",
       f"-var=stateward_token={consumer_token}")  # fmt: skip
    out = clean(tf(consumer, cwork, "output", "-json", "-no-color").stdout)
    assert '"shared-value"' in out
    names = _json_output(out, "names")
    assert names == ["name"], names  # the sensitive output never left the server

    # what the consumer received: outputs only, no resources, no sensitive output
    r = httpx.get(url, auth=("consumer", consumer_token), timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert doc["resources"] == [] and set(doc["outputs"]) == {"name"}
    assert "s3cr3t" not in r.text and "terraform_data" not in r.text

    # a wrong token: the data source fails with Terraform's 401 text
    r2 = tf(consumer, cwork, "apply", "-input=false", "-no-color", "-auto-approve",
            "-var=stateward_token=swt_" + "A" * 43, ok=False)  # fmt: skip
    assert REQUIRES_AUTH in flat(combined(r2))


def _json_output(text: str, name: str) -> Any:
    start = text.find("{")
    return json.loads(text[start:])[name]["value"]


def test_missing_wrong_expired_and_revoked_tokens_are_refused(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    path = f"access/creds/tf{client.version}"
    writer = as_token(client, server.create_token("creds-writer", "writer"))
    work = write_config(tmp_path / "w", client, backend(server, path))
    init(writer, work)
    apply(writer, work, "one")

    # long enough for the three CLI runs and two plans below, on a loaded machine too
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
    expiring = server.create_token("short-lived", "writer", expires=soon.isoformat())
    revoked = server.create_token("revoked", "writer")
    assert tf(as_token(client, revoked), work, *PLAN, "-lock=false", "-var=v=one").returncode == 0
    server.cli("token", "revoke", "revoked")
    r = tf(as_token(client, expiring), work, *PLAN, "-lock=false", "-var=v=one")
    assert r.returncode == 0
    time.sleep(max(0.0, soon.timestamp() - time.time()) + 0.5)

    for token in (None, "not-a-token", "swt_" + "B" * 43, expiring, revoked):
        r = tf(as_token(client, token), work, *PLAN, "-lock=false", "-var=v=two", ok=False)
        assert REQUIRES_AUTH in flat(combined(r)), (token, combined(r))
    assert [v["seq"] for v in versions(server, path)] == [1]
