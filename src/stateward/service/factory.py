"""Assemble a StateService from settings (the embedded default: SQLite + files)."""

from __future__ import annotations

import os

from stateward.config import Settings
from stateward.crypto.barrier import Barrier
from stateward.service.core import StateService
from stateward.storage.blobs import FileBlobStore
from stateward.storage.engine import init_schema, sqlite_engine


def build_service(settings: Settings) -> StateService:
    """Open (creating if needed) the data directory and return a ready service."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    engine = sqlite_engine(settings.db_path)
    init_schema(engine)
    return StateService(settings, engine, Barrier(FileBlobStore(settings.blob_dir)))
