"""After real Terraform applies, no byte of a sensitive value exists at rest or in the log."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_terraform import Client, apply, init, write_config
from tests.e2e.test_terraform_access import as_token, backend
from tests.harness.support import ServerProcess, terraform_env

pytestmark = pytest.mark.terraform


@pytest.fixture(params=["1.11", "0.15"])
def client(request: pytest.FixtureRequest, tf_binaries: dict[str, str], tmp_path: Path) -> Client:
    home = tmp_path / "home"
    home.mkdir()
    return Client(request.param, tf_binaries[request.param], terraform_env(home))


def test_sensitive_values_never_reach_disk_or_log(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    marker = f"pw-{uuid.uuid4().hex}"
    body = f"""
variable "v" {{
  type    = string
  default = "one"
}}

output "name" {{
  value = var.v
}}

output "db_password" {{
  value     = "{marker}"
  sensitive = true
}}
"""
    if client.modern:
        body += f"""
resource "terraform_data" "db" {{
  input = sensitive("{marker}-attr")
}}
"""
    path = f"enc/tf{client.version}"
    writer = as_token(client, server.create_token("enc-writer", "writer"))
    work = write_config(tmp_path / "w", client, backend(server, path), body)
    init(writer, work)
    apply(writer, work, "one")
    apply(writer, work, "two")
    # the server really holds the value (so the search below is meaningful) ...
    assert marker in httpx.get(server.state_url(path), timeout=10).text
    # ... and yet no file under the data dir (database, WAL, blobs, keys), nor the database and
    # bucket of the PostgreSQL + S3 store, nor the log has it
    needle = marker.encode()
    assert server.store is not None
    at_rest = server.store.at_rest(server.data_dir)
    assert at_rest
    hits = [where for where, data in at_rest if needle in data]
    assert hits == []
    assert server.log_path is not None and needle not in server.log_path.read_bytes()
