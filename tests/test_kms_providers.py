"""The KMS key providers (``aws-kms``, ``vault-transit``, ``gcp-kms``).

- aws-kms runs against moto 5.2.1 in server mode (``ThreadedMotoServer`` on loopback) through
  boto3 over real HTTP. moto does not enforce key state; the ``kms_backend`` fixture adds the
  check real KMS makes (disabled -> ``DisabledException``, pending deletion ->
  ``KMSInvalidStateException``) to moto's backend and lets a test inject errors
  (``ThrottlingException``, ``KMSInternalException``, ``IncorrectKeyException``) that moto then
  answers over the wire like any other KMS error.
- vault-transit and gcp-kms run against the fake servers in ``harness/fake_kms.py`` (real AES-GCM,
  the services' documented endpoints, error shapes and messages); the tests also assert the
  exact requests (paths, headers, JSON bodies) the providers send.

Nothing here talks to a live AWS, Vault, OpenBao or Google service.
"""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from stateward.crypto.providers._http import canonical_context
from stateward.crypto.providers.aws_kms import AwsKmsConfig, AwsKmsProvider
from stateward.crypto.providers.base import (
    KeyDenied,
    KeyInvalid,
    KeyProvider,
    KeyProviderError,
    KeyUnavailable,
    WrappedKey,
)
from stateward.crypto.providers.gcp_kms import GcpKmsConfig, GcpKmsProvider, crc32c
from stateward.crypto.providers.local import context_bytes
from stateward.crypto.providers.vault_transit import VaultTransitConfig, VaultTransitProvider
from tests.harness.aws import KmsBackendControl, _key_uuid
from tests.harness.fake_kms import FakeGcpKms, FakeVault, Reply, make_tls

CTX = {"stateward:path": "prod/net"}
OTHER_CTX = {"stateward:path": "prod/app"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _no_secrets(exc: BaseException, *secrets: bytes | str) -> None:
    """One line, and none of the given secrets (raw, hex or base64) in the message."""
    text = str(exc)
    assert "\n" not in text, text
    for secret in secrets:
        raw = secret.encode() if isinstance(secret, str) else secret
        for form in (raw.decode("latin-1"), raw.hex(), base64.b64encode(raw).decode()):
            assert form not in text, text


# ================================================================================================
# aws-kms (moto server)
# ================================================================================================


def _aws(moto_url: str, key_id: str, **extra: Any) -> AwsKmsProvider:
    return AwsKmsProvider("kms1", AwsKmsConfig(key_id=key_id, endpoint_url=moto_url, **extra))


def test_aws_round_trip_binds_context(moto_url: str, kms_key: str) -> None:
    provider = _aws(moto_url, kms_key)
    dk = provider.generate(CTX)
    assert len(dk.plaintext) == 32
    assert dk.key_id == kms_key and dk.key_version == ""
    assert dk.plaintext not in dk.wrapped
    stored = WrappedKey(dk.wrapped, dk.key_id, dk.key_version)
    assert provider.unwrap(stored, CTX) == dk.plaintext
    assert provider.current_version() == ""
    assert provider.calls == {"GenerateDataKey": 1, "Decrypt": 1}
    # A wrapped key copied to another path's blob does not unwrap there.
    with pytest.raises(KeyInvalid, match="InvalidCiphertextException") as err:
        provider.unwrap(stored, OTHER_CTX)
    assert "'kms1'" in str(err.value) and "Decrypt" in str(err.value)
    _no_secrets(err.value, dk.wrapped, dk.plaintext)
    assert provider.calls == {"GenerateDataKey": 1, "Decrypt": 2}


def test_aws_tampered_wrapped_key_is_invalid(moto_url: str, kms_key: str) -> None:
    provider = _aws(moto_url, kms_key)
    dk = provider.generate(CTX)
    tampered = dk.wrapped[:-1] + bytes([dk.wrapped[-1] ^ 1])
    with pytest.raises(KeyInvalid) as err:
        provider.unwrap(WrappedKey(tampered, dk.key_id, ""), CTX)
    _no_secrets(err.value, tampered, dk.plaintext)
    with pytest.raises(KeyInvalid):
        provider.unwrap(WrappedKey(b"", dk.key_id, ""), CTX)


def test_aws_alias_key_id(moto_url: str, kms_admin: Any, kms_key: str) -> None:
    alias = f"alias/stateward-{kms_key[-12:]}"
    kms_admin.create_alias(AliasName=alias, TargetKeyId=kms_key)
    provider = _aws(moto_url, alias)
    dk = provider.generate(CTX)
    assert dk.key_id == kms_key  # the answer's KeyId is the key ARN, not the alias
    assert provider.unwrap(WrappedKey(dk.wrapped, dk.key_id, ""), CTX) == dk.plaintext


def test_aws_rewrap_round_trip(moto_url: str, kms_key: str) -> None:
    provider = _aws(moto_url, kms_key)
    dk = provider.generate(CTX)
    old = WrappedKey(dk.wrapped, dk.key_id, dk.key_version)
    new = provider.rewrap(old, CTX)
    assert new.wrapped != old.wrapped and new.key_id == kms_key and new.key_version == ""
    assert provider.unwrap(new, CTX) == dk.plaintext
    assert provider.calls == {"GenerateDataKey": 1, "ReEncrypt": 1, "Decrypt": 1}
    with pytest.raises(KeyInvalid):
        provider.rewrap(old, OTHER_CTX)


def test_aws_move_to_new_key_with_previous_key_ids(
    moto_url: str, kms_admin: Any, kms_key: str, kms_backend: KmsBackendControl
) -> None:
    old_provider = _aws(moto_url, kms_key)
    dk = old_provider.generate(CTX)
    old = WrappedKey(dk.wrapped, dk.key_id, "")
    new_key = str(kms_admin.create_key()["KeyMetadata"]["Arn"])

    # Without previous_key_ids the new provider pins KeyId to the new key, and KMS refuses.
    # moto answers AccessDeniedException (-> KeyDenied); AWS answers IncorrectKeyException
    # (-> KeyInvalid, checked below with an injected error).
    strict = _aws(moto_url, new_key)
    with pytest.raises(KeyDenied, match="AccessDeniedException"):
        strict.unwrap(old, CTX)
    kms_backend.fail_next("IncorrectKeyException")
    with pytest.raises(KeyInvalid, match=r"IncorrectKeyException.*previous_key_ids"):
        strict.unwrap(old, CTX)

    moving = _aws(moto_url, new_key, previous_key_ids=(kms_key,))
    assert moving.unwrap(old, CTX) == dk.plaintext
    moved = moving.rewrap(old, CTX)
    assert moved.key_id == new_key
    assert strict.unwrap(moved, CTX) == dk.plaintext


def test_aws_disabled_key_is_denied_until_enabled(
    moto_url: str, kms_admin: Any, kms_key: str
) -> None:
    provider = _aws(moto_url, kms_key)
    dk = provider.generate(CTX)
    stored = WrappedKey(dk.wrapped, dk.key_id, "")
    kms_admin.disable_key(KeyId=_key_uuid(kms_key))
    with pytest.raises(KeyDenied, match="GenerateDataKey failed: DisabledException"):
        provider.generate(CTX)
    with pytest.raises(KeyDenied, match="Decrypt failed: DisabledException") as err:
        provider.unwrap(stored, CTX)
    _no_secrets(err.value, dk.wrapped, dk.plaintext)
    with pytest.raises(KeyDenied, match="DisabledException"):
        provider.rewrap(stored, CTX)
    kms_admin.enable_key(KeyId=_key_uuid(kms_key))
    assert provider.unwrap(stored, CTX) == dk.plaintext
    assert len(provider.generate(CTX).plaintext) == 32


def test_aws_pending_deletion_is_denied(moto_url: str, kms_admin: Any, kms_key: str) -> None:
    provider = _aws(moto_url, kms_key)
    dk = provider.generate(CTX)
    kms_admin.schedule_key_deletion(KeyId=_key_uuid(kms_key), PendingWindowInDays=7)
    with pytest.raises(KeyDenied, match="KMSInvalidStateException"):
        provider.unwrap(WrappedKey(dk.wrapped, dk.key_id, ""), CTX)
    kms_admin.cancel_key_deletion(KeyId=_key_uuid(kms_key))
    kms_admin.enable_key(KeyId=_key_uuid(kms_key))
    assert provider.unwrap(WrappedKey(dk.wrapped, dk.key_id, ""), CTX) == dk.plaintext


def test_aws_unknown_key_is_denied(moto_url: str, aws_env: None) -> None:
    provider = _aws(moto_url, "11111111-2222-3333-4444-555555555555")
    with pytest.raises(KeyDenied, match="NotFoundException"):
        provider.generate(CTX)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 400),
        ("KMSInternalException", 500),
        ("DependencyTimeoutException", 500),
        ("KeyUnavailableException", 500),
        ("SomethingNew", 503),
    ],
)
def test_aws_transient_errors_are_unavailable(
    moto_url: str, kms_key: str, kms_backend: KmsBackendControl, code: str, status: int
) -> None:
    provider = _aws(moto_url, kms_key, max_attempts=1)
    dk = provider.generate(CTX)
    kms_backend.fail_next(code, status=status)
    with pytest.raises(KeyUnavailable, match=f"GenerateDataKey failed: {code}"):
        provider.generate(CTX)
    kms_backend.fail_next(code, status=status)
    with pytest.raises(KeyUnavailable, match=f"Decrypt failed: {code}") as err:
        provider.unwrap(WrappedKey(dk.wrapped, dk.key_id, ""), CTX)
    _no_secrets(err.value, dk.wrapped, dk.plaintext)
    assert not kms_backend.faults


def test_aws_retries_once_by_default(
    moto_url: str, kms_key: str, kms_backend: KmsBackendControl
) -> None:
    provider = _aws(moto_url, kms_key)  # max_attempts=2: one retry, botocore "standard" mode
    before = kms_backend.encrypt_calls
    kms_backend.fail_next("ThrottlingException")
    assert len(provider.generate(CTX).plaintext) == 32
    assert kms_backend.encrypt_calls - before == 2
    assert provider.calls == {"GenerateDataKey": 1}
    kms_backend.fail_next("ThrottlingException", times=2)
    with pytest.raises(KeyUnavailable, match="ThrottlingException"):
        provider.generate(CTX)
    assert kms_backend.encrypt_calls - before == 4


def test_aws_endpoint_down_is_unavailable(aws_env: None) -> None:
    provider = _aws(f"http://127.0.0.1:{_free_port()}", "alias/anything")
    with pytest.raises(KeyUnavailable, match="cannot reach KMS") as err:
        provider.generate(CTX)
    assert "'kms1'" in str(err.value)
    with pytest.raises(KeyUnavailable):
        provider.unwrap(WrappedKey(b"\x01" * 64, "arn:aws:kms:x", ""), CTX)
    assert provider.calls == {"GenerateDataKey": 1, "Decrypt": 1}


def test_aws_missing_credentials_are_denied(
    moto_url: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    provider = _aws(moto_url, "alias/anything")
    with pytest.raises(KeyDenied, match="NoCredentialsError"):
        provider.generate(CTX)


def test_aws_client_setup_errors_are_denied(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyDenied, match="profile 'nope' not found"):
        AwsKmsProvider("kms1", AwsKmsConfig(key_id="alias/x", profile="nope"))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(KeyDenied, match="no AWS region"):
        AwsKmsProvider("kms1", AwsKmsConfig(key_id="alias/x"))
    provider = AwsKmsProvider("kms1", AwsKmsConfig(key_id="alias/x", region="eu-west-1"))
    assert provider.kind == "aws-kms" and "eu-west-1" in provider._client.meta.region_name


def test_aws_call_counter_is_thread_safe(moto_url: str, kms_key: str) -> None:
    provider = _aws(moto_url, kms_key)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                dk = provider.generate(CTX)
                provider.unwrap(WrappedKey(dk.wrapped, dk.key_id, ""), CTX)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert provider.call_counts() == {"GenerateDataKey": 20, "Decrypt": 20}


def test_aws_config_model() -> None:
    cfg = AwsKmsConfig(key_id="alias/stateward")
    assert cfg.type == "aws-kms"
    assert (cfg.region, cfg.endpoint_url, cfg.profile) == (None, None, None)
    assert (cfg.connect_timeout_seconds, cfg.read_timeout_seconds, cfg.max_attempts) == (3, 5, 2)
    assert cfg.previous_key_ids == ()
    with pytest.raises(ValidationError):
        AwsKmsConfig(key_id="alias/x", keyid="typo")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="https"):
        AwsKmsConfig(key_id="alias/x", endpoint_url="http://kms.example.com")
    with pytest.raises(ValidationError):
        AwsKmsConfig(key_id="")
    with pytest.raises(ValidationError):
        cfg.key_id = "other"  # type: ignore[misc]
    assert AwsKmsConfig(key_id="k", endpoint_url="https://kms.example/").endpoint_url == (
        "https://kms.example"
    )


# ================================================================================================
# vault-transit (fake server)
# ================================================================================================

VAULT_TOKEN = "hvs.CAESI-test-token-do-not-log"


@pytest.fixture
def vault() -> Iterator[FakeVault]:
    with FakeVault(VAULT_TOKEN) as server:
        assert isinstance(server, FakeVault)
        server.create_key("stateward")
        yield server


@pytest.fixture
def vault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", VAULT_TOKEN)


def _vault(server: FakeVault, **extra: Any) -> VaultTransitProvider:
    cfg: dict[str, Any] = {"address": server.url, "key_name": "stateward", **extra}
    return VaultTransitProvider("bao", VaultTransitConfig(**cfg), sleep=lambda _: None)


def test_vault_round_trip_requests(vault: FakeVault, vault_env: None) -> None:
    provider = _vault(vault)
    dk = provider.generate(CTX)
    assert len(dk.plaintext) == 32
    assert dk.wrapped.startswith(b"vault:v1:")
    assert (dk.key_id, dk.key_version) == ("stateward", "1")
    stored = WrappedKey(dk.wrapped, dk.key_id, dk.key_version)
    assert provider.unwrap(stored, CTX) == dk.plaintext
    gen, dec = vault.requests
    assert (gen.method, gen.path) == ("POST", "/v1/transit/datakey/plaintext/stateward")
    assert gen.json == {"bits": 256}  # no context for a non-derived key
    assert (dec.method, dec.path) == ("POST", "/v1/transit/decrypt/stateward")
    assert dec.json == {"ciphertext": dk.wrapped.decode()}
    for req in vault.requests:
        assert req.headers["x-vault-token"] == VAULT_TOKEN
        assert req.headers["content-type"] == "application/json"
        assert "x-vault-namespace" not in req.headers
    assert provider.calls == {"datakey": 1, "decrypt": 1}
    # current_version comes from the last answer while the cache is fresh: no request.
    assert provider.current_version() == "1" and len(vault.requests) == 2


def test_vault_namespace_and_mount(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(VAULT_TOKEN + "\n")
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    with FakeVault(VAULT_TOKEN, mount="kms/transit") as server:
        assert isinstance(server, FakeVault)
        server.create_key("stateward")
        provider = _vault(
            server, mount="/kms/transit/", namespace="team-a/infra", token_file=token_file
        )
        dk = provider.generate(CTX)
        assert server.requests[0].path == "/v1/kms/transit/datakey/plaintext/stateward"
        assert server.requests[0].headers["x-vault-namespace"] == "team-a/infra"
        # The token file is re-read on every request (Vault Agent renews it in place).
        token_file.write_text("hvs.rotated")
        server.token = "hvs.rotated"
        assert provider.unwrap(WrappedKey(dk.wrapped, dk.key_id, ""), CTX) == dk.plaintext
        assert server.requests[1].headers["x-vault-token"] == "hvs.rotated"


def test_vault_rotation_and_rewrap(vault: FakeVault, vault_env: None) -> None:
    provider = _vault(vault, version_cache_seconds=0)
    dk = provider.generate(CTX)
    old = WrappedKey(dk.wrapped, dk.key_id, dk.key_version)
    vault.rotate("stateward")
    assert provider.current_version() == "2"
    assert vault.requests[-1].method == "GET"
    assert vault.requests[-1].path == "/v1/transit/keys/stateward"
    assert vault.requests[-1].json is None
    new = provider.rewrap(old, CTX)
    assert new.wrapped.startswith(b"vault:v2:") and new.key_version == "2"
    rewrap = vault.requests[-1]
    assert (rewrap.method, rewrap.path) == ("POST", "/v1/transit/rewrap/stateward")
    assert rewrap.json == {"ciphertext": old.wrapped.decode()}  # no plaintext leaves Vault
    assert provider.unwrap(new, CTX) == dk.plaintext
    assert provider.unwrap(old, CTX) == dk.plaintext  # old versions still decrypt
    assert provider.generate(CTX).key_version == "2"
    assert provider.calls == {"datakey": 2, "keys": 1, "rewrap": 1, "decrypt": 2}
    # A ciphertext version below min_decryption_version: an operator decision -> denied.
    vault.keys["stateward"].min_decryption_version = 2
    with pytest.raises(KeyDenied, match="min_decryption_version"):
        provider.unwrap(old, CTX)


@pytest.mark.parametrize("auth_status", [400, 500])
def test_vault_tampered_ciphertext_is_invalid(
    vault: FakeVault, vault_env: None, auth_status: int
) -> None:
    vault.auth_failure_status = auth_status  # some Vault versions answer 500 (vault#10842)
    provider = _vault(vault)
    dk = provider.generate(CTX)
    prefix, payload = dk.wrapped.rsplit(b":", 1)
    raw = bytearray(base64.b64decode(payload))
    raw[-1] ^= 1
    tampered = prefix + b":" + base64.b64encode(bytes(raw))
    with pytest.raises(KeyInvalid, match="message authentication failed") as err:
        provider.unwrap(WrappedKey(tampered, dk.key_id, dk.key_version), CTX)
    _no_secrets(err.value, tampered, dk.plaintext, VAULT_TOKEN)
    assert vault.paths().count("/v1/transit/decrypt/stateward") == 1  # not retried
    with pytest.raises(KeyInvalid):
        provider.rewrap(WrappedKey(tampered, dk.key_id, dk.key_version), CTX)
    with pytest.raises(KeyInvalid, match="too new"):
        provider.unwrap(WrappedKey(b"vault:v9:" + payload, dk.key_id, ""), CTX)


def test_vault_refuses_foreign_wrapped_keys_locally(vault: FakeVault, vault_env: None) -> None:
    provider = _vault(vault)
    dk = provider.generate(CTX)
    with pytest.raises(KeyInvalid, match="transit key 'other'"):
        provider.unwrap(WrappedKey(dk.wrapped, "other", "1"), CTX)
    with pytest.raises(KeyInvalid, match="not a transit ciphertext"):
        provider.unwrap(WrappedKey(b"\x00\xffAKIA", "stateward", "1"), CTX)
    assert len(vault.requests) == 1


def test_vault_derived_key_binds_context(vault: FakeVault, vault_env: None) -> None:
    vault.create_key("derived", derived=True)
    provider = _vault(vault, key_name="derived", derived=True)
    dk = provider.generate(CTX)
    expected = base64.b64encode(b'{"stateward:path":"prod/net"}').decode()
    assert vault.requests[0].json == {"bits": 256, "context": expected}
    stored = WrappedKey(dk.wrapped, dk.key_id, dk.key_version)
    assert provider.unwrap(stored, CTX) == dk.plaintext
    assert vault.requests[1].json == {"ciphertext": dk.wrapped.decode(), "context": expected}
    with pytest.raises(KeyInvalid):
        provider.unwrap(stored, OTHER_CTX)
    assert provider.unwrap(provider.rewrap(stored, CTX), CTX) == dk.plaintext
    assert vault.requests[-2].json["context"] == expected  # the rewrap
    # A derived key used without derived=true: Vault wants the context -> configuration error.
    with pytest.raises(KeyDenied, match="missing 'context'"):
        _vault(vault, key_name="derived").generate(CTX)


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        (Reply(403, {"errors": ["permission denied"]}), KeyDenied, "403: permission denied"),
        (Reply(401, {"errors": []}), KeyDenied, "HTTP 401"),
        (Reply(404, {"errors": []}), KeyDenied, "check address, mount"),
        (Reply(400, {"errors": ["encryption key not found"]}), KeyDenied, "key not found"),
        (Reply(400, {"errors": ["something odd"]}), KeyDenied, "something odd"),
        (Reply(429, {"errors": ["rate limit quota exceeded"]}), KeyUnavailable, "429"),
        (Reply(500, {"errors": ["internal error"]}), KeyUnavailable, "500"),
        (Reply(503, {"errors": ["Vault is sealed"]}), KeyUnavailable, "sealed"),
        (Reply(412, {"errors": []}), KeyUnavailable, "412"),
        (Reply(502, b"<html>\n<b>Bad Gateway</b>\n</html>"), KeyUnavailable, "HTTP 502"),
        (Reply(307, b"", {"Location": "https://standby:8200/"}), KeyUnavailable, "redirect"),
        (Reply(200, b"not json"), KeyUnavailable, "no data"),
        (Reply(200, {"data": {"plaintext": "eA==", "ciphertext": "x"}}), KeyUnavailable, "256-bit"),
    ],
)
def test_vault_error_mapping(
    vault: FakeVault, vault_env: None, reply: Reply, error: type[Exception], match: str
) -> None:
    provider = _vault(vault, max_attempts=1)
    dk = provider.generate(CTX)
    vault.faults.append(reply)
    with pytest.raises(error, match=match) as err:
        provider.generate(CTX)
    _no_secrets(err.value, VAULT_TOKEN)
    if reply.status != 200:
        vault.faults.append(reply)
        with pytest.raises(error, match=match) as err:
            provider.unwrap(WrappedKey(dk.wrapped, dk.key_id, dk.key_version), CTX)
        _no_secrets(err.value, VAULT_TOKEN, dk.wrapped, dk.plaintext)
        assert "'bao'" in str(err.value)


def test_vault_token_problems(vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    provider = _vault(vault)
    with pytest.raises(KeyDenied, match=r"no Vault token \(set \$VAULT_TOKEN\)"):
        provider.generate(CTX)
    assert vault.requests == []
    monkeypatch.setenv("VAULT_TOKEN", "hvs.bad\r\nX-Injected: 1")
    with pytest.raises(KeyDenied, match="invalid characters") as err:
        provider.generate(CTX)
    assert "Injected" not in str(err.value) and vault.requests == []
    monkeypatch.setenv("VAULT_TOKEN", "hvs.wrong-token-value")
    vault.echo_token = True  # even a server that echoes the token does not get it logged
    with pytest.raises(KeyDenied, match="permission denied") as err:
        provider.generate(CTX)
    _no_secrets(err.value, "hvs.wrong-token-value")
    missing = _vault(vault, token_file=Path("/nonexistent/token"))
    with pytest.raises(KeyDenied, match="cannot read the Vault token file"):
        missing.generate(CTX)


def test_vault_retries_transient_errors(vault: FakeVault, vault_env: None) -> None:
    provider = _vault(vault)  # max_attempts=2
    vault.faults.append(Reply(503, {"errors": ["Vault is sealed"]}))
    assert len(provider.generate(CTX).plaintext) == 32
    assert len(vault.requests) == 2 and provider.calls == {"datakey": 1}
    vault.faults.extend([Reply(503, {"errors": []})] * 2)
    with pytest.raises(KeyUnavailable):
        provider.generate(CTX)
    assert len(vault.requests) == 4
    vault.faults.append(Reply(403, {"errors": ["permission denied"]}))
    with pytest.raises(KeyDenied):
        provider.generate(CTX)
    assert len(vault.requests) == 5  # denials are not retried


def test_vault_transport_failures(vault: FakeVault, vault_env: None) -> None:
    down = VaultTransitProvider(
        "bao",
        VaultTransitConfig(address=f"http://127.0.0.1:{_free_port()}", key_name="k"),
        sleep=lambda _: None,
    )
    with pytest.raises(KeyUnavailable, match=r"cannot reach 127\.0\.0\.1"):
        down.generate(CTX)
    slow = _vault(vault, read_timeout_seconds=0.2, max_attempts=1)
    vault.delay = 1.0
    with pytest.raises(KeyUnavailable, match="timed out"):
        slow.generate(CTX)
    vault.delay = 0
    vault.faults.append(Reply(200, b"[" + b" " * (1024 * 1024 + 10) + b"]"))
    with pytest.raises(KeyUnavailable, match="larger than"):
        slow.generate(CTX)


def test_vault_over_tls(tmp_path: Path, vault_env: None) -> None:
    tls = make_tls(tmp_path)
    with FakeVault(VAULT_TOKEN, tls=tls.server_context) as server:
        assert isinstance(server, FakeVault)
        server.create_key("stateward")
        assert server.url.startswith("https://127.0.0.1:")
        trusted = _vault(server, ca_file=tls.ca_file)
        dk = trusted.generate(CTX)
        assert trusted.unwrap(WrappedKey(dk.wrapped, dk.key_id, ""), CTX) == dk.plaintext
        untrusted = _vault(server)
        with pytest.raises(KeyDenied, match=r"certificate .* not trusted"):
            untrusted.generate(CTX)
    with pytest.raises(KeyDenied, match="cannot load ca_file"):
        _vault(server, ca_file=tmp_path / "missing.pem")


def test_vault_config_model() -> None:
    cfg = VaultTransitConfig(address="https://vault.example:8200/", key_name="stateward")
    assert cfg.type == "vault-transit" and cfg.address == "https://vault.example:8200"
    assert (cfg.mount, cfg.token_env, cfg.token_file, cfg.namespace, cfg.ca_file) == (
        "transit",
        "VAULT_TOKEN",
        None,
        None,
        None,
    )
    assert (cfg.derived, cfg.connect_timeout_seconds, cfg.read_timeout_seconds) == (False, 3, 5)
    assert (cfg.max_attempts, cfg.version_cache_seconds) == (2, 60)
    for address in ("http://127.0.0.1:8200", "http://localhost:8200", "http://[::1]:8200"):
        VaultTransitConfig(address=address, key_name="k")
    for address in ("http://vault.example:8200", "ftp://x", "https://u:p@vault.example", "x"):
        with pytest.raises(ValidationError):
            VaultTransitConfig(address=address, key_name="k")
    for bad in ({"key_name": "a/b"}, {"key_name": ""}, {"mount": "../sys"}, {"tokenenv": "X"}):
        with pytest.raises(ValidationError):
            VaultTransitConfig(**{"address": "https://v", "key_name": "k", **bad})


# ================================================================================================
# gcp-kms (fake server)
# ================================================================================================

GCP_TOKEN = "ya29.test-access-token-do-not-log"
GCP_KEY = "projects/p-1/locations/europe-west1/keyRings/ring/cryptoKeys/stateward"


@pytest.fixture
def gcp() -> Iterator[FakeGcpKms]:
    with FakeGcpKms(GCP_TOKEN) as server:
        assert isinstance(server, FakeGcpKms)
        server.create_key(GCP_KEY)
        yield server


@pytest.fixture
def gcp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", GCP_TOKEN)


def _gcp(server: FakeGcpKms, **extra: Any) -> GcpKmsProvider:
    cfg: dict[str, Any] = {"key_name": GCP_KEY, "endpoint": server.url, **extra}
    return GcpKmsProvider("gkms", GcpKmsConfig(**cfg), sleep=lambda _: None)


def test_context_encoding_is_canonical() -> None:
    ctx = {"stateward:path": "prod/ñet", "a": "1"}
    assert canonical_context(ctx) == b'{"a":"1","stateward:path":"prod/\\u00f1et"}'
    assert canonical_context(ctx) == context_bytes(ctx)  # the local providers' encoding


def test_crc32c_known_answer() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def test_gcp_round_trip_requests(gcp: FakeGcpKms, gcp_env: None) -> None:
    provider = _gcp(gcp)
    dk = provider.generate(CTX)
    assert len(dk.plaintext) == 32
    assert (dk.key_id, dk.key_version) == (GCP_KEY, "1")
    assert provider.unwrap(WrappedKey(dk.wrapped, dk.key_id, dk.key_version), CTX) == dk.plaintext
    enc, dec = gcp.requests
    aad = b'{"stateward:path":"prod/net"}'
    assert (enc.method, enc.path) == ("POST", f"/v1/{GCP_KEY}:encrypt")
    assert enc.json == {
        "plaintext": base64.b64encode(dk.plaintext).decode(),
        "additionalAuthenticatedData": base64.b64encode(aad).decode(),
        "plaintextCrc32c": str(crc32c(dk.plaintext)),
        "additionalAuthenticatedDataCrc32c": str(crc32c(aad)),
    }
    assert (dec.method, dec.path) == ("POST", f"/v1/{GCP_KEY}:decrypt")
    assert dec.json == {
        "ciphertext": base64.b64encode(dk.wrapped).decode(),
        "additionalAuthenticatedData": base64.b64encode(aad).decode(),
        "ciphertextCrc32c": str(crc32c(dk.wrapped)),
        "additionalAuthenticatedDataCrc32c": str(crc32c(aad)),
    }
    for req in gcp.requests:
        assert req.headers["authorization"] == f"Bearer {GCP_TOKEN}"
        assert "x-goog-user-project" not in req.headers
    assert provider.calls == {"encrypt": 1, "decrypt": 1}


def test_gcp_context_and_tampering_are_invalid(gcp: FakeGcpKms, gcp_env: None) -> None:
    provider = _gcp(gcp)
    dk = provider.generate(CTX)
    with pytest.raises(KeyInvalid, match="INVALID_ARGUMENT: Decryption failed") as err:
        provider.unwrap(WrappedKey(dk.wrapped, dk.key_id, dk.key_version), OTHER_CTX)
    _no_secrets(err.value, dk.wrapped, dk.plaintext, GCP_TOKEN)
    tampered = dk.wrapped[:-1] + bytes([dk.wrapped[-1] ^ 1])
    with pytest.raises(KeyInvalid):
        provider.unwrap(WrappedKey(tampered, dk.key_id, dk.key_version), CTX)
    with pytest.raises(KeyInvalid, match="wrapped under"):
        provider.unwrap(WrappedKey(dk.wrapped, GCP_KEY + "x", "1"), CTX)
    assert gcp.paths().count(f"/v1/{GCP_KEY}:decrypt") == 2  # no retry of KeyInvalid


def test_gcp_rotation_rewrap_and_versions(gcp: FakeGcpKms, gcp_env: None) -> None:
    provider = _gcp(gcp, version_cache_seconds=0, quota_project="billing-proj")
    dk = provider.generate(CTX)
    old = WrappedKey(dk.wrapped, dk.key_id, dk.key_version)
    gcp.rotate(GCP_KEY)
    assert provider.current_version() == "2"
    assert (gcp.requests[-1].method, gcp.requests[-1].path) == ("GET", f"/v1/{GCP_KEY}")
    assert gcp.requests[-1].headers["x-goog-user-project"] == "billing-proj"
    new = provider.rewrap(old, CTX)
    assert new.key_version == "2" and new.key_id == GCP_KEY
    assert provider.unwrap(new, CTX) == dk.plaintext
    assert provider.unwrap(old, CTX) == dk.plaintext
    assert provider.calls == {"encrypt": 2, "get": 1, "decrypt": 3}
    # A disabled version: its blobs are denied (an operator must act), others still work.
    gcp.keys[GCP_KEY].states[0] = "DISABLED"
    with pytest.raises(KeyDenied, match=r"FAILED_PRECONDITION.*not enabled"):
        provider.unwrap(old, CTX)
    assert provider.unwrap(new, CTX) == dk.plaintext
    gcp.keys[GCP_KEY].states[1] = "DESTROYED"
    with pytest.raises(KeyDenied, match="DESTROYED"):
        provider.generate(CTX)


def test_gcp_auth_and_missing_key(
    gcp: FakeGcpKms, gcp_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(KeyDenied, match="NOT_FOUND"):
        GcpKmsProvider(
            "gkms",
            GcpKmsConfig(key_name=GCP_KEY.replace("stateward", "nope"), endpoint=gcp.url),
        ).generate(CTX)
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.expired-token-value")
    with pytest.raises(KeyDenied, match=r"401 UNAUTHENTICATED.*expired") as err:
        _gcp(gcp).generate(CTX)
    _no_secrets(err.value, "ya29.expired-token-value", GCP_TOKEN)
    token_file = tmp_path / "token"
    token_file.write_text(GCP_TOKEN)
    dk = _gcp(gcp, access_token_file=token_file).generate(CTX)
    assert len(dk.plaintext) == 32
    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN")
    with pytest.raises(KeyDenied, match=r"no access token \(set \$GOOGLE_OAUTH_ACCESS_TOKEN\)"):
        _gcp(gcp).generate(CTX)


def _gcp_error(code: int, status: str, message: str = "x") -> Reply:
    return Reply(code, {"error": {"code": code, "message": message, "status": status}})


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (_gcp_error(403, "PERMISSION_DENIED", "Permission 'cloudkms...' denied"), KeyDenied),
        (_gcp_error(404, "NOT_FOUND"), KeyDenied),
        (_gcp_error(400, "FAILED_PRECONDITION", "is not enabled"), KeyDenied),
        (_gcp_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"), KeyUnavailable),
        (_gcp_error(500, "INTERNAL"), KeyUnavailable),
        (_gcp_error(503, "UNAVAILABLE", "The service is currently unavailable."), KeyUnavailable),
        (_gcp_error(504, "DEADLINE_EXCEEDED"), KeyUnavailable),
        (Reply(502, b"<html>bad gateway</html>"), KeyUnavailable),
        (
            _gcp_error(400, "INVALID_ARGUMENT", "The checksum in field ... did not match"),
            KeyUnavailable,
        ),
    ],
)
def test_gcp_error_mapping(
    gcp: FakeGcpKms, gcp_env: None, reply: Reply, error: type[Exception]
) -> None:
    provider = _gcp(gcp, max_attempts=1)
    dk = provider.generate(CTX)
    for call in (
        lambda: provider.generate(CTX),
        lambda: provider.unwrap(WrappedKey(dk.wrapped, dk.key_id, dk.key_version), CTX),
    ):
        gcp.faults.append(reply)
        with pytest.raises(error) as err:
            call()
        _no_secrets(err.value, GCP_TOKEN, dk.wrapped, dk.plaintext)
        assert "'gkms'" in str(err.value)


def test_gcp_invalid_argument_on_encrypt_is_denied(gcp: FakeGcpKms, gcp_env: None) -> None:
    gcp.faults.append(_gcp_error(400, "INVALID_ARGUMENT", "key purpose is not ENCRYPT_DECRYPT"))
    with pytest.raises(KeyDenied, match="purpose"):
        _gcp(gcp).generate(CTX)


def test_gcp_integrity_checks(gcp: FakeGcpKms, gcp_env: None) -> None:
    provider = _gcp(gcp)  # max_attempts=2
    gcp.corrupt_ciphertexts = 1
    dk = provider.generate(CTX)  # the corrupted answer is discarded and the call retried
    assert gcp.paths().count(f"/v1/{GCP_KEY}:encrypt") == 2
    assert provider.unwrap(WrappedKey(dk.wrapped, dk.key_id, ""), CTX) == dk.plaintext
    gcp.corrupt_ciphertexts = 2
    with pytest.raises(KeyUnavailable, match="CRC32C"):
        provider.generate(CTX)
    gcp.unverified = True
    with pytest.raises(KeyUnavailable, match="CRC32C"):
        provider.generate(CTX)
    gcp.unverified = False
    gcp.faults.append(
        Reply(200, {"plaintext": base64.b64encode(dk.plaintext).decode(), "plaintextCrc32c": "1"})
    )
    gcp.faults.append(
        Reply(200, {"plaintext": base64.b64encode(dk.plaintext).decode(), "plaintextCrc32c": "1"})
    )
    with pytest.raises(KeyUnavailable, match="CRC32C"):
        provider.unwrap(WrappedKey(dk.wrapped, dk.key_id, ""), CTX)


def test_gcp_endpoint_down(gcp_env: None) -> None:
    provider = GcpKmsProvider(
        "gkms",
        GcpKmsConfig(key_name=GCP_KEY, endpoint=f"http://127.0.0.1:{_free_port()}"),
        sleep=lambda _: None,
    )
    with pytest.raises(KeyUnavailable, match="cannot reach"):
        provider.generate(CTX)


def test_gcp_config_model() -> None:
    cfg = GcpKmsConfig(key_name=GCP_KEY)
    assert cfg.type == "gcp-kms" and cfg.endpoint == "https://cloudkms.googleapis.com"
    assert (cfg.access_token_env, cfg.access_token_file, cfg.quota_project, cfg.ca_file) == (
        "GOOGLE_OAUTH_ACCESS_TOKEN",
        None,
        None,
        None,
    )
    assert (cfg.connect_timeout_seconds, cfg.read_timeout_seconds, cfg.max_attempts) == (3, 5, 2)
    assert cfg.version_cache_seconds == 60
    for bad in (
        {"key_name": "projects/p/locations/l/keyRings/r"},
        {"key_name": GCP_KEY + "/cryptoKeyVersions/1"},
        {"key_name": "projects/p/../x/locations/l/keyRings/r/cryptoKeys/k"},
        {"endpoint": "http://cloudkms.example.com"},
        {"token": "x"},
    ):
        with pytest.raises(ValidationError):
            GcpKmsConfig(**{"key_name": GCP_KEY, **bad})


# ================================================================================================
# all three
# ================================================================================================

AnyKmsConfig = Annotated[
    AwsKmsConfig | VaultTransitConfig | GcpKmsConfig, Field(discriminator="type")
]


def test_configs_form_a_discriminated_union() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(AnyKmsConfig)
    assert isinstance(adapter.validate_python({"type": "aws-kms", "key_id": "k"}), AwsKmsConfig)
    vault_cfg = adapter.validate_python(
        {"type": "vault-transit", "address": "https://v", "key_name": "k"}
    )
    assert isinstance(vault_cfg, VaultTransitConfig)
    assert isinstance(
        adapter.validate_python({"type": "gcp-kms", "key_name": GCP_KEY}), GcpKmsConfig
    )
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "aws-kms", "key_name": GCP_KEY})
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "azure", "key_id": "k"})


def test_providers_satisfy_the_protocol(
    moto_url: str, kms_key: str, vault: FakeVault, vault_env: None, gcp: FakeGcpKms, gcp_env: None
) -> None:
    providers: list[KeyProvider] = [_aws(moto_url, kms_key), _vault(vault), _gcp(gcp)]
    kinds = []
    for provider in providers:
        kinds.append(provider.kind)
        dk = provider.generate(CTX)
        assert "plaintext" not in repr(dk) and dk.plaintext.hex() not in repr(dk)
        stored = WrappedKey(dk.wrapped, dk.key_id, dk.key_version)
        rewrapped = provider.rewrap(stored, CTX)
        assert provider.unwrap(rewrapped, CTX) == dk.plaintext
        assert isinstance(provider.current_version(), str)
        assert "token" not in repr(provider)
        if provider.kind == "vault-transit":
            # A non-derived transit key does not bind the context: the barrier's AEAD
            # associated data binds the path instead (see the module docstring).
            assert provider.unwrap(stored, OTHER_CTX) == dk.plaintext
        else:
            with pytest.raises(KeyInvalid):
                provider.unwrap(stored, OTHER_CTX)
        with pytest.raises(KeyProviderError):
            provider.unwrap(WrappedKey(b"garbage", dk.key_id, ""), CTX)
    assert kinds == ["aws-kms", "vault-transit", "gcp-kms"]
