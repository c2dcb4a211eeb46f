"""One place for the SQL that differs between SQLite and PostgreSQL."""

from __future__ import annotations

from functools import cache

from sqlalchemy import Connection, Insert, Table
from sqlalchemy.dialects import postgresql, sqlite


@cache
def _insert_if_absent(table: Table, key: tuple[str, ...], dialect: str) -> Insert:
    """``INSERT … ON CONFLICT (key) DO NOTHING``, built once per table and dialect.

    ``preserve_rowcount``: SQLAlchemy keeps an INSERT's rowcount only when asked (psycopg
    reports -1 once the cursor is closed; sqlite3 happens to keep it)."""
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        make(table)
        .on_conflict_do_nothing(index_elements=list(key))
        .execution_options(preserve_rowcount=True)
    )


def insert_if_absent(
    conn: Connection, table: Table, key: tuple[str, ...], values: dict[str, object]
) -> bool:
    """Insert ``values`` unless a row with the same ``key`` exists; True if inserted. Atomic:
    the database's unique index decides, so two concurrent callers never both insert."""
    dialect = "postgresql" if conn.dialect.name == "postgresql" else "sqlite"
    return bool(conn.execute(_insert_if_absent(table, key, dialect), values).rowcount == 1)
