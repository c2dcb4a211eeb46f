"""Storage's own errors; the service turns them into its own (``service/uow.py``,
``service/versions.py``): nothing above storage sees a driver's exception."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """``str(exc)`` is one line naming the store and what failed (never a credential);
    ``retry`` says whether the same request may pass later without an operator acting."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class ValueRefused(Exception):
    """The store cannot hold a value (a NUL character in PostgreSQL text, an integer past 64
    bits); the message names what, never the value."""


class DuplicateRow(Exception):
    """An insert met a row with the same unique key (a concurrent insert won the race)."""
