"""AWS fixtures: moto in server mode on loopback (KMS per module, S3 per session), dummy
credentials, keys.

Registered for every test module by ``conftest.py`` (``pytest_plugins``). moto 5.2.1 does not
enforce key state; ``kms_backend`` adds the check real KMS makes (disabled ->
``DisabledException``, pending deletion -> ``KMSInvalidStateException``) to moto's backend and
lets a test inject errors that moto then answers over the wire like any other KMS error.

``s3_url`` is one moto server for the whole session: the blob store of the PostgreSQL+S3 store
(tests/harness/pg.py), where each data directory gets a bucket of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core.exceptions import JsonRESTError
from moto.kms.models import KmsBackend
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
#: The environment every AWS client of the tests gets: dummy credentials, no shared config, no
#: instance metadata lookups (no network). ``AWS_CONFIG_FILE``/``AWS_SHARED_CREDENTIALS_FILE``
#: point at files that do not exist.
_AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_KMS",
    "AWS_ENDPOINT_URL_S3",
)


def aws_test_env(missing: Path) -> dict[str, str]:
    """The variables to set (``missing``: a path that does not exist)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(missing / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(missing / "no-aws-credentials"),
    }


def apply_aws_env(mp: pytest.MonkeyPatch, missing: Path) -> None:
    for var in _AWS_UNSET:
        mp.delenv(var, raising=False)
    for var, value in aws_test_env(missing).items():
        mp.setenv(var, value)


def s3_client(url: str) -> Any:
    """A boto3 S3 client for the moto server at ``url`` (explicit dummy credentials)."""
    return boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class _KmsInternal(JsonRESTError):
    code = 500


class KmsBackendControl:
    """Injected errors and call counts for moto's KMS backend (see ``kms_backend``)."""

    def __init__(self) -> None:
        self.faults: list[JsonRESTError] = []
        self.encrypt_calls = 0
        self.decrypt_calls = 0

    def fail_next(self, code: str, *, status: int = 400, times: int = 1) -> None:
        for _ in range(times):
            err = (_KmsInternal if status >= 500 else JsonRESTError)(code, f"injected {code}")
            self.faults.append(err)

    def _maybe_fail(self) -> None:
        if self.faults:
            raise self.faults.pop(0)


def _check_state(key: Any) -> None:
    # What AWS KMS answers for a cryptographic operation on a key that is not enabled.
    if key.key_state == "Disabled":
        raise JsonRESTError("DisabledException", f"{key.arn} is disabled.")
    if key.key_state == "PendingDeletion":
        raise JsonRESTError("KMSInvalidStateException", f"{key.arn} is pending deletion.")


@pytest.fixture(scope="module")
def kms_backend() -> Iterator[KmsBackendControl]:
    control = KmsBackendControl()
    orig_encrypt = KmsBackend.encrypt
    orig_decrypt = KmsBackend.decrypt

    def encrypt(self: KmsBackend, key_id: str, plaintext: bytes, encryption_context: Any) -> Any:
        control.encrypt_calls += 1
        control._maybe_fail()
        _check_state(self.keys[self.any_id_to_key_id(key_id)])
        return orig_encrypt(self, key_id, plaintext, encryption_context)

    def decrypt(
        self: KmsBackend, ciphertext_blob: bytes, encryption_context: Any, key_id: Any = None
    ) -> Any:
        control.decrypt_calls += 1
        control._maybe_fail()
        plaintext, arn = orig_decrypt(self, ciphertext_blob, encryption_context, key_id)
        _check_state(self.keys[self.get_key_id(arn)])
        return plaintext, arn

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KmsBackend, "encrypt", encrypt)
        mp.setattr(KmsBackend, "decrypt", decrypt)
        yield control


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto in server mode on a free loopback port; yields its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        server._server.server_close()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def moto_url(kms_backend: KmsBackendControl) -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    """moto's S3 (and the rest of moto) in server mode, once per session."""
    with moto_server() as url:
        yield url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials; no shared config, no instance metadata lookups (no network)."""
    apply_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def kms_admin(moto_url: str, aws_env: None) -> Any:
    return boto3.client("kms", region_name=REGION, endpoint_url=moto_url)


@pytest.fixture
def kms_key(kms_admin: Any) -> str:
    """A fresh symmetric key's ARN."""
    return str(kms_admin.create_key(Description="stateward test")["KeyMetadata"]["Arn"])


def _key_uuid(arn: str) -> str:
    return arn.rsplit("/", 1)[1]  # moto's key-state calls take the key id, not the ARN
