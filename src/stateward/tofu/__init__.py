"""OpenTofu client-side encryption interop (state and plan ``v0`` envelopes).

Reads and writes exactly what OpenTofu >= 1.7 writes with ``terraform { encryption { … } }``:
the ``aes_gcm`` method with ``pbkdf2``, ``aws_kms`` or ``openbao`` key providers or raw keys,
``unencrypted`` for migrations, and fallback chains. Typical use::

    config = load_config(Path("encryption.toml"))
    state = build_target(config, "state")
    result = state.decrypt(payload)          # .plaintext, .method, .migration
    payload = state.encrypt(result.plaintext)
"""

from stateward.tofu.config import EncryptionConfig
from stateward.tofu.engine import DecryptResult, TargetEncryption, build_target
from stateward.tofu.errors import (
    ConfigError,
    DecryptionError,
    FormatError,
    KeyProviderError,
    TofuError,
)
from stateward.tofu.inspect import Inspection, inspect_payload
from stateward.tofu.loader import load_config, parse_config

__all__ = [
    "ConfigError",
    "DecryptResult",
    "DecryptionError",
    "EncryptionConfig",
    "FormatError",
    "Inspection",
    "KeyProviderError",
    "TargetEncryption",
    "TofuError",
    "build_target",
    "inspect_payload",
    "load_config",
    "parse_config",
]
