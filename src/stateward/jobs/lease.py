"""What a job needs of its lease (``storage/leases.py`` implements it): ask before each step,
give it up on shutdown."""

from __future__ import annotations

from typing import Protocol


class JobLease(Protocol):
    @property
    def ttl(self) -> float: ...

    def held(self) -> bool: ...

    def release(self) -> None: ...
