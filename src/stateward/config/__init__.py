"""Configuration: the settings of one deployment (``settings``) and the models of its sections
that belong to other layers' features (``alerts``, ``oidc``, ``sinks``).

Only models and their validation live here, no I/O beyond reading the TOML file: every layer
from the service up receives a :class:`Settings`.
"""

from stateward.config.settings import (
    DEFAULT_MAX_BODY,
    ENV_PREFIX,
    CertPrincipal,
    ClientEncryptionRule,
    ConfigError,
    EncryptionRule,
    LeaseRule,
    RetentionRule,
    Settings,
    load_settings,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "ENV_PREFIX",
    "CertPrincipal",
    "ClientEncryptionRule",
    "ConfigError",
    "EncryptionRule",
    "LeaseRule",
    "RetentionRule",
    "Settings",
    "load_settings",
]
