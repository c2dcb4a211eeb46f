"""Read-only AWS access for the audit: clients, and errors turned into "not checked".

Every call goes through :func:`call`: an error code that means "not configured" for that API
(``NoSuchBucketPolicy`` …) becomes :data:`ABSENT`; any other error (AccessDenied, an API the
endpoint does not implement, a network failure) raises :class:`Unchecked` with a one-line
reason, which the check records as *not checked* — never as passed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

#: A call's answer when the resource or setting does not exist (see :func:`call`).
ABSENT: Final = object()

#: How long one read may take; the audit is interactive and retried by hand.
_CONNECT_TIMEOUT = 5.0
_READ_TIMEOUT = 30.0
_ATTEMPTS = 4


class Unchecked(Exception):
    """The API refused or failed: the checks depending on it are not checked."""


def _reason(api: str, exc: Exception) -> str:
    import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]

    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = err.get("Code") or "error"
        return f"{api}: {code} (HTTP {status})"
    if isinstance(exc, botocore.exceptions.BotoCoreError | ValueError | KeyError):
        # ValueError/KeyError: botocore failing to parse an answer (an endpoint that does
        # not implement the API returns something else)
        return f"{api}: {type(exc).__name__}"
    raise exc


def call(
    api: str, fn: Callable[..., Any], *, absent: tuple[str, ...] = (), **kwargs: Any
) -> Any:
    """``fn(**kwargs)``; :data:`ABSENT` for the error codes in ``absent``."""
    import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]

    try:
        return fn(**kwargs)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in absent:
            return ABSENT
        raise Unchecked(_reason(api, exc)) from None
    except (botocore.exceptions.BotoCoreError, ValueError, KeyError) as exc:
        raise Unchecked(_reason(api, exc)) from None


def _strip_account_host(request: Any, **_: Any) -> None:
    """botocore sends S3 Control requests to ``<account>.<endpoint host>``. An endpoint given
    as an IP address or ``localhost`` (an S3-compatible service, a proxy) cannot have such a
    name, so the account label is dropped there; DNS names are left as botocore made them."""
    import ipaddress
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(request.url)
    label, _, rest = parts.netloc.partition(".")
    host = rest.rsplit(":", 1)[0].strip("[]")
    if not (label.isdigit() and len(label) == 12 and rest):
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            return
    request.url = urlunsplit(parts._replace(netloc=rest))


@dataclass
class Clients:
    """The boto3 clients of one audit, made on first use (so an unused service needs no
    credentials and no permission)."""

    region: str | None
    endpoint_url: str | None
    profile: str | None = None
    _made: dict[str, Any] = field(default_factory=dict)

    def get(self, service: str) -> Any:
        if service not in self._made:
            from stateward.common.aws import boto_client

            client = boto_client(
                service,
                region=self.region,
                endpoint_url=self.endpoint_url,
                connect_timeout=_CONNECT_TIMEOUT,
                read_timeout=_READ_TIMEOUT,
                max_attempts=_ATTEMPTS,
                profile=self.profile,
            )
            if service == "s3control" and self.endpoint_url:
                client.meta.events.register("before-sign.s3-control", _strip_account_host)
            self._made[service] = client
        return self._made[service]

    @property
    def s3(self) -> Any:
        return self.get("s3")


def account_id(clients: Clients) -> str:
    """The caller's account (STS); raises Unchecked."""
    ident = call("sts:GetCallerIdentity", clients.get("sts").get_caller_identity)
    return str(ident["Account"])
