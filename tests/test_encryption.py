"""Encryption at rest: the barrier's envelope, key providers, rotation, rewrap and faults.

Every test drives the real service on a real data directory and then inspects (or damages)
the bytes at rest, because the claims are about what is stored. The service-level tests run on
both stores (the ``store`` fixture): SQLite with blob files in the data directory, and
PostgreSQL with blobs in S3 (there, "on disk" is the data directory, the database and the
bucket).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from stateward.config import EncryptionRule
from stateward.crypto.barrier import FORMAT_PLAIN, MAGIC, Barrier, BlobCorrupt, parse_header
from stateward.crypto.keyring import KeyRing
from stateward.crypto.providers.base import (
    DataKey,
    KeyDenied,
    KeyInvalid,
    KeyUnavailable,
    WrappedKey,
)
from stateward.crypto.providers.local import KeyfileConfig, KeyfileProvider, PassphraseConfig
from stateward.domain.errors import Unavailable
from stateward.domain.principal import Principal
from stateward.service.core import StateService
from stateward.service.factory import build_service
from stateward.storage.blobs import FileBlobStore
from stateward.storage.schema import versions
from tests.harness.pg import S3Object, Store, db_dump, embedded_only, stored_blob
from tests.harness.support import make_state

ADMIN = Principal("admin", roles=("admin",), source="127.0.0.1")
MARKER = b"hunter2-SENSITIVE-7f3a9c"


def secret_state(serial: int = 1, lineage: str = "3f1d2c4b-aaaa-bbbb-cccc-000000000001") -> bytes:
    return make_state(
        serial=serial,
        lineage=lineage,
        outputs={
            "pw": {"value": MARKER.decode() + str(serial), "type": "string", "sensitive": True}
        },
    )


def blob_file(svc: StateService, path: str, seq: int) -> Path | S3Object:
    """The stored blob of a version: its file, or its S3 object."""
    with svc.engine.connect() as conn:
        key = conn.execute(
            select(versions.c.blob_key).where(versions.c.path == path, versions.c.seq == seq)
        ).scalar_one()
    return stored_blob(svc.settings, key)


def default_key_file(svc: StateService) -> Path:
    """The default provider's key file (in the data directory on the embedded store only)."""
    provider = svc.barrier.keys.providers["default"]
    assert isinstance(provider, KeyfileProvider)
    return provider.path


@pytest.fixture
def svc(tmp_path: Path, store: Store) -> StateService:
    return store.build(tmp_path / "d")


def reopen(service: StateService, **changes: Any) -> StateService:
    """A fresh service on the same store (a restart), optionally with other settings."""
    service.engine.dispose()
    return build_service(service.settings.model_copy(update=changes))


def test_nothing_on_disk_holds_the_state_in_clear(svc: StateService, store: Store) -> None:
    for serial in range(1, 4):
        svc.writes.write(ADMIN, "prod/db", secret_state(serial))
    at_rest = store.at_rest(svc.settings.data_dir)  # files, and the database and bucket if any
    assert len(at_rest) > 3
    found = [where for where, data in at_rest if MARKER in data]
    assert found == []
    state = svc.writes.read(ADMIN, "prod/db")
    assert state is not None and MARKER in state.body
    key_file = default_key_file(svc)
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_every_blob_names_its_key_and_is_recorded(svc: StateService) -> None:
    svc.writes.write(ADMIN, "a/b", secret_state())
    ref, wrapped, _ = parse_header(blob_file(svc, "a/b", 1).read_bytes())
    assert (ref.provider, ref.kind, ref.key_version) == ("default", "keyfile", "1")
    assert len(wrapped.wrapped) == 12 + 32 + 16
    status = svc.keys.key_status(ADMIN)
    (default,) = status.providers
    assert default.references == {"1": 1} and status.stale == 0 and status.unencrypted == 0


@pytest.mark.parametrize("where", ["magic", "flags", "header", "wrapped", "nonce", "body", "tag"])
def test_one_flipped_byte_fails_closed(svc: StateService, where: str) -> None:
    svc.writes.write(ADMIN, "a/b", secret_state())
    f = blob_file(svc, "a/b", 1)
    blob = bytearray(f.read_bytes())
    _ref, _w, offset = parse_header(bytes(blob))
    header_start = 10
    position = {
        "magic": 0,
        "flags": 4,
        "header": header_start + 3,
        "wrapped": offset - 10,  # inside the base64 of the wrapped key
        "nonce": offset + 2,
        "body": offset + 12 + 5,
        "tag": len(blob) - 1,
    }[where]
    blob[position] ^= 0x01
    f.write_bytes(bytes(blob))
    svc.cache.discard(f.name)
    svc.barrier.keys.clear()
    with pytest.raises(Unavailable) as err:
        svc.writes.read(ADMIN, "a/b")
    assert MARKER.decode() not in str(err.value)


def test_blob_moved_to_another_path_or_version_fails(svc: StateService) -> None:
    svc.writes.write(ADMIN, "team/a", secret_state(1))
    svc.writes.write(ADMIN, "team/a", secret_state(2))
    other_lineage = "3f1d2c4b-aaaa-bbbb-cccc-000000000002"
    svc.writes.write(ADMIN, "team/b", secret_state(1, lineage=other_lineage))
    a1, a2, b1 = (
        blob_file(svc, "team/a", 1),
        blob_file(svc, "team/a", 2),
        blob_file(svc, "team/b", 1),
    )
    b1.write_bytes(a1.read_bytes())  # another path
    data1, data2 = a1.read_bytes(), a2.read_bytes()
    a1.write_bytes(data2)  # versions swapped within one path
    a2.write_bytes(data1)
    svc.cache.clear()
    for path, seq in (("team/b", 1), ("team/a", 1), ("team/a", 2)):
        with pytest.raises(Unavailable, match=r"unreadable|does not unwrap"):
            svc.history.get_version_body(ADMIN, path, seq)


def test_rotation_and_rewrap_keep_every_version_readable(svc: StateService) -> None:
    bodies = {}
    for serial in range(1, 6):
        bodies[serial] = secret_state(serial)
        svc.writes.write(ADMIN, "rot/x", bodies[serial])
    assert svc.keys.rotate_key(ADMIN, "default") == "2"
    svc.writes.write(ADMIN, "rot/x", bodies.setdefault(6, secret_state(6)))
    status = svc.keys.key_status(ADMIN)
    assert status.providers[0].references == {"1": 5, "2": 1} and status.stale == 5
    with pytest.raises(Exception, match="rewrap first"):
        svc.keys.retire_key(ADMIN, "default", "1")
    seen: list[tuple[int, int]] = []
    assert svc.keys.rewrap(ADMIN, lambda done, total: seen.append((done, total))) == 5
    assert seen[-1] == (5, 5)
    assert svc.keys.key_status(ADMIN).providers[0].references == {"2": 6}
    assert svc.keys.rewrap(ADMIN) == 0  # resumable / idempotent: nothing left
    svc.keys.retire_key(ADMIN, "default", "1")
    svc = reopen(svc)
    for seq, body in bodies.items():
        assert svc.history.get_version_body(ADMIN, "rot/x", seq)[1] == body
    assert KeyfileProvider("x", default_key_file(svc)).versions() == ["2"]


def test_rewrap_changes_only_the_key_header(svc: StateService) -> None:
    svc.writes.write(ADMIN, "hdr/x", secret_state())
    f = blob_file(svc, "hdr/x", 1)
    before = f.read_bytes()
    svc.keys.rotate_key(ADMIN, "default")
    svc.keys.rewrap(ADMIN)
    after = f.read_bytes()
    _r1, _w1, o1 = parse_header(before)
    _r2, _w2, o2 = parse_header(after)
    assert before[o1:] == after[o2:]  # same nonce and ciphertext: no re-encryption


def test_providers_per_path_glob_and_moving_a_path(store: Store, tmp_path: Path) -> None:
    os.environ["SW_TEST_PASSPHRASE"] = "correct horse battery staple 42"
    base = store.settings(
        tmp_path / "d",
        key_providers={
            "prod-pass": PassphraseConfig(passphrase_env="SW_TEST_PASSPHRASE"),
            "dev-file": KeyfileConfig(path=tmp_path / "keys" / "dev.key", create=True),
        },
        encryption=[
            EncryptionRule(paths=["prod/**"], provider="prod-pass"),
            EncryptionRule(paths=["dev/**"], provider="dev-file"),
        ],
    )
    svc = build_service(base)
    try:
        svc.writes.write(ADMIN, "prod/net", secret_state())
        svc.writes.write(ADMIN, "dev/net", secret_state())
        svc.writes.write(ADMIN, "other/net", secret_state())
        providers = {
            p: parse_header(blob_file(svc, p, 1).read_bytes())[0].provider
            for p in ("prod/net", "dev/net", "other/net")
        }
        assert providers == {"prod/net": "prod-pass", "dev/net": "dev-file", "other/net": "default"}
        # move dev/** to the passphrase: rewrap re-encrypts under the new provider
        svc = reopen(
            svc, encryption=[EncryptionRule(paths=["prod/**", "dev/**"], provider="prod-pass")]
        )
        assert svc.keys.key_status(ADMIN).stale == 1
        assert svc.keys.rewrap(ADMIN) == 1
        assert parse_header(blob_file(svc, "dev/net", 1).read_bytes())[0].provider == "prod-pass"
        assert svc.writes.read(ADMIN, "dev/net") is not None
        # without the passphrase the prod states cannot be read, and say why
        os.environ["SW_TEST_PASSPHRASE"] = "a different passphrase entirely"
        svc = reopen(svc)
        with pytest.raises(Unavailable, match="no configured passphrase matches"):
            svc.writes.read(ADMIN, "prod/net")
        assert svc.writes.read(ADMIN, "other/net") is not None
    finally:
        del os.environ["SW_TEST_PASSPHRASE"]
        svc.engine.dispose()


def test_passphrase_rotation_with_old_passphrase(store: Store, tmp_path: Path) -> None:
    os.environ["SW_OLD"] = "old passphrase, long enough"
    os.environ["SW_NEW"] = "new passphrase, long enough"
    try:
        cfg = {"p": PassphraseConfig(passphrase_env="SW_OLD")}
        rule = [EncryptionRule(paths=["**"], provider="p")]
        svc = build_service(store.settings(tmp_path / "d", key_providers=cfg, encryption=rule))
        body = secret_state()
        svc.writes.write(ADMIN, "p/x", body)
        new = {"p": PassphraseConfig(passphrase_env="SW_NEW", old_passphrase_envs=["SW_OLD"])}
        svc = reopen(svc, key_providers=new)
        assert svc.keys.key_status(ADMIN).stale == 1
        svc.keys.rewrap(ADMIN)
        only_new = {"p": PassphraseConfig(passphrase_env="SW_NEW")}
        svc = reopen(svc, key_providers=only_new)
        state = svc.writes.read(ADMIN, "p/x")
        assert state is not None and state.body == body
        svc.engine.dispose()
    finally:
        del os.environ["SW_OLD"], os.environ["SW_NEW"]


def test_passphrase_config_is_strict() -> None:
    with pytest.raises(ValueError):
        PassphraseConfig(passphrase_env="X", iterations=100_000)
    with pytest.raises(ValueError):
        PassphraseConfig()


def test_key_file_must_be_private(svc: StateService) -> None:
    key = default_key_file(svc)
    key.chmod(0o640)
    with pytest.raises(KeyDenied, match="chmod 600"):
        reopen(svc)


def test_unencrypted_blobs_of_earlier_releases_are_read_and_rewrapped(svc: StateService) -> None:
    body = secret_state()
    svc.writes.write(ADMIN, "old/x", body)
    f = blob_file(svc, "old/x", 1)
    import zstandard

    f.write_bytes(MAGIC + bytes([FORMAT_PLAIN, 1, 0, 0, 0]) + zstandard.compress(body))
    with svc.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM blob_keys")
    svc = reopen(svc)
    assert svc.history.get_version_body(ADMIN, "old/x", 1)[1] == body
    assert svc.keys.key_status(ADMIN).unencrypted == 1
    assert svc.keys.rewrap(ADMIN) == 1
    assert MARKER not in f.read_bytes()
    assert svc.keys.key_status(ADMIN).unencrypted == 0
    assert reopen(svc).history.get_version_body(ADMIN, "old/x", 1)[1] == body


def test_purge_shreds_the_keys_of_a_path(svc: StateService) -> None:
    svc.writes.write(ADMIN, "gone/x", secret_state(1))
    svc.writes.write(ADMIN, "gone/x", secret_state(2))
    files = [blob_file(svc, "gone/x", s) for s in (1, 2)]
    svc.admin.delete(ADMIN, "gone/x")
    svc.admin.purge(ADMIN, "gone/x")
    assert not any(f.exists() for f in files)
    with svc.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM blob_keys").scalar() == 0
    assert not any(p == "gone/x" for _, p in svc.barrier.keys._write)


# -- data key reuse (the KMS economy) -------------------------------------------------------


class CountingProvider:
    """A provider double that counts calls and can be switched to fail like a KMS."""

    kind = "test-kms"

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.inner = KeyfileProvider(name, Path(os.environ["SW_TEST_KEYS"]) / f"{name}.key", True)
        self.calls = 0
        self.fail: Exception | None = None
        self.lock = threading.Lock()

    def _call(self) -> None:
        with self.lock:
            self.calls += 1
        if self.fail is not None:
            raise self.fail

    def generate(self, context: Mapping[str, str]) -> DataKey:
        self._call()
        return self.inner.generate(context)

    def unwrap(self, key: WrappedKey, context: Mapping[str, str]) -> bytes:
        self._call()
        return self.inner.unwrap(key, context)

    def rewrap(self, key: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        self._call()
        return self.inner.rewrap(key, context)

    def current_version(self) -> str:
        return self.inner.current_version()


@pytest.fixture
def kms(tmp_path: Path, svc: StateService) -> Iterator[CountingProvider]:
    os.environ["SW_TEST_KEYS"] = str(tmp_path / "kms")
    provider = CountingProvider()
    svc.barrier.keys = KeyRing({"default": provider}, [], "default", max_age=300, max_uses=100)
    yield provider
    del os.environ["SW_TEST_KEYS"]


def test_data_keys_are_reused_within_bounds(svc: StateService, kms: CountingProvider) -> None:
    lineage = "3f1d2c4b-aaaa-bbbb-cccc-000000000009"
    for serial in range(1, 251):
        svc.writes.write(ADMIN, "hot/x", secret_state(serial, lineage))
    assert kms.calls == 3  # 250 writes, at most 100 blobs per data key
    keyring = svc.barrier.keys
    later = time.monotonic() + keyring.max_age + 1  # past max_age: the next write gets a new key
    keyring.clock = lambda: later
    svc.writes.write(ADMIN, "hot/x", secret_state(251, lineage))
    assert kms.calls == 4
    svc.writes.write(ADMIN, "cold/y", secret_state())  # another path never shares a data key
    assert kms.calls == 5
    svc.cache.clear()
    for seq in (1, 2, 150, 251):  # reads unwrap each distinct data key once
        svc.history.get_version_body(ADMIN, "hot/x", seq)
    assert kms.calls == 5 + 3


@pytest.mark.parametrize(
    ("fault", "retry"),
    [
        (KeyUnavailable("kms: endpoint unreachable"), True),
        (KeyDenied("kms: DisabledException"), False),
    ],
)
def test_kms_faults_fail_the_request_and_write_nothing(
    svc: StateService, kms: CountingProvider, fault: Exception, retry: bool
) -> None:
    lineage = "3f1d2c4b-aaaa-bbbb-cccc-00000000000a"
    svc.writes.write(ADMIN, "f/x", secret_state(1, lineage))
    svc.barrier.keys.clear()
    svc.cache.clear()
    blobs_before = sorted(k for k, _ in svc.barrier.blobs.list())
    kms.fail = fault
    with pytest.raises(Unavailable) as err:
        svc.writes.write(ADMIN, "f/x", secret_state(2, lineage))
    assert err.value.retry is retry and str(fault) in str(err.value)
    with pytest.raises(Unavailable):
        svc.writes.read(ADMIN, "f/x")
    assert [v.seq for v in svc.history.history(ADMIN, "f/x")] == [1]
    assert sorted(k for k, _ in svc.barrier.blobs.list()) == blobs_before  # no orphan blob
    kms.fail = None  # the key is back: the previous version reads again
    state = svc.writes.read(ADMIN, "f/x")
    assert state is not None and json.loads(state.body)["serial"] == 1


def test_invalid_wrapped_key_is_reported_as_tampering(svc: StateService) -> None:
    svc.writes.write(ADMIN, "t/x", secret_state())
    f = blob_file(svc, "t/x", 1)
    ref, wrapped, _offset = parse_header(f.read_bytes())
    other = svc.barrier.keys.provider("default").generate({"stateward:path": "elsewhere"})
    from stateward.crypto.barrier import rewrap_blob

    f.write_bytes(rewrap_blob(f.read_bytes(), ref, other.wrapped))
    svc.barrier.keys.clear()
    svc.cache.discard(f.name)
    with pytest.raises(Unavailable, match="does not unwrap") as err:
        svc.writes.read(ADMIN, "t/x")
    assert err.value.retry is False
    with pytest.raises(KeyInvalid):
        svc.barrier.keys.provider("default").unwrap(wrapped, {"stateward:path": "elsewhere"})


# -- the envelope on its own ----------------------------------------------------------------


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=4096),
    path=st.from_regex(r"[a-z]{1,8}(/[a-z0-9]{1,8}){0,3}", fullmatch=True),
)
def test_seal_open_round_trip(tmp_path: Path, body: bytes, path: str) -> None:
    provider = KeyfileProvider("default", tmp_path / "rt.key", create=True)
    barrier = Barrier(
        FileBlobStore(tmp_path / "blobs"), KeyRing({"default": provider}, [], "default")
    )
    sealed = barrier.seal(path, "k" * 32, body)
    assert barrier.open(path, "k" * 32, sealed.data) == body
    with pytest.raises(BlobCorrupt):
        barrier.open(path + "x", "k" * 32, sealed.data)
    with pytest.raises(BlobCorrupt):
        barrier.open(path, "j" * 32, sealed.data)
    if body:
        assert body not in sealed.data or len(body) < 4


def test_database_holds_no_state_content(svc: StateService, store: Store) -> None:
    svc.writes.write(ADMIN, "db/x", secret_state())
    assert MARKER not in db_dump(svc.engine)
    if not store.postgres:  # SQLite: the whole file's SQL dump too
        db = sqlite3.connect(svc.settings.db_path)
        dump = "\n".join(db.iterdump()).encode()
        db.close()
        assert MARKER not in dump


# -- OpenTofu client-side encryption required by policy -------------------------------------


def test_client_encryption_policy(store: Store, tmp_path: Path) -> None:
    import re

    from stateward.config import ClientEncryptionRule
    from stateward.domain.errors import Conflict, Forbidden
    from tests.harness.support import TOFU_ENCRYPTED, TOFU_LINEAGE

    rules = [
        ClientEncryptionRule(paths=["kms/**"], key_providers=["aws_kms"]),
        ClientEncryptionRule(paths=["prod/**"]),
    ]
    svc = build_service(store.settings(tmp_path / "d", client_encryption=rules))
    try:
        with pytest.raises(Forbidden, match="requires OpenTofu client-side encryption"):
            svc.writes.write(ADMIN, "prod/net", secret_state())
        assert svc.writes.write(ADMIN, "prod/net", TOFU_ENCRYPTED).created
        with pytest.raises(
            Forbidden, match="allows only key providers aws_kms; this state uses pbkdf2"
        ):
            svc.writes.write(ADMIN, "kms/net", TOFU_ENCRYPTED)
        # the clear serial/lineage of an encrypted upload still feed the guards
        stale = re.sub(rb'"serial":3', b'"serial":2', TOFU_ENCRYPTED)
        with pytest.raises(Conflict, match="stale write"):
            svc.writes.write(ADMIN, "prod/net", stale)
        other = TOFU_ENCRYPTED.replace(
            TOFU_LINEAGE.encode(), b"00000000-0000-0000-0000-000000000000"
        )
        with pytest.raises(Conflict, match="lineage mismatch"):
            svc.writes.write(ADMIN, "prod/net", other.replace(b'"serial":3', b'"serial":4'))
        # no rule: plaintext is fine
        assert svc.writes.write(ADMIN, "dev/net", secret_state()).created
        assert [v.seq for v in svc.history.history(ADMIN, "prod/net")] == [1]
    finally:
        svc.engine.dispose()


def test_export_as_opentofu_encrypted_files(store: Store, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.harness.support import TOFU_ENCRYPTED

    data = tmp_path / "d"
    svc = build_service(store.settings(data))
    plain = secret_state()
    svc.writes.write(ADMIN, "team/net/prod", plain)
    svc.writes.write(ADMIN, "team/enc/prod", TOFU_ENCRYPTED)
    svc.writes.write(ADMIN, "other/x", secret_state())
    svc.engine.dispose()
    cfg = tmp_path / "enc.toml"
    cfg.write_text(
        '[key_provider.pbkdf2.main]\npassphrase_env = "EXPORT_PASS"\niterations = 200000\n'
        '[method.aes_gcm.m]\nkeys = "key_provider.pbkdf2.main"\n'
        '[state]\nmethod = "method.aes_gcm.m"\n'
    )
    env = {**os.environ, "EXPORT_PASS": "export passphrase 1234"}
    env = {k: v for k, v in env.items() if not k.startswith("STATEWARD_")} | store.env(data)
    out = tmp_path / "out"

    def sw(*args: str) -> subprocess.CompletedProcess[bytes]:
        cmd = [sys.executable, "-m", "stateward", *store.cli_args(data), *args]
        return subprocess.run(cmd, env=env, capture_output=True, timeout=120)

    r = sw("export", str(out), "--path", "team/**", "--tofu-config", str(cfg))
    assert r.returncode == 0, r.stderr
    exported = out / "team/net/prod/terraform.tfstate"
    assert (
        MARKER not in exported.read_bytes()
        and b'"encryption_version":"v0"' in exported.read_bytes()
    )
    assert (out / "team/enc/prod/terraform.tfstate").read_bytes() == TOFU_ENCRYPTED
    assert not (out / "other").exists()
    assert exported.stat().st_mode & 0o777 == 0o600
    r = sw("tofu", "decrypt", "--config", str(cfg), str(exported))
    assert r.returncode == 0, r.stderr
    assert r.stdout == plain
    assert sw("export", str(out)).returncode != 0  # neither a config nor --plaintext


# Embedded only: with database_url, a key in the data directory stops serve instead (every
# replica needs the same key), tests/test_startup_checks.py.
@embedded_only
def test_serve_warns_when_the_key_lives_beside_the_data(tmp_path: Path, store: Store) -> None:
    from tests.harness.support import ServerProcess

    warning = b"keeps its key inside the data directory"
    srv = ServerProcess(tmp_path / "beside", store=store).start()
    srv.stop()
    assert srv.log_path is not None and warning in srv.log_path.read_bytes()
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text(
        f'[key_providers.default]\ntype = "keyfile"\npath = "{tmp_path / "keys" / "m.key"}"\n'
        "create = true\n"
    )
    srv = ServerProcess(tmp_path / "apart", config=cfg, store=store).start()
    srv.stop()
    assert srv.log_path is not None and warning not in srv.log_path.read_bytes()
    assert (tmp_path / "keys" / "m.key").stat().st_mode & 0o777 == 0o600
