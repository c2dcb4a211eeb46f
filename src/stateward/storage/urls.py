"""Database URLs: validating ``database_url``, showing it without its password, and telling two
stores apart (``migrate-store`` refuses to copy a store onto itself)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SUPPORTED = "postgresql+psycopg://user:password@host:5432/db"


def normalize_database_url(value: str) -> str:
    """``value`` as a PostgreSQL URL the engine accepts (``postgresql://`` means psycopg);
    raises ValueError with a one-line reason that never shows the password."""
    try:
        url = make_url(value.strip())
    except ArgumentError:
        raise ValueError(f"database_url is not a URL; use {SUPPORTED}") from None
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername != "postgresql+psycopg" or not url.database:
        raise ValueError(
            f"database_url {url.render_as_string(hide_password=True)!r} is not supported: "
            f"use {SUPPORTED} (unset = embedded SQLite)"
        )
    return url.render_as_string(hide_password=False)


def display_database_url(url: str) -> str:
    """The URL for messages and logs, never with its password."""
    return make_url(url).render_as_string(hide_password=True)


def store_identity(database_url: str | None, db_path: Path) -> str:
    """What names a metadata store: the SQLite file, or the PostgreSQL host, port and
    database (two URLs with other users or options still name the same store)."""
    if database_url is None:
        return f"sqlite:{db_path.resolve()}"
    url = make_url(database_url)
    return f"postgresql:{url.host}:{url.port or 5432}/{url.database}"
