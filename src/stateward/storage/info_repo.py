"""The ``schema_info`` table: facts about the store (schema revision, key fingerprints)."""

from __future__ import annotations

from sqlalchemy import Connection, func, insert, select

from stateward.storage.schema import schema_info


def get(conn: Connection, key: str) -> str | None:
    value = conn.execute(select(schema_info.c.value).where(schema_info.c.key == key)).scalar()
    return None if value is None else str(value)


def put_new(conn: Connection, key: str, value: str) -> None:
    conn.execute(insert(schema_info).values(key=key, value=value))


def ping(conn: Connection) -> None:
    """One cheap query: the store answers."""
    conn.execute(select(func.count()).select_from(schema_info)).scalar_one()
