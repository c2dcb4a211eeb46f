"""The one mapping from service errors to HTTP statuses (transports choose status codes)."""

from __future__ import annotations

import math

from starlette.responses import Response

from stateward.common.text import one_line
from stateward.domain.errors import Locked, ServiceError, Throttled, Unauthorized, Unavailable

RETRY_AFTER_SECONDS = "5"

def status_for(exc: ServiceError) -> int:
    return exc.status




def text_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A one-line plain-text error: what a human (or Terraform's log) reads."""
    line = one_line(message)
    return Response(f"{line}\n", status_code=status, media_type="text/plain", headers=headers)


#: Terraform's http backend only has Basic auth; the challenge tells any client what to send.
CHALLENGE = {"WWW-Authenticate": 'Basic realm="stateward", charset="UTF-8"'}


def error_headers(exc: ServiceError) -> dict[str, str] | None:
    """Headers a refusal needs: the auth challenge, or when to retry."""
    if isinstance(exc, Unauthorized):
        return CHALLENGE
    if isinstance(exc, Throttled):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    if isinstance(exc, Unavailable) and exc.retry:
        return {"Retry-After": RETRY_AFTER_SECONDS}
    return None


def protocol_error(exc: ServiceError) -> Response:
    """Map a service error for the Terraform protocol. A lock conflict returns the holder's
    LockInfo JSON as the body, because clients parse it to print the holder and to retry."""
    status = status_for(exc)
    if isinstance(exc, Locked):
        return Response(exc.holder, status_code=423, media_type="application/json")
    return text_error(status, str(exc), error_headers(exc))
