"""What one live audit looks at (the options) and what it learns on the way."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from stateward.domain import s3layout

#: States above this are not read (size finding, and not scanned): 64 MiB.
DEFAULT_MAX_STATE_BYTES = 64 * 1024 * 1024
#: A noncurrent version kept for less than this many days is too short a recovery window.
MIN_RECOVERY_DAYS = 30


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """``--role ARN`` or ``--role ARN=ENV`` (the environment the role is for)."""

    arn: str
    env: str | None = None

    @classmethod
    def parse(cls, text: str) -> RoleSpec:
        arn, sep, env = text.partition("=")
        if not arn.startswith("arn:") or ":role/" not in arn or (sep and not env):
            raise ValueError(f"--role wants a role ARN, optionally =ENV: {text!r}")
        return cls(arn, env or None)

    @property
    def name(self) -> str:
        return self.arn.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class StateObject:
    key: str
    size: int
    modified: dt.datetime | None


@dataclass
class Target:
    bucket: str
    key_prefix: str = ""
    lock_table: str | None = None
    roles: tuple[RoleSpec, ...] = ()
    trusted_accounts: frozenset[str] = frozenset()
    stale_lock_hours: float = 24.0
    max_state_bytes: int = DEFAULT_MAX_STATE_BYTES
    workspace_key_prefix: str = s3layout.DEFAULT_WORKSPACE_KEY_PREFIX
    #: Cap on state objects examined one by one (HeadObject, read, scan).
    max_objects: int = 1000
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    # learned during the audit
    account: str | None = None
    #: The bucket's default SSE-KMS key as an ARN (None: not SSE-KMS or not known).
    key_arn: str | None = None
    #: The bucket policy document (parsed), when there is a readable one.
    policy: dict[str, Any] | None = None
    states: list[StateObject] = field(default_factory=list)
    locks: list[StateObject] = field(default_factory=list)
    digests: list[StateObject] = field(default_factory=list)
    #: MD5 hex of each state read (key -> digest), for the -md5 comparison.
    md5: dict[str, str] = field(default_factory=dict)

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}"

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def context(self, **extra: str) -> dict[str, str]:
        """Fix-template values known so far."""
        out = {"bucket": self.bucket}
        if self.key_arn:
            out["key_arn"] = self.key_arn
            out["key_id"] = self.key_arn.rsplit("/", 1)[-1]
        if self.account:
            out["account"] = self.account
        if self.lock_table:
            out["table"] = self.lock_table
        return out | extra

    def env_of(self, key: str) -> str:
        """The environment a state key belongs to: the workspace of ``<wkp>/<W>/…`` keys,
        else the first folder under the key prefix, else the key's stem."""
        pre = s3layout.folder(self.key_prefix)
        wkp = self.workspace_key_prefix.strip("/")
        if wkp and key.startswith(wkp + "/"):
            workspace = key[len(wkp) + 1 :].partition("/")[0]
            if workspace:
                return workspace
        rest = key[len(pre) :] if key.startswith(pre) else key
        head, sep, _ = rest.partition("/")
        if sep and head:
            return head
        return s3layout.stem(rest) or "default"
