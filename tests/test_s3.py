"""The S3 blob store against moto's S3 in server mode (harness/aws.py), over real HTTP: the store
alone, a service on it, and a real ``stateward serve`` process configured for it.

What only S3 has to prove; everything else about it is proven by the suites that run on both
stores (the ``store`` fixture: PostgreSQL + S3 is one of them)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from stateward.config import ConfigError, Settings, load_settings
from stateward.domain.errors import Unavailable
from stateward.domain.principal import Principal
from stateward.service.core import StateService
from stateward.service.factory import build_service
from stateward.storage.errors import StoreUnavailable
from stateward.storage.s3 import S3BlobStore, S3BlobStoreConfig
from tests.harness.aws import REGION
from tests.harness.support import ServerProcess, free_port, make_state, md5_b64

ALICE = Principal("alice", roles=("admin",))
P = "team/app/prod"
LINEAGE = "7c1e4c8e-1111-2222-3333-444455556666"


@pytest.fixture(scope="session")
def moto_url(s3_url: str) -> str:
    """The session's moto server (harness/aws.py), the one the PostgreSQL + S3 store of the other
    suites uses too; KMS keys for SSE-KMS live there as well."""
    return s3_url


@pytest.fixture
def s3(moto_url: str, aws_env: None) -> Any:
    return boto3.client("s3", region_name=REGION, endpoint_url=moto_url)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"sw-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _config(moto_url: str, bucket: str, **kw: Any) -> S3BlobStoreConfig:
    return S3BlobStoreConfig(bucket=bucket, endpoint_url=moto_url, region=REGION, **kw)


def _key() -> str:
    return uuid.uuid4().hex


def _objects(s3: Any, bucket: str) -> dict[str, bytes]:
    out = {}
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


# -- the store --


def test_put_get_delete_and_object_layout(moto_url: str, s3: Any, bucket: str) -> None:
    store = S3BlobStore(_config(moto_url, bucket))
    key = _key()
    store.put(key, b"\x00ciphertext\xff")
    name = f"stateward/{key[:2]}/{key}"
    head = s3.head_object(Bucket=bucket, Key=name)
    # single-part ETag without SSE-KMS is the MD5: the body arrived intact (S3 checked Content-MD5)
    assert head["ETag"].strip('"') == hashlib.md5(b"\x00ciphertext\xff").hexdigest()
    assert "ServerSideEncryption" not in head or head["ServerSideEncryption"] == "AES256"
    assert store.get(key) == b"\x00ciphertext\xff"
    store.put(key, b"replaced")
    assert store.get(key) == b"replaced"
    store.delete(key)
    store.delete(key)  # idempotent
    with pytest.raises(FileNotFoundError):
        store.get(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        store.get("../etc/passwd")


def test_list_pages_through_its_prefix_only(moto_url: str, s3: Any, bucket: str) -> None:
    store = S3BlobStore(_config(moto_url, bucket, prefix="a/b/"))
    store.page_size = 2
    other = S3BlobStore(_config(moto_url, bucket, prefix="other/"))
    keys = {_key() for _ in range(5)}
    for k in keys:
        store.put(k, b"x")
    other.put(_key(), b"y")
    s3.put_object(Bucket=bucket, Key="a/b/README", Body=b"not a blob")
    s3.put_object(Bucket=bucket, Key=f"a/b/zz/{_key()}", Body=b"wrong shard")
    listed = list(store.list())
    assert {k for k, _ in listed} == keys and len(listed) == 5
    assert all(0 <= age < 300 for _, age in listed)
    root = S3BlobStore(_config(moto_url, bucket, prefix=""))
    assert list(root.list()) == []  # "a/b/..." and "other/..." are not blob keys at the root
    root.put(k := _key(), b"z")
    assert [key for key, _ in root.list()] == [k]


def test_server_side_encryption_is_requested(
    moto_url: str, s3: Any, bucket: str, kms_key: str
) -> None:
    aes = S3BlobStore(_config(moto_url, bucket, sse="AES256"))
    aes.put(k1 := _key(), b"one")
    head = s3.head_object(Bucket=bucket, Key=f"stateward/{k1[:2]}/{k1}")
    assert head["ServerSideEncryption"] == "AES256"
    kms = S3BlobStore(_config(moto_url, bucket, sse="aws:kms", sse_kms_key_id=kms_key))
    kms.put(k2 := _key(), b"two")
    head = s3.head_object(Bucket=bucket, Key=f"stateward/{k2[:2]}/{k2}")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == kms_key
    assert kms.get(k2) == b"two"


def test_put_sends_content_md5(moto_url: str, bucket: str) -> None:
    """S3 refuses a body that does not match ``Content-MD5`` (``BadDigest``); moto 5.2.1 does
    not check it, so check the header on the wire."""
    store = S3BlobStore(_config(moto_url, bucket))
    seen: list[Any] = []
    store._client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: seen.append(request.headers)
    )
    store.put(_key(), b"payload")
    assert seen and seen[0]["Content-MD5"] == md5_b64(b"payload").encode()


def test_unreachable_endpoint_is_unavailable(aws_env: None) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = S3BlobStore(
        S3BlobStoreConfig(
            bucket="b-dead",
            endpoint_url=dead,
            region=REGION,
            max_attempts=1,
            connect_timeout_seconds=1,
        )
    )
    for call in (
        lambda: store.put(_key(), b"x"),
        lambda: store.get(_key()),
        lambda: store.delete(_key()),
        lambda: list(store.list()),
    ):
        with pytest.raises(StoreUnavailable, match="blob store unavailable") as err:
            call()
        assert err.value.retry and "testing" not in str(err.value)


def test_missing_bucket_is_unavailable_without_retry(moto_url: str, aws_env: None) -> None:
    store = S3BlobStore(_config(moto_url, "no-such-bucket-here"))
    with pytest.raises(StoreUnavailable, match="NoSuchBucket") as err:
        store.put(_key(), b"x")
    assert not err.value.retry
    with pytest.raises(StoreUnavailable, match="NoSuchBucket"):
        list(store.list())


# -- configuration --


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"bucket": "Bad_Bucket"}, "bucket"),
        ({"bucket": "ok-bucket", "prefix": "no-slash"}, "prefix"),
        ({"bucket": "ok-bucket", "prefix": "/abs/"}, "prefix"),
        ({"bucket": "ok-bucket", "sse": "AES256", "sse_kms_key_id": "k"}, "aws:kms"),
        ({"bucket": "ok-bucket", "endpoint_url": "http://s3.example.com"}, "https"),
        ({"bucket": "ok-bucket", "endpoint_url": "https://u:p@s3.example.com"}, "credentials"),
        ({"bucket": "ok-bucket", "sse": "des"}, "sse"),
    ],
)
def test_config_is_validated(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S3BlobStoreConfig(**kw)


def test_blob_store_from_toml_only(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[blob_store]\ntype = "s3"\nbucket = "my-states"\nprefix = "sw/"\n'
        'region = "eu-west-1"\nsse = "aws:kms"\nsse_kms_key_id = "alias/states"\n'
    )
    settings = load_settings(cfg, env={})
    assert settings.blob_store == S3BlobStoreConfig(
        bucket="my-states",
        prefix="sw/",
        region="eu-west-1",
        sse="aws:kms",
        sse_kms_key_id="alias/states",
    )
    assert load_settings(None, env={}).blob_store is None
    assert S3BlobStoreConfig(bucket="b-b", sse="none").sse is None
    with pytest.raises(ConfigError, match="STATEWARD_BLOB_STORE"):
        load_settings(None, env={"STATEWARD_BLOB_STORE": "s3"})
    cfg.write_text('[blob_store]\ntype = "gcs"\nbucket = "x-y"\n')
    with pytest.raises(ConfigError, match="blob_store"):
        load_settings(cfg, env={})


# -- a service on S3 --


@pytest.fixture
def s3_service(tmp_path: Path, moto_url: str, bucket: str) -> Iterator[StateService]:
    settings = Settings(
        data_dir=tmp_path / "data",
        blob_store=_config(moto_url, bucket, sse="AES256"),
        orphan_min_age_seconds=0,
    )
    svc = build_service(settings)
    svc.cache.max_bytes = 0  # every read goes to the bucket
    yield svc
    svc.engine.dispose()


def _state(serial: int, secret: str = "needle-s3-1234") -> bytes:
    return make_state(
        serial=serial, lineage=LINEAGE, outputs={"o": {"value": secret, "type": "string"}}
    )


def test_service_on_s3(s3_service: StateService, s3: Any, bucket: str, tmp_path: Path) -> None:
    svc = s3_service
    assert isinstance(svc.barrier.blobs, S3BlobStore)
    b1, b2 = _state(1), _state(2)
    assert svc.writes.write(ALICE, P, b1).created
    assert svc.writes.write(ALICE, P, b2).created
    assert not svc.writes.write(ALICE, P, b2).created  # identical re-send stores nothing new
    assert svc.writes.read(ALICE, P).body == b2  # type: ignore[union-attr]
    assert [v.seq for v in svc.history.history(ALICE, P)] == [2, 1]
    assert svc.history.get_version_body(ALICE, P, 1)[1] == b1
    assert svc.writes.rollback(ALICE, P, 1).seq == 3
    assert svc.writes.read(ALICE, P).body == b1  # type: ignore[union-attr]

    objects = _objects(s3, bucket)
    assert len(objects) == 3 and all(k.startswith("stateward/") for k in objects)
    assert all(
        b"needle-s3-1234" not in data and b"lineage" not in data for data in objects.values()
    )
    assert not (tmp_path / "data" / "blobs").exists()

    # orphan collection removes an unreferenced object, keeps the referenced ones
    svc.barrier.blobs.put(orphan := _key(), b"left by a crash")
    assert svc.admin.run_maintenance(ALICE).orphans_removed == 1
    assert f"stateward/{orphan[:2]}/{orphan}" not in _objects(s3, bucket)
    assert len(_objects(s3, bucket)) == 3

    svc.admin.delete(ALICE, P)
    svc.admin.purge(ALICE, P)
    assert _objects(s3, bucket) == {}


def test_missing_object_is_blob_missing(s3_service: StateService, s3: Any, bucket: str) -> None:
    s3_service.writes.write(ALICE, P, _state(1))
    (name,) = _objects(s3, bucket)
    s3.delete_object(Bucket=bucket, Key=name)
    with pytest.raises(Unavailable, match="is missing"):
        s3_service.writes.read(ALICE, P)


def test_service_with_unreachable_bucket_fails_closed(tmp_path: Path, aws_env: None) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = S3BlobStoreConfig(bucket="b-dead", endpoint_url=dead, max_attempts=1)
    svc = build_service(Settings(data_dir=tmp_path / "data", blob_store=config))
    try:
        with pytest.raises(Unavailable, match="blob store unavailable") as err:
            svc.writes.write(ALICE, P, _state(1))
        assert err.value.retry
        # no version points at a blob that was never stored
        assert svc.writes.read(ALICE, P) is None
    finally:
        svc.engine.dispose()


# -- a real server --


def test_serve_with_s3_blob_store(tmp_path: Path, moto_url: str, s3: Any, bucket: str) -> None:
    cfg = tmp_path / "s3.toml"
    cfg.write_text(
        f'[blob_store]\ntype = "s3"\nbucket = "{bucket}"\nprefix = "srv/"\n'
        f'endpoint_url = "{moto_url}"\nregion = "{REGION}"\nsse = "AES256"\n'
    )
    srv = ServerProcess(tmp_path / "data", config=cfg).start()
    try:
        body = _state(1, secret="needle-http-5678")
        r = httpx.post(
            srv.state_url("s3/app"),
            content=body,
            headers={"Content-MD5": md5_b64(body)},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        r = httpx.get(srv.state_url("s3/app"), timeout=30)
        assert r.status_code == 200 and r.content == body
        objects = _objects(s3, bucket)
        assert len(objects) == 1 and next(iter(objects)).startswith("srv/")
        assert b"needle-http-5678" not in next(iter(objects.values()))
        assert not (srv.data_dir / "blobs").exists()
    finally:
        srv.stop()
