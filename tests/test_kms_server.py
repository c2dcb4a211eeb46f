"""A real ``stateward serve`` encrypting with AWS KMS (moto in server mode, real HTTP).

The KMS fault cases of issue 4 end to end: a disabled key and an unreachable KMS make writes
fail with 503 (Retry-After only where waiting may help), nothing is written, and once the key
is back the earlier versions read and writes pass again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stateward.crypto.barrier import parse_header
from tests.harness.aws import REGION, _key_uuid
from tests.harness.pg import Store
from tests.harness.support import ServerProcess, free_port, make_state, md5_b64

LINEAGE = "7c1e4c8e-1111-2222-3333-444455556666"


def _config(tmp: Path, endpoint: str, key: str) -> Path:
    cfg = tmp / "kms.toml"
    cfg.write_text(
        "data_key_max_uses = 1\n"  # every write asks KMS for a data key: faults show at once
        f'[key_providers.kms]\ntype = "aws-kms"\nkey_id = "{key}"\n'
        f'endpoint_url = "{endpoint}"\nregion = "{REGION}"\n'
        '[[encryption]]\npaths = ["**"]\nprovider = "kms"\n'
    )
    return cfg


def _post(srv: ServerProcess, path: str, serial: int) -> httpx.Response:
    body = make_state(serial=serial, lineage=LINEAGE)
    return httpx.post(srv.state_url(path), content=body,
                      headers={"Content-MD5": md5_b64(body)}, timeout=30)  # fmt: skip


@pytest.fixture
def kms_server(
    tmp_path: Path, moto_url: str, kms_key: str, aws_env: None, store: Store
) -> Iterator[ServerProcess]:
    config = _config(tmp_path, moto_url, kms_key)
    srv = ServerProcess(tmp_path / "data", config=config, store=store).start()
    yield srv
    srv.stop()


def _blob_header(srv: ServerProcess) -> Any:
    assert srv.store is not None
    blobs = list(srv.store.blobs(srv.data_dir).values())  # files, or objects in the bucket
    return parse_header(blobs[0])[0]


def test_writes_are_wrapped_by_kms_and_a_disabled_key_fails_closed(
    kms_server: ServerProcess, kms_admin: Any, kms_key: str
) -> None:
    srv = kms_server
    assert _post(srv, "kms/app/prod", 1).status_code == 200
    ref = _blob_header(srv)
    assert (ref.provider, ref.kind, ref.key_id) == ("kms", "aws-kms", kms_key)

    kms_admin.disable_key(KeyId=_key_uuid(kms_key))
    r = _post(srv, "kms/app/prod", 2)
    assert r.status_code == 503 and "retry-after" not in r.headers
    assert "DisabledException" in r.text and "kms" in r.text
    versions = httpx.get(f"{srv.url}/api/v1/versions", params={"path": "kms/app/prod"}).json()
    assert [v["seq"] for v in versions] == [1]  # nothing written

    kms_admin.enable_key(KeyId=_key_uuid(kms_key))
    state = httpx.get(srv.state_url("kms/app/prod"), timeout=30)
    assert state.status_code == 200 and json.loads(state.content)["serial"] == 1
    assert _post(srv, "kms/app/prod", 2).status_code == 200


def test_unreachable_kms_is_503_with_retry_after(
    tmp_path: Path, kms_key: str, aws_env: None, store: Store
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = _config(tmp_path, dead, kms_key)
    srv = ServerProcess(tmp_path / "data", config=config, store=store).start()
    try:
        r = _post(srv, "kms/app/dev", 1)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert "retry later" in r.text
        assert store.blobs(srv.data_dir) == {}
    finally:
        srv.stop()
