"""Storage: all the SQL (SQLAlchemy Core on SQLite or PostgreSQL: ``schema``, ``engine``,
``migrations`` and one repository module per table group, returning ``records``) and the blob
stores (files, S3). Everything here is ciphertext-agnostic and imports nothing above it."""

from stateward.storage.blobs import BlobStore, FileBlobStore
from stateward.storage.errors import StoreUnavailable

__all__ = ["BlobStore", "FileBlobStore", "StoreUnavailable"]
