"""The service's error hierarchy.

Each class carries the status code the transports answer with (``status``) and whether the
audit trail counts it as a refusal (``denied``) or a failure; nothing below the service raises
HTTP concepts.
Messages are one line, safe to show to a client, and never contain state content or secrets.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base for every refusal the service makes. ``str(err)`` is the client-facing line."""

    status = 500
    denied = False


class BadRequest(ServiceError):
    """The input is malformed (invalid JSON, not a state, bad path, bad lock info)."""

    status = 400


class TooLarge(ServiceError):
    """A client-controlled size exceeded its configured limit."""

    status = 413


class NotFound(ServiceError):
    """The path or version does not exist (or is soft-deleted)."""

    status = 404


class Conflict(ServiceError):
    """The request contradicts the current state: guards, lock ID mismatch, protected path."""

    status = 409


class Unauthorized(ServiceError):
    """No credential, or one that is unknown, expired, revoked or fails verification."""

    status = 401
    denied = True


class Throttled(ServiceError):
    """Too many failed authentications from this address or for this token name."""

    status = 429
    denied = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Forbidden(ServiceError):
    """The principal may not do this, or the path's policy refuses it."""

    status = 403
    denied = True


class Locked(ServiceError):
    """The path is locked by someone else; ``holder`` is the raw LockInfo JSON of the holder."""

    status = 423

    def __init__(self, message: str, holder: bytes) -> None:
        super().__init__(message)
        self.holder = holder


class Unavailable(ServiceError):
    """A dependency (store, key service) is not reachable or refuses; ``retry`` says whether
    the request may pass later without an operator acting (then 503 carries Retry-After)."""

    status = 503

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry
