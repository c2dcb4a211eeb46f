"""The names and settings of a hardened state backend, shared by the HCL writer and
``--apply`` so that both create exactly the same thing (and the import blocks line up)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,56}[a-z0-9]$")
_ENV = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")

#: Noncurrent versions are kept this long (the recovery window) …
NONCURRENT_DAYS = 90
#: … and Object Lock (governance mode) keeps every version at least this long.
LOCK_DAYS = 30
LOG_RETENTION_DAYS = 365
KMS_DELETION_WINDOW = 30
STATE_ROLE_KMS_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


@dataclass(frozen=True)
class Plan:
    bucket: str
    region: str
    envs: tuple[str, ...]
    stateward_endpoint: str | None = None

    def __post_init__(self) -> None:
        if not _BUCKET.match(self.bucket) or ".." in self.bucket:
            raise ValueError(f"not a bucket name this can create (3-58 characters, a-z 0-9 . -;"
                             f" the log bucket adds -logs): {self.bucket!r}")
        if not self.envs:
            raise ValueError("give at least one --env")
        for env in self.envs:
            if not _ENV.match(env):
                raise ValueError(f"--env {env!r}: use a-z 0-9 - (at most 31 characters)")
        if len(set(self.envs)) != len(self.envs):
            raise ValueError("an --env is given twice")
        for env in self.envs:
            if len(self.role_name(env)) > 64:
                raise ValueError(f"role name {self.role_name(env)!r} is longer than 64")

    @property
    def log_bucket(self) -> str:
        return f"{self.bucket}-logs"

    @property
    def key_alias(self) -> str:
        return f"alias/{self.bucket}-state"

    def role_name(self, env: str) -> str:
        return f"{self.bucket}-{env}-state"

    def policy_name(self, env: str) -> str:
        return f"state-{env}"

    def state_key(self, env: str) -> str:
        return f"{env}/terraform.tfstate"

    @staticmethod
    def ident(env: str) -> str:
        """The HCL identifier for an environment (``prod-eu`` -> ``prod_eu``)."""
        return env.replace("-", "_")
