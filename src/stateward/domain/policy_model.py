"""The policy's configuration models: roles, rules, conditions (re-exported by ``policy``).

Everything is validated when the configuration loads, so a typo (an unknown action, a glob
with a stray character, a host address given as a network) stops the server at start-up
instead of silently granting more or less than intended. Models are frozen and hold tuples so
that the built-in roles cannot be altered at run time.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from stateward.domain.actions import GRANTS, Action
from stateward.domain.globs import validate_glob

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BUILTIN_ROLE_NAMES = frozenset({"admin", "writer", "reader", "outputs-reader"})
ROLE_NAME_RE = re.compile(r"^[a-z0-9-]{1,64}$")
_HHMM_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def is_everything(glob: str) -> bool:
    """True if ``glob`` matches every state path (``**``, ``**/*``, ``*/**`` …)."""
    segments = glob.split("/")
    return "**" in segments and all(s in ("*", "**") for s in segments)


def _parse_action(value: Any) -> Any:
    if value == "*" or isinstance(value, Action):
        return value
    try:
        return Action(value)
    except ValueError:
        known = ", ".join(a.value for a in Action)
        raise ValueError(f"unknown action {value!r}; expected '*' or one of: {known}") from None


def _parse_network(value: Any) -> Any:
    """Networks are parsed strictly: ``10.0.0.1/8`` is refused, as it is probably a typo."""
    if isinstance(value, str):
        try:
            return ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"invalid network {value!r}: {exc}") from None
    return value


def _check_hhmm(value: str) -> str:
    if not _HHMM_RE.match(value):
        raise ValueError(f"time {value!r} is not HH:MM (00:00 to 23:59)")
    return value


def _check_end(value: str) -> str:
    """``24:00`` ends a window at midnight, so a whole day can be written 00:00-24:00."""
    return value if value == "24:00" else _check_hhmm(value)


def _check_tz(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Paris)"
        ) from None
    return value


def check_role_name(name: str) -> str:
    """Role names appear in reasons shown to clients, so they stay in a plain alphabet."""
    if not ROLE_NAME_RE.match(name):
        raise ValueError(f"role name {name!r} must be 1-64 characters of a-z 0-9 -")
    if name in BUILTIN_ROLE_NAMES:
        raise ValueError(f"role name {name!r} is a built-in role; choose another name")
    return name


ActionSpec = Annotated[Action | Literal["*"], BeforeValidator(_parse_action)]
Glob = Annotated[str, AfterValidator(validate_glob)]
Network = Annotated[IPNetwork, BeforeValidator(_parse_network)]
RoleName = Annotated[str, AfterValidator(check_role_name)]


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class TimeWindow(BaseModel):
    """A recurring window such as a change window: ``days`` are the days the window *starts*
    on, so ``fri 22:00-02:00`` covers Friday night until Saturday 02:00 (local time in ``tz``,
    DST included). ``end`` is exclusive (``24:00`` allowed); ``start > end`` crosses midnight.
    Minutes are the resolution: 16:59:59 is inside a window ending at 17:00."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    days: tuple[Day, ...] = Field(default=DAYS, min_length=1)
    start: Annotated[str, AfterValidator(_check_hhmm)]
    end: Annotated[str, AfterValidator(_check_end)]
    tz: Annotated[str, AfterValidator(_check_tz)] = "UTC"

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("time window start and end are equal (an empty window)")
        return self

    def contains(self, now: dt.datetime) -> bool:
        """True if the aware datetime ``now`` falls inside the window."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("policy decisions need a timezone-aware time")
        local = now.astimezone(ZoneInfo(self.tz))
        minute = local.hour * 60 + local.minute
        start, end = _minutes(self.start), _minutes(self.end)
        today = DAYS[local.weekday()]
        if start < end:
            return today in self.days and start <= minute < end
        yesterday = DAYS[(local.weekday() - 1) % 7]
        return (today in self.days and minute >= start) or (yesterday in self.days and minute < end)


@lru_cache(maxsize=1024)
def _expand(
    actions: tuple[Action | Literal["*"], ...],
) -> tuple[frozenset[Action], frozenset[Action]]:
    """(named, granted) for an actions list; cached by value, because decisions run on every
    request and a cache on the model would go stale in ``model_copy(update=...)``."""
    named = frozenset(Action) if "*" in actions else frozenset(actions_of(actions))
    granted: set[Action] = set()
    for action in named:
        granted |= GRANTS[action]
    return named, frozenset(granted)


def actions_of(actions: tuple[Action | Literal["*"], ...]) -> list[Action]:
    return [a for a in actions if isinstance(a, Action)]


class Rule(BaseModel):
    """Allow or deny ``actions`` on ``paths``, optionally only from ``cidrs`` and only inside
    ``windows`` (each list matches if any element matches; an empty list means no condition).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    actions: tuple[ActionSpec, ...] = Field(min_length=1)
    paths: tuple[Glob, ...] = Field(min_length=1)
    effect: Literal["allow", "deny"] = "allow"
    cidrs: tuple[Network, ...] = ()
    windows: tuple[TimeWindow, ...] = ()

    @property
    def named_actions(self) -> frozenset[Action]:
        """The actions listed, with ``*`` expanded (implications not applied)."""
        return _expand(self.actions)[0]

    @property
    def granted(self) -> frozenset[Action]:
        """Every action this rule would allow: the listed ones plus what they imply."""
        return _expand(self.actions)[1]

    def denies(self, action: Action) -> bool:
        """A deny covers ``action`` if it names anything ``action`` would reveal or do: denying
        ``read-outputs`` also denies ``read`` (a full read shows the outputs), while denying
        ``read`` still leaves an outputs-only view possible."""
        return bool(GRANTS[action] & self.named_actions)

    def source_in_cidrs(self, source: IPAddress | None) -> bool:
        return source is not None and any(source in net for net in self.cidrs)

    def in_windows(self, now: dt.datetime) -> bool:
        return any(w.contains(now) for w in self.windows)


class Role(BaseModel):
    """A named set of rules; principals hold role names, never rules, so a grant can be
    reviewed (and linted) in one place."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = Field(default="", max_length=500)
    rules: tuple[Rule, ...] = ()


@lru_cache(maxsize=4096)
def parse_source(source: str | None) -> IPAddress | None:
    """The client address, or None if missing or not an IP (the CLI's source is ``"cli"``).
    IPv4-mapped IPv6 addresses (dual-stack sockets) are compared as IPv4."""
    if not source:
        return None
    try:
        addr = ipaddress.ip_address(source)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr
