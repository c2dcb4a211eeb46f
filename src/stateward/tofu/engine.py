"""Encrypt and decrypt one target (state or plan) with its method chain.

Writes use the primary method only. Reads try the primary, then each fallback in order; success
on a fallback is a *migration* (OpenTofu then rewrites with the primary), which callers surface
so an operator knows old-format data is still around.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from stateward.tofu import envelope
from stateward.tofu.config import (
    AesGcmConfig,
    AwsKmsConfig,
    EncryptionConfig,
    KeyProviderConfig,
    OpenBaoConfig,
    Pbkdf2Config,
    Ref,
    UnencryptedConfig,
)
from stateward.tofu.envelope import Envelope, Kind
from stateward.tofu.errors import ConfigError, DecryptionError, FormatError, TofuError
from stateward.tofu.methods import AesGcm, Method, Unencrypted, resolve_raw_key
from stateward.tofu.providers.aws_kms import AwsKmsProvider
from stateward.tofu.providers.base import KeyProvider
from stateward.tofu.providers.openbao import OpenBaoProvider
from stateward.tofu.providers.pbkdf2 import Pbkdf2Provider
from stateward.tofu.rand import RandomSource, system_random
from stateward.tofu.secret import Secret


@dataclass(frozen=True)
class DecryptResult:
    plaintext: bytes
    #: Address of the method that accepted the payload (``method.unencrypted.x`` for plaintext).
    method: str
    #: True when that method is not the primary: the data should be rewritten with the primary.
    migration: bool
    #: False when the input was already plaintext.
    was_encrypted: bool


class TargetEncryption:
    """The ``state {}`` or ``plan {}`` target of a configuration, built and ready."""

    def __init__(self, kind: Kind, chain: list[Method]) -> None:
        if not chain:
            raise ConfigError(f"{kind}: no method configured")
        self.kind = kind
        self.chain = chain

    @property
    def primary(self) -> Method:
        return self.chain[0]

    def encrypt(self, plaintext: bytes, rng: RandomSource = system_random) -> bytes:
        """The envelope for ``plaintext`` (or ``plaintext`` itself if the primary is
        ``unencrypted``). Refuses input that is not a plaintext of this kind, including
        input that is already encrypted."""
        doc = envelope.try_json_object(plaintext) if self.kind == "state" else None
        if envelope.claims_encryption(doc):
            raise FormatError(f"the input is already an encrypted {self.kind}")
        problem = envelope.plaintext_problem(plaintext, self.kind, doc)
        if problem is not None:
            raise FormatError(f"the input is not a plaintext {self.kind}: {problem}")
        if isinstance(self.primary, Unencrypted):
            return plaintext
        clear = envelope.state_clear_fields(plaintext) if self.kind == "state" else None
        data, meta = self.primary.encrypt(plaintext, rng)
        return Envelope(meta=meta, encrypted_data=data, clear=clear).serialize(self.kind)

    def decrypt(self, payload: bytes) -> DecryptResult:
        """Decrypt ``payload`` (or accept it as plaintext if an ``unencrypted`` method allows)."""
        doc = envelope.try_json_object(payload) if not payload.startswith(b"PK") else None
        if not envelope.claims_encryption(doc):
            return self._accept_plaintext(payload, doc)
        assert doc is not None
        env = envelope.parse(doc, self.kind)
        failures: list[str] = []
        for index, method in enumerate(self.chain):
            if isinstance(method, Unencrypted):
                continue
            try:
                plaintext = method.decrypt(env.encrypted_data, env.meta)
            except TofuError as exc:
                failures.append(f"{method.address}: {exc}")
                continue
            self._check_clear(env, plaintext)
            return DecryptResult(plaintext, method.address, index > 0, was_encrypted=True)
        if not failures:
            raise DecryptionError(
                f"the {self.kind} is encrypted but only unencrypted methods are configured"
            )
        raise DecryptionError(
            f"cannot decrypt the {self.kind} with any configured method: " + "; ".join(failures)
        )

    def _accept_plaintext(self, payload: bytes, doc: dict[str, object] | None) -> DecryptResult:
        problem = envelope.plaintext_problem(payload, self.kind, doc)
        if problem is not None:
            raise FormatError(
                f"the input is neither an OpenTofu-encrypted {self.kind} nor a plaintext "
                f"{self.kind}: {problem}"
            )
        for index, method in enumerate(self.chain):
            if isinstance(method, Unencrypted):
                return DecryptResult(payload, method.address, index > 0, was_encrypted=False)
        raise DecryptionError(
            f"the {self.kind} is not encrypted and no unencrypted method is configured "
            "(add one as a fallback to migrate)"
        )

    def _check_clear(self, env: Envelope, plaintext: bytes) -> None:
        """The clear serial/lineage must be the plaintext's: a mismatch means tampering."""
        if self.kind != "state" or env.clear is None:
            return
        try:
            inner = envelope.state_clear_fields(plaintext)
        except FormatError:
            raise DecryptionError("the decrypted state is not a JSON object") from None
        if inner.serial != env.clear.serial:
            raise DecryptionError(
                f"the envelope's clear serial ({env.clear.serial}) differs from the decrypted "
                f"state's ({inner.serial}): the file was altered"
            )
        if inner.lineage != env.clear.lineage:
            raise DecryptionError(
                "the envelope's clear lineage differs from the decrypted state's: "
                "the file was altered"
            )


def build_target(config: EncryptionConfig, kind: Kind) -> TargetEncryption:
    """Build ``kind``'s chain: resolves secrets and contacts nothing yet (KMS/OpenBao calls
    happen on encrypt/decrypt). Only providers the chain uses are built."""
    target = config.target(kind)
    if target is None:
        raise ConfigError(f"the configuration has no {kind} {{}} target")
    providers: dict[str, KeyProvider] = {}
    chain: list[Method] = []
    for ref in target.chain:
        method_cfg = config.methods[str(ref)]
        if isinstance(method_cfg, UnencryptedConfig):
            chain.append(Unencrypted(method_cfg.name))
            continue
        assert isinstance(method_cfg, AesGcmConfig)
        chain.append(_aes_gcm(config, method_cfg, providers))
    return TargetEncryption(kind, chain)


def _aes_gcm(
    config: EncryptionConfig, cfg: AesGcmConfig, providers: dict[str, KeyProvider]
) -> AesGcm:
    if isinstance(cfg.keys, Ref):
        addr = str(cfg.keys)
        if addr not in providers:
            providers[addr] = build_provider(config.key_providers[addr])
        return AesGcm(cfg.name, provider=providers[addr], aad=cfg.aad)
    return AesGcm(
        cfg.name,
        encryption_key=resolve_raw_key(cfg.keys.encryption_key),
        decryption_key=resolve_raw_key(cfg.keys.decryption_key),
        aad=cfg.aad,
    )


def build_provider(cfg: KeyProviderConfig) -> KeyProvider:
    """A key provider from its configuration (secrets are read here)."""
    alias = cfg.encrypted_metadata_alias
    if isinstance(cfg, Pbkdf2Config):
        return Pbkdf2Provider(cfg.name, cfg.passphrase.resolve(), cfg.params, alias)
    if isinstance(cfg, AwsKmsConfig):
        return AwsKmsProvider(
            cfg.name,
            kms_key_id=cfg.kms_key_id,
            key_spec=cfg.key_spec,
            region=cfg.region,
            endpoint_url=cfg.endpoint_url,
            profile=cfg.profile,
            alias=alias,
        )
    assert isinstance(cfg, OpenBaoConfig)
    token = cfg.token.resolve() if cfg.token is not None else _env_secret("BAO_TOKEN")
    return OpenBaoProvider(
        cfg.name,
        key_name=cfg.key_name,
        token=token,
        address=cfg.address or os.environ.get("BAO_ADDR") or None,
        key_length=cfg.key_length,
        transit_engine_path=cfg.transit_engine_path,
        alias=alias,
    )


def _env_secret(name: str) -> Secret | None:
    value = os.environ.get(name)
    return Secret(value.encode("utf-8")) if value else None
