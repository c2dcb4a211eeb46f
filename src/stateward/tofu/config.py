"""The encryption description: OpenTofu's ``encryption {}`` block as Python dataclasses.

Names follow the HCL 1:1 (``key_provider``, ``method``, ``keys``, ``state``, ``plan``,
``fallback``, ``enforced``, ``encrypted_metadata_alias``) so a block translates line by line;
secrets are *pointers* (:class:`SecretSource`) resolved only when a target is built.
:mod:`stateward.tofu.loader` builds these from TOML or JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from stateward.tofu.providers.pbkdf2 import Pbkdf2Params
from stateward.tofu.secret import Secret, SecretSource


@dataclass(frozen=True)
class Ref:
    """A reference such as ``key_provider.pbkdf2.main`` or ``method.aes_gcm.m``."""

    kind: Literal["key_provider", "method"]
    type: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}.{self.type}.{self.name}"


@dataclass(frozen=True)
class Pbkdf2Config:
    name: str
    passphrase: SecretSource
    params: Pbkdf2Params = field(default_factory=Pbkdf2Params)
    encrypted_metadata_alias: str | None = None
    type: Literal["pbkdf2"] = "pbkdf2"


@dataclass(frozen=True)
class AwsKmsConfig:
    name: str
    kms_key_id: str
    key_spec: str
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    encrypted_metadata_alias: str | None = None
    type: Literal["aws_kms"] = "aws_kms"


@dataclass(frozen=True)
class OpenBaoConfig:
    name: str
    key_name: str
    #: ``None``: the ``BAO_TOKEN`` environment variable, read when the provider is built.
    token: SecretSource | None = None
    #: ``None``: ``BAO_ADDR``, else ``https://127.0.0.1:8200``.
    address: str | None = None
    key_length: int = 32
    transit_engine_path: str | None = None
    encrypted_metadata_alias: str | None = None
    type: Literal["openbao"] = "openbao"


KeyProviderConfig = Pbkdf2Config | AwsKmsConfig | OpenBaoConfig

#: A raw key: inline bytes (a list of numbers, as in HCL) or an environment variable (base64).
RawKey = Secret | SecretSource


@dataclass(frozen=True)
class RawKeys:
    """``keys = { encryption_key = […], decryption_key = […] }``: no provider, empty ``meta``."""

    encryption_key: RawKey | None
    decryption_key: RawKey | None


@dataclass(frozen=True)
class AesGcmConfig:
    name: str
    keys: Ref | RawKeys
    aad: bytes | None = None
    type: Literal["aes_gcm"] = "aes_gcm"


@dataclass(frozen=True)
class UnencryptedConfig:
    """``method "unencrypted" "<name>" {}``: lets plaintext in (migration) or out (rollback)."""

    name: str
    type: Literal["unencrypted"] = "unencrypted"


MethodConfig = AesGcmConfig | UnencryptedConfig


@dataclass(frozen=True)
class TargetConfig:
    """A ``state {}`` or ``plan {}`` block: writes use ``method``; reads try the chain."""

    method: Ref
    fallback: tuple[Ref, ...] = ()
    enforced: bool = False

    @property
    def chain(self) -> tuple[Ref, ...]:
        return (self.method, *self.fallback)


@dataclass(frozen=True)
class EncryptionConfig:
    """The whole description; providers and methods are keyed by their address string."""

    key_providers: Mapping[str, KeyProviderConfig]
    methods: Mapping[str, MethodConfig]
    state: TargetConfig | None = None
    plan: TargetConfig | None = None

    def target(self, kind: Literal["state", "plan"]) -> TargetConfig | None:
        return self.state if kind == "state" else self.plan
