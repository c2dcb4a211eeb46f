"""Storage's own error: a store (a bucket, a database) that cannot be used right now. The
service turns it into its ``Unavailable`` (``service/versions.py``)."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """``str(exc)`` is one line naming the store and what failed (never a credential);
    ``retry`` says whether the same request may pass later without an operator acting."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry
