"""Writing states out (``stateward export``): which rule a path falls under (a policy file of
path globs, each with an OpenTofu encryption description or ``plaintext``), and the sinks that
write ``<destination>/<path>/terraform.tfstate`` -- a local directory or an S3 prefix.

A directory export only writes into directories the current user owns and nobody else can
write to (created 0700), each file through a fresh 0600 temporary file (O_EXCL, no symlinks
followed) renamed into place: a file or link someone else prepared is never written through.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import stat
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]

from stateward.domain import s3layout, statefile
from stateward.domain.errors import BadRequest
from stateward.domain.globs import glob_match
from stateward.tofu import TargetEncryption, TofuError, build_target, load_config
from stateward.transfer.errors import TransferError

_RULE_KEYS = frozenset({"paths", "tofu_config", "plaintext"})


@dataclass
class ExportRule:
    """One ``[[rule]]`` of a policy file: ``paths`` globs, then a tofu config or plaintext."""

    paths: tuple[str, ...]
    tofu_config: Path | None
    _target: TargetEncryption | None = None

    @property
    def plaintext(self) -> bool:
        return self.tofu_config is None

    def target(self) -> TargetEncryption | None:
        """The encryption target (built on first use: secrets are resolved then)."""
        if self.tofu_config is None:
            return None
        if self._target is None:
            try:
                self._target = build_target(load_config(self.tofu_config), "state")
            except TofuError as exc:
                raise TransferError(f"{self.tofu_config}: {exc}") from None
        return self._target


def load_policy(file: Path) -> list[ExportRule]:
    """Parse a policy file: ``[[rule]]`` tables, first match wins; relative ``tofu_config``
    files are relative to the policy file."""
    try:
        doc = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TransferError(
            f"cannot read {file}: {exc.strerror or type(exc).__name__}"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TransferError(f"{file}: not valid TOML ({exc})") from None
    extra = set(doc) - {"rule"}
    raw = doc.get("rule")
    if extra or not isinstance(raw, list) or not raw:
        raise TransferError(
            f"{file}: expected one or more [[rule]] tables and nothing else"
            + (f" (unknown: {', '.join(sorted(extra))})" if extra else "")
        )
    rules = []
    for n, item in enumerate(raw, 1):
        where = f"{file}: rule {n}"
        if not isinstance(item, dict) or set(item) - _RULE_KEYS:
            unknown = sorted(set(item) - _RULE_KEYS) if isinstance(item, dict) else []
            raise TransferError(f"{where}: unknown setting(s) {', '.join(unknown)}")
        paths = item.get("paths")
        if (
            not isinstance(paths, list)
            or not paths
            or not all(isinstance(p, str) and p for p in paths)
        ):
            raise TransferError(f'{where}: paths must be a list of globs, e.g. ["prod/**"]')
        tofu = item.get("tofu_config")
        plain = item.get("plaintext", False)
        if plain not in (True, False) or (tofu is None) == (plain is not True):
            raise TransferError(
                f'{where}: give exactly one of tofu_config = "FILE" and plaintext = true'
            )
        if tofu is not None and not isinstance(tofu, str):
            raise TransferError(f"{where}: tofu_config must be a file name")
        config = None if tofu is None else file.parent / Path(tofu)
        rules.append(ExportRule(tuple(paths), config))
    return rules


def rule_for(rules: list[ExportRule], path: str) -> ExportRule | None:
    return next((r for r in rules if any(glob_match(g, path) for g in r.paths)), None)


class Sink(Protocol):
    def prepare(self, paths: list[str]) -> None: ...

    def write(self, path: str, data: bytes) -> None: ...

    def describe(self) -> str: ...


def unsafe_directory(directory: Path) -> str | None:
    """Why writing a state into ``directory`` is unsafe (someone else could swap or read the
    file), or None: it must be a directory the current user owns, not group- or
    world-writable."""
    try:
        info = directory.stat()
    except OSError as exc:
        return f"cannot use {directory}: {exc.strerror or type(exc).__name__}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{directory} exists and is not a directory"
    if info.st_uid != os.geteuid():
        return f"{directory} is not owned by the current user (owner uid {info.st_uid})"
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        return (
            f"{directory} is group- or world-writable (mode {mode:04o}); "
            "export into a directory only you can write to"
        )
    return None


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents with mode 0700."""
    missing = []
    level = directory
    while not level.exists() and level != level.parent:
        missing.append(level)
        level = level.parent
    for level in reversed(missing):
        with contextlib.suppress(FileExistsError):  # checked by the caller afterwards
            level.mkdir(mode=0o700)


class DirectorySink:
    """``<directory>/<path>/terraform.tfstate``; refuses (nothing written) a destination, or
    a directory under it, that the current user does not own or others can write to."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        if directory.exists():
            self._check(directory, "nothing exported: ")
        try:
            make_private_dirs(directory)
        except OSError as exc:
            raise TransferError(
                f"cannot create {directory}: {exc.strerror or type(exc).__name__}"
            ) from None
        self._check(directory, "nothing exported: ")

    @staticmethod
    def _check(directory: Path, lead: str) -> None:
        problem = unsafe_directory(directory)
        if problem is not None:
            raise TransferError(lead + problem)

    def _levels(self, path: str) -> list[Path]:
        """The directories under the destination that ``path``'s file is written through."""
        parent = Path(s3layout.export_key(path)).parent
        return [self.directory / Path(*parent.parts[: i + 1]) for i in range(len(parent.parts))]

    def prepare(self, paths: list[str]) -> None:
        """Check every directory that already exists, before anything is written."""
        for path in paths:
            for level in self._levels(path):
                if level.exists() or level.is_symlink():
                    self._check(level, "nothing exported: ")

    def write(self, path: str, data: bytes) -> None:
        file = self.directory / s3layout.export_key(path)
        try:
            for level in self._levels(path):
                with contextlib.suppress(FileExistsError):
                    level.mkdir(mode=0o700)
                self._check(level, f"stopped at {path}: ")
            write_private(file, data)
        except OSError as exc:
            raise TransferError(
                f"cannot write {file}: {exc.strerror or type(exc).__name__}"
            ) from None

    def describe(self) -> str:
        return str(self.directory)


class S3Sink:
    """``PutObject`` at ``<prefix><path>/terraform.tfstate``, with Content-MD5 (S3 refuses a
    body that arrives altered) and the content type Terraform's backend writes."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix

    def prepare(self, paths: list[str]) -> None:
        pass

    def write(self, path: str, data: bytes) -> None:
        key = s3layout.export_key(path, self.prefix)
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentMD5=md5,
                ContentType="application/json",
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            if isinstance(exc, botocore.exceptions.ClientError):
                code = exc.response.get("Error", {}).get("Code") or "error"
            else:
                code = type(exc).__name__
            raise TransferError(
                f"S3 PutObject s3://{self.bucket}/{key} failed: {code}"
            ) from None

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def client_encrypted(body: bytes) -> bool:
    """Whether a stored state is an OpenTofu client-side encrypted envelope."""
    try:
        return statefile.parse_state(body).client_encrypted
    except BadRequest:
        return False


def write_private(file: Path, data: bytes) -> None:
    """Write ``file`` atomically: a new 0600 temporary file beside it (mkstemp: O_EXCL, so
    never a file or link that is already there), synced, renamed over ``file`` (a link there
    is replaced, not followed)."""
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(file.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # the rename itself
    finally:
        os.close(dir_fd)
