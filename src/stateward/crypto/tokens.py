"""API token secrets and the server key that hashes them.

A token is ``swt_`` + base64url (no padding) of 32 random bytes. The prefix lets secret
scanners (GitHub, gitleaks, trufflehog) recognise a leaked token. The database stores only
``HMAC-SHA256(server_key, token)``; the key lives in a file outside the database, so a copy of
the database alone can neither reveal a token nor be used to plant a working one.

Nothing in this module logs, and no ``repr``/``str`` here ever shows a token or the key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
from pathlib import Path

PREFIX = "swt_"
SECRET_BYTES = 32
KEY_BYTES = 32
#: ``swt_`` + 43 base64url characters (32 bytes, unpadded).
TOKEN_LEN = len(PREFIX) + 43
_TOKEN_RE = re.compile(r"swt_[A-Za-z0-9_-]{43}")


class TokenKeyError(Exception):
    """The token key file is unusable; the message names the file and the fix."""


class TokenSecret(str):
    """A token secret: an ordinary string whose ``repr`` is redacted.

    ``str()``/printing give the secret (the CLI must show it once); ``repr`` — what tracebacks,
    debuggers, assertion messages and ``%r`` logging use — does not.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "TokenSecret('swt_<redacted>')"


def new_token() -> TokenSecret:
    raw = secrets.token_bytes(SECRET_BYTES)
    return TokenSecret(PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii"))


def is_well_formed(token: str) -> bool:
    """Cheap shape check, so garbage is refused without a key or a database query."""
    return (
        isinstance(token, str)
        and len(token) == TOKEN_LEN
        and _TOKEN_RE.fullmatch(token) is not None
    )


class TokenKey:
    """The server's 32-byte HMAC key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise TokenKeyError(f"token key must be {KEY_BYTES} bytes")
        self._key = key

    def digest(self, token: str) -> str:
        """Hex HMAC-SHA256 of ``token``: the only form in which a token is stored."""
        return hmac.new(self._key, token.encode("utf-8"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "TokenKey(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("TokenKey cannot be pickled")


def load_or_create_key(path: Path) -> TokenKey:
    """Read the key at ``path``, creating it (mode 0600) if it does not exist yet.

    An existing file is never overwritten: replacing the key silently would invalidate every
    token. It is refused if it is not exactly 32 bytes, not a regular file, or accessible to
    anyone but its owner.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    _create_key(path)
    try:
        return _read_key(path)
    except FileNotFoundError:
        raise TokenKeyError(f"token key file {path} disappeared right after creation") from None


def _read_key(path: Path) -> TokenKey:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise TokenKeyError(f"cannot read token key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise TokenKeyError(f"token key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise TokenKeyError(
                f"token key file {path} is accessible to group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
            )
        data = fh.read(KEY_BYTES + 1)
    if len(data) != KEY_BYTES:
        raise TokenKeyError(
            f"token key file {path} must hold exactly {KEY_BYTES} bytes; it is damaged or "
            "not a stateward token key (restore it from backup; never replace it blindly: "
            "a new key invalidates every token)"
        )
    return TokenKey(data)


def _create_key(path: Path) -> None:
    """Write a fresh key to a temporary file, then hard-link it into place.

    ``link`` fails if ``path`` exists, so a concurrent creator or an existing key always wins
    and readers only ever see a complete file.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise TokenKeyError(f"cannot create token key file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(KEY_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    except OSError as exc:
        raise TokenKeyError(f"cannot create token key file {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
