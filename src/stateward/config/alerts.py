"""Configuration of alerts: ``[[alert_rules]]`` (what raises an alert) and ``[[alert_webhooks]]``
(where alerts are sent). Validated when the configuration loads, like every other setting, so a
typo in a rule stops the server instead of silently never alerting.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from stateward.common.net import is_loopback_host
from stateward.domain.policy_model import Glob, Network, TimeWindow

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
AlertKind = Literal[
    "delete",
    "rollback",
    "break-lock",
    "force-unlock",
    "unknown-network",
    "auth-failures",
    "mass-destroy",
    "guard-refusal",
    "long-lock",
    "decryption-failure",
    "rare-reader",
]
#: The severity of a rule that does not set one.
DEFAULT_SEVERITY: dict[str, Severity] = {
    "delete": "warning",
    "rollback": "warning",
    "break-lock": "warning",
    "force-unlock": "warning",
    "unknown-network": "warning",
    "auth-failures": "warning",
    "mass-destroy": "critical",
    "guard-refusal": "info",
    "long-lock": "warning",
    "decryption-failure": "critical",
    "rare-reader": "info",
}
_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_ENV_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
#: Shortest accepted webhook signing secret (bytes).
MIN_SECRET_BYTES = 16


def _principal_pattern(value: str) -> str:
    if not value or "*" in value[:-1]:
        raise ValueError(f"principal pattern {value!r}: a name, or a prefix ending in '*'")
    return value


PrincipalPattern = Annotated[str, AfterValidator(_principal_pattern)]


def principal_matches(patterns: tuple[str, ...], principal: str) -> bool:
    """``token:ci-prod`` matches itself; ``token:ci-*`` every principal starting ``token:ci-``."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if principal.startswith(pattern[:-1]):
                return True
        elif principal == pattern:
            return True
    return False


class _Rule(BaseModel):
    """What every rule has. ``paths``: only records (or locks) of a matching path alert (a
    record without a path, such as a store-wide API call, then never does); empty: any path.
    ``outside_windows``: alert only when the event time is outside all of these windows (none:
    always). ``ignore_principals``: principals (exact, or a prefix ending in ``*``) that never
    raise this rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    name: str = Field(pattern=_NAME_RE)
    severity: Severity | None = None
    paths: tuple[Glob, ...] = Field(default=(), max_length=64)
    outside_windows: tuple[TimeWindow, ...] = Field(default=(), max_length=32)
    ignore_principals: tuple[PrincipalPattern, ...] = Field(default=(), max_length=64)

    @property
    def level(self) -> Severity:
        return self.severity or DEFAULT_SEVERITY[self.kind]


class EventRule(_Rule):
    """A successful delete, rollback, break-lock (API or CLI) or force-unlock."""

    kind: Literal["delete", "rollback", "break-lock", "force-unlock"]


class UnknownNetworkRule(_Rule):
    """A successful or refused request from an address outside ``allowed_cidrs`` (the offline
    CLI and internal work have no address and never match). One alert per source address and
    principal per ``repeat_minutes`` (0: every request)."""

    kind: Literal["unknown-network"]
    allowed_cidrs: tuple[Network, ...] = Field(min_length=1, max_length=256)
    repeat_minutes: float = Field(default=60.0, ge=0, le=7 * 24 * 60)


class AuthFailuresRule(_Rule):
    """At least ``count`` failed authentications (401, and 429 while throttled) within
    ``window_minutes`` from one source address; with ``overall_count``, also that many from
    all addresses together. One alert per burst: after alerting, the same address (or the
    overall counter) alerts again only once ``window_minutes`` have passed."""

    kind: Literal["auth-failures"]
    count: int = Field(default=10, ge=1, le=1_000_000)
    window_minutes: float = Field(default=5.0, gt=0, le=24 * 60)
    overall_count: int | None = Field(default=None, ge=1, le=1_000_000)


class MassDestroyRule(_Rule):
    """A successful write whose managed resource count dropped by more than ``percent`` of the
    version it replaced, when that version had at least ``min_resources``."""

    kind: Literal["mass-destroy"]
    percent: float = Field(default=50.0, ge=0, lt=100)
    min_resources: int = Field(default=1, ge=1)


class GuardRefusalRule(_Rule):
    """A write refused by the lineage/serial guards (409). With ``lock_conflicts``, also a write
    refused for a lock ID that does not match or is not held (409)."""

    kind: Literal["guard-refusal"]
    lock_conflicts: bool = False


class LongLockRule(_Rule):
    """A lock held for longer than ``seconds``: one alert per lock ID."""

    kind: Literal["long-lock"]
    seconds: float = Field(gt=0, le=365 * 86_400)


class DecryptionFailureRule(_Rule):
    """A request failed (503) because a stored blob is unreadable or its data key does not
    unwrap: tampering, corruption or the wrong key."""

    kind: Literal["decryption-failure"]


class RareReaderRule(_Rule):
    """A principal successfully reads a path it has not read in the previous ``days`` days
    (including its first read ever). Noisy by nature: scope it with ``paths`` and
    ``ignore_principals``."""

    kind: Literal["rare-reader"]
    days: float = Field(default=30.0, gt=0, le=3650)


AlertRule = Annotated[
    EventRule
    | UnknownNetworkRule
    | AuthFailuresRule
    | MassDestroyRule
    | GuardRefusalRule
    | LongLockRule
    | DecryptionFailureRule
    | RareReaderRule,
    Field(discriminator="kind"),
]


def _unique_names(rules: list[AlertRule]) -> list[AlertRule]:
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"alert rule name {rule.name!r} is used twice")
        seen.add(rule.name)
    return rules


AlertRules = Annotated[list[AlertRule], AfterValidator(_unique_names)]




class WebhookConfig(BaseModel):
    """One receiver of alerts: a JSON POST signed with HMAC-SHA256 (docs/alerts.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: ``https://...``; plain ``http://`` only to a loopback address (a local relay).
    url: str = Field(max_length=2048)
    #: The signing secret: the name of an environment variable holding it, or a file.
    secret_env: str | None = Field(default=None, pattern=_ENV_RE)
    secret_file: Path | None = None
    #: Only alerts of these kinds (empty: every kind), of at least this severity.
    kinds: tuple[AlertKind, ...] = Field(default=(), max_length=16)
    min_severity: Severity = "info"
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: Attempts per alert; between them the delay starts at ``backoff_seconds`` and doubles.
    max_attempts: int = Field(default=5, ge=1, le=10)
    backoff_seconds: float = Field(default=1.0, gt=0, le=60)
    #: CA bundle (PEM) to verify the receiver's certificate (default: the system's CAs).
    ca_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        try:
            parts = urlsplit(v)
            _ = parts.port  # raises on a bad port
        except ValueError:
            raise ValueError("webhook url is not a valid URL") from None
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("webhook url must be https://host/...")
        if parts.username is not None or parts.password is not None:
            raise ValueError("webhook url must not carry credentials; use secret_env/_file")
        if parts.fragment or re.search(r"[\s\x00-\x1f]", v):
            raise ValueError("webhook url must not have a fragment or whitespace")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError(
                "webhook url must be https (plain http is allowed only to a loopback address)"
            )
        return v

    @field_validator("secret_env")
    @classmethod
    def _not_ours(cls, v: str | None) -> str | None:
        if v is not None and v.upper().startswith("STATEWARD_"):
            raise ValueError(
                "secret_env must not start with STATEWARD_ (those variables are settings)"
            )
        return v

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookConfig:
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("a webhook needs exactly one of secret_env or secret_file")
        return self

    @property
    def label(self) -> str:
        """``scheme://host:port``: how logs name the webhook (a path can hold a secret, as in
        Slack's incoming-webhook URLs, so it is never logged)."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.scheme}://{parts.hostname}:{port}"
