"""Local key providers: a key file (the embedded default) and a passphrase.

Both wrap data keys with AES-256-GCM under a key encryption key (KEK) held in this process;
the associated data binds the provider name, the KEK version and the encryption context (the
state path), so a wrapped key moved to another path does not unwrap.

``keyfile``: a JSON key ring ``{"format": "stateward-keyfile-1", "current": "2", "keys":
{"1": "<b64>", "2": "<b64>"}}``, mode 0600. ``stateward keys rotate`` adds a version and makes
it current; older versions stay for decryption until ``keys rewrap`` moves every data key off
them (``keys status`` shows the references).

``passphrase``: KEK = PBKDF2-HMAC-SHA512(passphrase, salt, >= 600,000 iterations). The salt (not
secret) is kept in ``<data_dir>/keys/<name>.salt`` so a process derives the KEK once, and is
also written into every wrapped key, so a blob stays decryptable with the passphrase alone.
The key version is a fingerprint of the derived KEK. Rotation: set a new passphrase and keep
the old one in ``old_passphrase_envs``/``old_passphrase_files`` until ``keys rewrap`` is done.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stateward.crypto.providers.base import (
    DATA_KEY_BYTES,
    DataKey,
    KeyDenied,
    KeyInvalid,
    WrappedKey,
)

KEYFILE_FORMAT = "stateward-keyfile-1"
NONCE = 12
MIN_ITERATIONS = 600_000
SALT_BYTES = 32
_PASS_MAGIC = b"P1"


def context_bytes(context: Mapping[str, str]) -> bytes:
    """Canonical encoding of an encryption context (sorted keys, compact JSON)."""
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()


def _aad(name: str, version: str, context: Mapping[str, str]) -> bytes:
    return b"stateward-dek\x00" + f"{name}\x00{version}\x00".encode() + context_bytes(context)


def _wrap(kek: bytes, name: str, version: str, dek: bytes, context: Mapping[str, str]) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(kek).encrypt(nonce, dek, _aad(name, version, context))


def _unwrap(kek: bytes, name: str, version: str, blob: bytes, ctx: Mapping[str, str]) -> bytes:
    if len(blob) != NONCE + DATA_KEY_BYTES + 16:
        raise KeyInvalid(f"key provider {name}: wrapped key has the wrong length")
    try:
        return AESGCM(kek).decrypt(blob[:NONCE], blob[NONCE:], _aad(name, version, ctx))
    except InvalidTag:
        raise KeyInvalid(
            f"key provider {name}: wrapped data key does not unwrap (tampered, moved to "
            "another path, or wrong key)"
        ) from None


class KeyfileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["keyfile"] = "keyfile"
    #: Default: ``<data_dir>/master.key`` (then created on first start, with a warning).
    path: Path | None = None
    #: Create the file (one random 32-byte version) if it does not exist.
    create: bool = False


class KeyfileProvider:
    kind = "keyfile"

    def __init__(self, name: str, path: Path, create: bool = False) -> None:
        self.name = name
        self.path = path
        self._lock = threading.Lock()
        if not path.exists():
            if not create:
                raise KeyDenied(f"key provider {name}: key file {path} does not exist")
            write_keyfile(path, {"1": os.urandom(32)}, "1", new=True)
        self._current, self._keys = read_keyfile(path, name)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int]:
        st = self.path.stat()
        return st.st_mtime_ns, st.st_size

    def _refresh(self) -> None:
        """Reload after ``keys rotate``/``retire`` changed the file (possibly in another
        process): a running server must not keep wrapping under a version being retired."""
        try:
            stamp = self._file_stamp()
        except OSError:
            return
        if stamp != self._stamp:
            with self._lock:
                self._current, self._keys = read_keyfile(self.path, self.name)
                self._stamp = stamp

    def current_version(self) -> str:
        self._refresh()
        return self._current

    def versions(self) -> list[str]:
        return sorted(self._keys, key=int)

    def generate(self, context: Mapping[str, str]) -> DataKey:
        self._refresh()
        dek = os.urandom(DATA_KEY_BYTES)
        version = self._current
        wrapped = _wrap(self._keys[version], self.name, version, dek, context)
        return DataKey(dek, wrapped, self.path.name, version)

    def unwrap(self, key: WrappedKey, context: Mapping[str, str]) -> bytes:
        kek = self._keys.get(key.key_version)
        if kek is None:
            self._refresh()
            kek = self._keys.get(key.key_version)
        if kek is None:
            raise KeyDenied(
                f"key provider {self.name}: key version {key.key_version} is not in {self.path}"
            )
        return _unwrap(kek, self.name, key.key_version, key.wrapped, context)

    def rewrap(self, key: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        dek = self.unwrap(key, context)
        self._refresh()
        version = self._current
        wrapped = _wrap(self._keys[version], self.name, version, dek, context)
        return WrappedKey(wrapped, self.path.name, version)

    def rotate(self) -> str:
        """Add a new random key version and make it current; returns it."""
        with self._lock:
            _current, keys = read_keyfile(self.path, self.name)
            new = str(max(int(v) for v in keys) + 1)
            keys[new] = os.urandom(32)
            write_keyfile(self.path, keys, new, new=False)
            self._current, self._keys = new, keys
            self._stamp = self._file_stamp()
        return new

    def retire(self, version: str) -> None:
        """Remove a version no data key references any more (checked by the caller)."""
        with self._lock:
            current, keys = read_keyfile(self.path, self.name)
            if version == current:
                raise KeyDenied(f"key provider {self.name}: cannot retire the current version")
            keys.pop(version, None)
            write_keyfile(self.path, keys, current, new=False)
            self._current, self._keys = current, keys
            self._stamp = self._file_stamp()


def read_keyfile(path: Path, name: str) -> tuple[str, dict[str, bytes]]:
    try:
        st = path.stat()
        if st.st_mode & 0o077:
            raise KeyDenied(
                f"key provider {name}: {path} is readable by group or others; chmod 600 it"
            )
        doc = json.loads(path.read_text())
        if doc.get("format") != KEYFILE_FORMAT:
            raise ValueError("unknown format")
        keys = {str(v): base64.b64decode(k, validate=True) for v, k in doc["keys"].items()}
        current = str(doc["current"])
    except KeyDenied:
        raise
    except (OSError, ValueError, KeyError, TypeError):
        raise KeyDenied(
            f"key provider {name}: {path} is not a readable stateward key file"
        ) from None
    if current not in keys or any(len(k) != 32 for k in keys.values()):
        raise KeyDenied(f"key provider {name}: {path} has an invalid key ring")
    return current, keys


def write_keyfile(path: Path, keys: Mapping[str, bytes], current: str, new: bool) -> None:
    """Write atomically with mode 0600 (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = {
        "format": KEYFILE_FORMAT,
        "current": current,
        "keys": {v: base64.b64encode(k).decode() for v, k in keys.items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    if new and path.exists():
        tmp.unlink()
        raise KeyDenied(f"key file {path} appeared while creating it")
    os.replace(tmp, path)


class PassphraseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["passphrase"] = "passphrase"
    passphrase_env: str | None = None
    passphrase_file: Path | None = None
    old_passphrase_envs: list[str] = Field(default_factory=list)
    old_passphrase_files: list[Path] = Field(default_factory=list)
    iterations: int = Field(default=MIN_ITERATIONS, ge=MIN_ITERATIONS, le=10_000_000)

    @model_validator(mode="after")
    def _one_source(self) -> PassphraseConfig:
        if (self.passphrase_env is None) == (self.passphrase_file is None):
            raise ValueError("set exactly one of passphrase_env and passphrase_file")
        return self


def _read_secret(env: str | None, file: Path | None, name: str) -> bytes:
    if env is not None:
        value = os.environ.get(env, "")
        where = f"environment variable {env}"
    else:
        assert file is not None
        try:
            value = file.read_text().rstrip("\n")
        except OSError:
            raise KeyDenied(f"key provider {name}: cannot read passphrase file {file}") from None
        where = f"file {file}"
    if len(value) < 16:
        raise KeyDenied(f"key provider {name}: the passphrase in {where} is shorter than 16")
    return value.encode()


class PassphraseProvider:
    kind = "passphrase"

    def __init__(self, name: str, config: PassphraseConfig, salt_file: Path) -> None:
        self.name = name
        self.iterations = config.iterations
        self._passphrases = [_read_secret(config.passphrase_env, config.passphrase_file, name)]
        self._passphrases += [_read_secret(e, None, name) for e in config.old_passphrase_envs]
        self._passphrases += [_read_secret(None, f, name) for f in config.old_passphrase_files]
        self._salt = _load_salt(salt_file)
        self._derived: dict[tuple[int, bytes, int], bytes] = {}
        self._lock = threading.Lock()
        self._kek = self._derive(0, self._salt, self.iterations)
        self._version = _fingerprint(self._kek)

    def _derive(self, index: int, salt: bytes, iterations: int) -> bytes:
        key = (index, salt, iterations)
        with self._lock:
            cached = self._derived.get(key)
        if cached is None:
            cached = hashlib.pbkdf2_hmac("sha512", self._passphrases[index], salt, iterations, 32)
            with self._lock:
                if len(self._derived) > 256:
                    self._derived.clear()
                self._derived[key] = cached
        return cached

    def current_version(self) -> str:
        return self._version

    def generate(self, context: Mapping[str, str]) -> DataKey:
        dek = os.urandom(DATA_KEY_BYTES)
        return DataKey(dek, self._wrap(dek, context), "passphrase", self._version)

    def _wrap(self, dek: bytes, context: Mapping[str, str]) -> bytes:
        head = _PASS_MAGIC + self._salt + struct.pack(">I", self.iterations)
        return head + _wrap(self._kek, self.name, self._version, dek, context)

    def unwrap(self, key: WrappedKey, context: Mapping[str, str]) -> bytes:
        blob = key.wrapped
        head = len(_PASS_MAGIC) + SALT_BYTES + 4
        if len(blob) < head or blob[:2] != _PASS_MAGIC:
            raise KeyInvalid(f"key provider {self.name}: wrapped key is not a passphrase key")
        salt = blob[2 : 2 + SALT_BYTES]
        (iterations,) = struct.unpack(">I", blob[2 + SALT_BYTES : head])
        if iterations < MIN_ITERATIONS or iterations > 10_000_000:
            raise KeyInvalid(f"key provider {self.name}: wrapped key has odd iterations")
        for index in range(len(self._passphrases)):
            kek = self._derive(index, salt, iterations)
            if _fingerprint(kek) == key.key_version:
                return _unwrap(kek, self.name, key.key_version, blob[head:], context)
        raise KeyDenied(
            f"key provider {self.name}: no configured passphrase matches key version "
            f"{key.key_version} (add the old one to old_passphrase_envs)"
        )

    def rewrap(self, key: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        dek = self.unwrap(key, context)
        return WrappedKey(self._wrap(dek, context), "passphrase", self._version)


def _fingerprint(kek: bytes) -> str:
    return hashlib.sha256(b"stateward-kek-version\x00" + kek).hexdigest()[:16]


def _load_salt(path: Path) -> bytes:
    try:
        salt = path.read_bytes()
        if len(salt) == SALT_BYTES:
            return salt
    except FileNotFoundError:
        pass
    salt = os.urandom(SALT_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(salt)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return salt
