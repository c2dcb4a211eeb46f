"""The ``pbkdf2`` key provider: a key derived from a passphrase (PBKDF2-HMAC).

Encryption derives from a fresh random salt and the configured parameters; decryption derives
from the parameters stored in the file, so changing ``iterations`` or ``hash_function`` in the
configuration does not lock out older files.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from stateward.tofu import gojson
from stateward.tofu.envelope import b64decode
from stateward.tofu.errors import ConfigError, FormatError, KeyProviderError
from stateward.tofu.providers.base import KeyProvider
from stateward.tofu.rand import RandomSource
from stateward.tofu.secret import Secret

HASH_FUNCTIONS = ("sha256", "sha512")
MIN_PASSPHRASE_BYTES = 16
MIN_ITERATIONS = 200_000
DEFAULT_ITERATIONS = 600_000
DEFAULT_KEY_LENGTH = 32
DEFAULT_SALT_LENGTH = 32
DEFAULT_HASH = "sha512"

# Stored metadata is read before anything is authenticated; these bounds keep a crafted file
# from pinning the CPU (PBKDF2 cost is iterations x output blocks). OpenTofu's defaults are far
# inside them.
MAX_STORED_ITERATIONS = 20_000_000
MAX_STORED_KEY_LENGTH = 64
_CACHE_SIZE = 16


@dataclass(frozen=True)
class Pbkdf2Params:
    """The derivation parameters (everything but the passphrase and salt)."""

    key_length: int = DEFAULT_KEY_LENGTH
    iterations: int = DEFAULT_ITERATIONS
    hash_function: str = DEFAULT_HASH
    salt_length: int = DEFAULT_SALT_LENGTH

    def validate(self, where: str) -> None:
        """OpenTofu's configuration checks (``iterations`` >= 200000, known hash, sizes > 0)."""
        if self.key_length <= 0:
            raise ConfigError(f"{where}: key_length must be larger than zero")
        if self.iterations < MIN_ITERATIONS:
            raise ConfigError(
                f"{where}: iterations {self.iterations} is dangerously low "
                f"(minimum {MIN_ITERATIONS})"
            )
        if self.salt_length <= 0:
            raise ConfigError(f"{where}: salt_length must be larger than zero")
        if self.hash_function not in HASH_FUNCTIONS:
            raise ConfigError(f"{where}: hash_function must be one of {', '.join(HASH_FUNCTIONS)}")


def derive(
    passphrase: bytes, salt: bytes, iterations: int, hash_function: str, length: int
) -> bytes:
    """PBKDF2-HMAC, identical to Go's ``golang.org/x/crypto/pbkdf2.Key``."""
    return hashlib.pbkdf2_hmac(hash_function, passphrase, salt, iterations, length)


class Pbkdf2Provider(KeyProvider):
    """``key_provider "pbkdf2" "<name>" { passphrase = … }``."""

    type_name = "pbkdf2"

    def __init__(
        self,
        name: str,
        passphrase: Secret,
        params: Pbkdf2Params | None = None,
        alias: str | None = None,
    ) -> None:
        super().__init__(name, alias)
        self.params = params or Pbkdf2Params()
        self.params.validate(self.address)
        if len(passphrase) < MIN_PASSPHRASE_BYTES:
            raise ConfigError(
                f"{self.address}: passphrase is too short (minimum {MIN_PASSPHRASE_BYTES} bytes)"
            )
        self._passphrase = passphrase
        # Derivations cost ~0.2 s each; reading the same file twice should not pay twice.
        self._cache: dict[tuple[bytes, int, str, int], bytes] = {}

    def _derive(self, salt: bytes, iterations: int, hash_function: str, length: int) -> bytes:
        key = (salt, iterations, hash_function, length)
        if key not in self._cache:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = derive(
                self._passphrase.reveal(), salt, iterations, hash_function, length
            )
        return self._cache[key]

    def encryption_key(self, rng: RandomSource) -> tuple[bytes, bytes]:
        p = self.params
        salt = rng(p.salt_length)
        key = self._derive(salt, p.iterations, p.hash_function, p.key_length)
        return key, metadata_json(salt, p.iterations, p.hash_function, p.key_length)

    def decryption_key(self, metadata: bytes) -> bytes:
        doc = self.parse_metadata(metadata)
        salt, iterations, hash_function, key_length = self._stored_params(doc)
        return self._derive(salt, iterations, hash_function, key_length)

    def _stored_params(self, doc: dict[str, Any]) -> tuple[bytes, int, str, int]:
        where = f"{self.address}: stored metadata"
        try:
            salt = b64decode(doc.get("salt", ""), f"{where} 'salt'")
        except FormatError as exc:
            raise KeyProviderError(str(exc)) from None
        iterations = doc.get("iterations", 0)
        key_length = doc.get("key_length", 0)
        hash_function = doc.get("hash_function", "")
        for field, value in (("iterations", iterations), ("key_length", key_length)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise KeyProviderError(f"{where} '{field}' is not a non-negative integer")
        if not isinstance(hash_function, str):
            raise KeyProviderError(f"{where} 'hash_function' is not a string")
        if not salt or not iterations or not key_length or not hash_function:
            raise KeyProviderError(f"{where} is incomplete (salt, iterations, hash, key length)")
        if hash_function not in HASH_FUNCTIONS:
            raise KeyProviderError(f"{where} names an unknown hash function")
        if iterations > MAX_STORED_ITERATIONS or key_length > MAX_STORED_KEY_LENGTH:
            raise KeyProviderError(f"{where} asks for an unreasonable derivation cost")
        return salt, iterations, hash_function, key_length


def metadata_json(salt: bytes, iterations: int, hash_function: str, key_length: int) -> bytes:
    """``{"salt":…,"iterations":…,"hash_function":…,"key_length":…}`` in OpenTofu's order."""
    return gojson.obj(
        [
            ("salt", '"' + base64.b64encode(salt).decode("ascii") + '"'),
            ("iterations", str(iterations)),
            ("hash_function", gojson.string(hash_function)),
            ("key_length", str(key_length)),
        ]
    ).encode("utf-8")
