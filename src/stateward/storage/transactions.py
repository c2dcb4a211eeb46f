"""Transactions as the service uses them, with the database driver's errors turned into
storage's own (``storage/errors.py``): the service never sees SQLAlchemy.

``write`` begins a write transaction (``BEGIN IMMEDIATE`` on SQLite, the advisory lock on
PostgreSQL: ``storage/engine.py``); ``read`` a read-only one that never queues behind writers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from stateward.storage.engine import READ_ONLY
from stateward.storage.errors import DuplicateRow, StoreUnavailable, ValueRefused

__all__ = ["Connection", "Engine", "read", "write"]

STORE_DOWN = "metadata store is unavailable, retry later"


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """One write transaction: committed when the block ends, rolled back if it raises."""
    with _translated(), engine.begin() as conn:
        yield conn


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """One read-only transaction: one snapshot of the store."""
    with _translated(), engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        with conn.begin():
            yield conn


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        raise StoreUnavailable(STORE_DOWN) from exc
    except IntegrityError as exc:
        raise DuplicateRow("the store already holds a row with that key") from exc
    except DataError as exc:
        # A value the store refuses to hold (PostgreSQL: a NUL character in text, an integer
        # past 64 bits); SQLite stores the former. Never echo the value.
        raise ValueRefused(_data_error_reason(exc)) from exc


def _data_error_reason(exc: DataError) -> str:
    text = str(exc.orig)
    if "NUL" in text:
        return "the request holds a NUL character, which the metadata store cannot hold"
    if "out of range" in text:
        return "the request holds a number out of the metadata store's range"
    return "the request holds a value the metadata store cannot hold"
