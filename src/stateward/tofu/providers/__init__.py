"""Key providers: turn configuration (+ stored metadata) into AES keys.

Each provider mirrors an OpenTofu ``key_provider`` type and writes the same metadata JSON, so
files move freely between OpenTofu and stateward.
"""

from stateward.tofu.providers.base import KeyProvider

__all__ = ["KeyProvider"]
