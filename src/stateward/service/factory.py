"""Assemble a StateService from settings: metadata in the embedded SQLite database (default) or
in PostgreSQL (``database_url``); blobs in files under the data directory (default) or in an S3
bucket (``[blob_store] type = "s3"``)."""

from __future__ import annotations

import logging
import os

from stateward.config import Settings
from stateward.crypto.barrier import Barrier
from stateward.crypto.keyring import KeyRing
from stateward.crypto.providers.aws_kms import AwsKmsConfig, AwsKmsProvider
from stateward.crypto.providers.base import KeyProvider
from stateward.crypto.providers.gcp_kms import GcpKmsProvider
from stateward.crypto.providers.local import (
    KeyfileConfig,
    KeyfileProvider,
    PassphraseConfig,
    PassphraseProvider,
)
from stateward.crypto.providers.vault_transit import VaultTransitConfig, VaultTransitProvider
from stateward.domain.globs import glob_match
from stateward.service.core import StateService
from stateward.storage.blobs import BlobStore, FileBlobStore
from stateward.storage.engine import init_schema, postgres_engine, sqlite_engine
from stateward.storage.s3 import S3BlobStore
from stateward.storage.transactions import Engine

log = logging.getLogger("stateward")


def build_providers(settings: Settings) -> dict[str, KeyProvider]:
    """Instantiate every configured key provider, plus the default key file if not configured.

    Raises a provider error (KeyDenied) when a key cannot be loaded: the server must not start
    without its keys."""
    configs = dict(settings.key_providers)
    configs.setdefault("default", KeyfileConfig(create=True))
    providers: dict[str, KeyProvider] = {}
    for name, config in configs.items():
        if isinstance(config, KeyfileConfig):
            path = config.path or settings.data_dir / "master.key"
            providers[name] = KeyfileProvider(name, path, create=config.create)
        elif isinstance(config, PassphraseConfig):
            salt = settings.data_dir / "keys" / f"{name}.salt"
            providers[name] = PassphraseProvider(name, config, salt)
        elif isinstance(config, AwsKmsConfig):
            providers[name] = AwsKmsProvider(name, config)
        elif isinstance(config, VaultTransitConfig):
            providers[name] = VaultTransitProvider(name, config)
        else:
            providers[name] = GcpKmsProvider(name, config)
    return providers


def key_beside_data(settings: Settings, providers: dict[str, KeyProvider]) -> list[str]:
    """Key files stored inside the data directory (a copy of the directory holds the keys)."""
    data = settings.data_dir.resolve()
    out = []
    for p in providers.values():
        if isinstance(p, KeyfileProvider) and p.path.resolve().is_relative_to(data):
            out.append(f"{p.name} ({p.path})")
    return out


def metadata_engine(settings: Settings) -> Engine:
    """The metadata store's engine: PostgreSQL if ``database_url`` is set, else SQLite."""
    if settings.database_url is not None:
        log.debug("metadata store: %s", settings.database_display())
        return postgres_engine(settings.database_url)
    return sqlite_engine(settings.db_path)


def blob_store(settings: Settings) -> BlobStore:
    """The blob store: an S3 bucket if ``blob_store`` is configured, else files in data_dir."""
    if settings.blob_store is not None:
        log.debug("blob store: %r", settings.blob_store)
        return S3BlobStore(settings.blob_store)
    return FileBlobStore(settings.blob_dir)


def build_service(settings: Settings) -> StateService:
    """Open (creating if needed) the data directory and return a ready service."""
    data_dir = settings.data_dir
    if settings.database_url is None or settings.blob_store is None:
        # The embedded database or the blob files live here. On PostgreSQL + S3 nothing must:
        # the directory is made only by what needs it (default key files create their own).
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(data_dir, 0o700)
    engine = metadata_engine(settings)
    try:
        init_schema(engine)
        providers = build_providers(settings)
        blobs = blob_store(settings)
    except BaseException:
        engine.dispose()
        raise
    rules = [(glob, rule.provider) for rule in settings.encryption for glob in rule.paths]
    keys = KeyRing(
        providers,
        rules,
        "default",
        max_age=settings.data_key_max_age_seconds,
        max_uses=settings.data_key_max_uses,
        match=glob_match,
    )
    return StateService(settings, engine, Barrier(blobs, keys))
