"""The ``tokens`` table: API tokens by keyed hash of their secret (never the secret)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, or_, select, update

from stateward.storage.records import TokenRecord, record
from stateward.storage.schema import tokens

_BY_HASH = select(tokens).where(tokens.c.hash == bindparam("hash"))
# Compare-and-set, so concurrent requests with one token write at most once per interval.
_TOUCH = (
    update(tokens)
    .where(
        tokens.c.id == bindparam("tid"),
        or_(tokens.c.last_used_at.is_(None), tokens.c.last_used_at <= bindparam("stale")),
    )
    .values(last_used_at=bindparam("now"))
)


def insert_token(conn: Connection, **values: Any) -> None:
    conn.execute(insert(tokens).values(**values))


def get_by_hash(conn: Connection, digest: str) -> TokenRecord | None:
    row = conn.execute(_BY_HASH, {"hash": digest}).first()
    return None if row is None else record(TokenRecord, row)


def get_by_name(conn: Connection, name: str) -> TokenRecord | None:
    row = conn.execute(select(tokens).where(tokens.c.name == name)).first()
    return None if row is None else record(TokenRecord, row)


def list_tokens(conn: Connection) -> list[TokenRecord]:
    rows = conn.execute(select(tokens).order_by(tokens.c.created_at, tokens.c.id))
    return [record(TokenRecord, r) for r in rows]


def count_tokens(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(tokens)).scalar_one())


def revoke(conn: Connection, name: str, now: float) -> int:
    stmt = (
        update(tokens)
        .where(tokens.c.name == name, tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(conn.execute(stmt).rowcount)


def touch(conn: Connection, token_id: int, now: float, interval: float) -> bool:
    """Set ``last_used_at`` unless it was set less than ``interval`` seconds ago."""
    params = {"tid": token_id, "now": now, "stale": now - interval}
    return bool(conn.execute(_TOUCH, params).rowcount == 1)
