"""Secrets (passphrases, raw keys, tokens) that cannot end up in a log line by accident.

A configuration names *where* a secret lives (``passphrase_env``, ``passphrase_file``, or the
discouraged inline ``passphrase``); :class:`SecretSource` is that pointer and is resolved only
when a target that needs it is built, so ``inspect`` works without any secret being present.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stateward.tofu.errors import ConfigError


class Secret:
    """Bytes whose ``repr``/``str`` never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        """The secret bytes; call sites are the only places a secret is used."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "Secret(<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True)
class SecretSource:
    """Where a secret comes from: ``inline`` (value in the config), ``env`` or ``file``.

    ``value`` is the secret itself only for ``inline``; for ``env``/``file`` it is the variable
    name / path, which is not secret and may appear in errors.
    """

    kind: Literal["inline", "env", "file"]
    value: str
    what: str  # e.g. "key_provider.pbkdf2.main passphrase", for error messages

    def __repr__(self) -> str:
        shown = "<hidden>" if self.kind == "inline" else repr(self.value)
        return f"SecretSource({self.kind}, {shown})"

    def resolve(self) -> Secret:
        """Read the secret; a file's single trailing newline is dropped (``echo`` writes one)."""
        if self.kind == "inline":
            return Secret(self.value.encode("utf-8"))
        if self.kind == "env":
            env = os.environ.get(self.value)
            if not env:
                raise ConfigError(f"{self.what}: environment variable {self.value} is not set")
            return Secret(env.encode("utf-8"))
        try:
            data = Path(self.value).read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(f"{self.what}: cannot read {self.value}: {reason}") from None
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        if not data:
            raise ConfigError(f"{self.what}: {self.value} is empty")
        return Secret(data)
