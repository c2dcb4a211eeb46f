"""Configuration: flags > ``STATEWARD_*`` environment variables > TOML file > defaults.

Unknown keys are refused (``extra="forbid"``), so a mistyped setting fails at start-up instead
of silently leaving a protection off.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from stateward.config.alerts import AlertRules, WebhookConfig
from stateward.config.oidc import OidcIssuer, RoleRef
from stateward.config.sinks import SinkConfig
from stateward.crypto.providers.aws_kms import AwsKmsConfig
from stateward.crypto.providers.gcp_kms import GcpKmsConfig
from stateward.crypto.providers.local import KeyfileConfig, PassphraseConfig
from stateward.crypto.providers.vault_transit import VaultTransitConfig
from stateward.domain.globs import validate_glob
from stateward.domain.policy import Role, RoleName
from stateward.storage.s3 import S3BlobStoreConfig
from stateward.storage.urls import display_database_url, normalize_database_url

ENV_PREFIX = "STATEWARD_"
_PROVIDER_NAME_RE = re.compile(r"[a-z0-9._-]{1,64}")
DEFAULT_MAX_BODY = 128 * 1024 * 1024


class ConfigError(Exception):
    """The configuration is invalid; the message names the offending key."""


class RetentionRule(BaseModel):
    """Keep versions matching ``path`` if among the newest ``keep_versions`` OR younger than
    ``keep_days``. The current version is always kept."""

    model_config = ConfigDict(extra="forbid")
    path: str
    keep_versions: int | None = Field(default=None, ge=1)
    keep_days: float | None = Field(default=None, gt=0)


class LeaseRule(BaseModel):
    """Locks on paths matching ``path`` may be broken automatically after ``seconds``."""

    model_config = ConfigDict(extra="forbid")
    path: str
    seconds: float = Field(gt=0)


KeyProviderConfig = Annotated[
    KeyfileConfig | PassphraseConfig | AwsKmsConfig | VaultTransitConfig | GcpKmsConfig,
    Field(discriminator="type"),
]


class EncryptionRule(BaseModel):
    """Blobs of paths matching one of ``paths`` are encrypted under key provider ``provider``
    (first matching rule wins; unmatched paths use the provider named ``default``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    paths: list[str] = Field(min_length=1, max_length=64)
    provider: str = Field(min_length=1, max_length=64)

    @field_validator("paths")
    @classmethod
    def _globs(cls, v: list[str]) -> list[str]:
        return [validate_glob(g) for g in v]


class ClientEncryptionRule(BaseModel):
    """Uploads to paths matching ``paths`` must be OpenTofu client-encrypted, optionally with
    one of the named OpenTofu key provider types (``pbkdf2``, ``aws_kms``, ``openbao`` ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    paths: list[str] = Field(min_length=1, max_length=64)
    key_providers: list[str] = Field(default_factory=list, max_length=16)

    @field_validator("paths")
    @classmethod
    def _globs(cls, v: list[str]) -> list[str]:
        return [validate_glob(g) for g in v]


class CertPrincipal(BaseModel):
    """Map a verified client certificate (mutual TLS) to a principal with roles."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: The certificate subject's common name, compared exactly.
    subject_cn: str = Field(min_length=1, max_length=256)
    roles: list[RoleRef] = Field(min_length=1, max_length=32)  # built-in roles allowed
    #: Optional path globs the principal is restricted to (default: the roles' own grants).
    paths: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("paths")
    @classmethod
    def _globs(cls, v: list[str]) -> list[str]:
        return [validate_glob(g) for g in v]


class Settings(BaseModel):
    # hide_input_in_errors: a rejected database_url must not echo its password.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    data_dir: Path = Path("stateward-data")
    #: Metadata store. None: the embedded SQLite database in ``data_dir``;
    #: ``postgresql+psycopg://user:password@host:port/db`` (or ``postgresql://…``): PostgreSQL.
    #: Kept out of ``repr`` (it may hold a password); show it with :meth:`database_display`.
    database_url: str | None = Field(default=None, repr=False, max_length=4096)
    #: Blob store. None: files under ``data_dir/blobs``; ``[blob_store] type = "s3"``: an S3
    #: bucket (see docs/operations.md, "Scale-out"). File only.
    blob_store: S3BlobStoreConfig | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=7480, ge=0, le=65535)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, ge=1024)
    protected_paths: list[str] = Field(default_factory=list)
    lock_leases: list[LeaseRule] = Field(default_factory=list)
    retention: list[RetentionRule] = Field(default_factory=list)
    delete_grace_days: float = Field(default=30.0, ge=0)
    orphan_min_age_seconds: float = Field(default=3600.0, ge=0)
    maintenance_interval_seconds: float = Field(default=600.0, ge=0)
    #: Replicas on one store run each background job (retention, audit followers, secret
    #: scanner) on one replica at a time; a replica that stops renewing its job lease for
    #: this long loses the job to another (docs/replicas.md).
    job_lease_seconds: float = Field(default=30.0, ge=5, le=600)
    log_level: str = "info"
    #: Custom authorization roles (``[roles.<name>]``), see docs/access-control.md.
    roles: dict[RoleName, Role] = Field(default_factory=dict)
    #: HMAC key for API token hashes, kept outside the database (default <data_dir>/token.key).
    token_key_file: Path | None = None
    #: Trusted CI OIDC issuers (``[[oidc_issuers]]``), see docs/access-control.md.
    oidc_issuers: list[OidcIssuer] = Field(default_factory=list)
    #: TLS server certificate (PEM, may include the chain) and its private key: both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: CA bundle (PEM); when set, every client must present a certificate signed by it (mTLS).
    tls_client_ca: Path | None = None
    #: Client certificate subjects that authenticate on their own (``[[cert_principals]]``).
    cert_principals: list[CertPrincipal] = Field(default_factory=list)
    #: Addresses (CIDRs) of TLS-terminating proxies. Only requests from them may carry
    #: ``X-Forwarded-For``/``X-Forwarded-Proto``, and declaring one permits plain HTTP on a
    #: non-loopback address (then only the proxies and loopback may connect).
    trusted_proxies: list[str] = Field(default_factory=list, max_length=64)
    #: Brute-force throttle: more than ``auth_failure_limit`` failed authentications within
    #: ``auth_failure_window_seconds`` from one address (or for one token name) block it,
    #: first for ``auth_block_seconds``, doubling on each repeat up to 15 minutes.
    auth_failure_limit: int = Field(default=10, ge=1, le=10_000)
    auth_failure_window_seconds: float = Field(default=300.0, gt=0, le=86_400)
    auth_block_seconds: float = Field(default=30.0, gt=0, le=900)
    #: Key providers (``[key_providers.<name>]``); ``default`` is a key file in the data dir
    #: unless configured. See docs/encryption.md.
    key_providers: dict[str, KeyProviderConfig] = Field(default_factory=dict)
    #: Which provider encrypts which paths (``[[encryption]]``), first match wins.
    encryption: list[EncryptionRule] = Field(default_factory=list)
    #: Where the audit trail is shipped (``[[audit_sinks]]``: JSON-lines file, syslog).
    audit_sinks: list[SinkConfig] = Field(default_factory=list, max_length=16)
    #: Paths whose uploads must be client-encrypted by OpenTofu (``[[client_encryption]]``).
    client_encryption: list[ClientEncryptionRule] = Field(default_factory=list)
    #: A data key is reused for at most this long and this many blobs of one path.
    data_key_max_age_seconds: float = Field(default=300.0, ge=0, le=86_400)
    data_key_max_uses: int = Field(default=1000, ge=1, le=1_000_000)
    # -- observability (docs/observability.md) --
    #: ``text`` (for people) or ``json`` (one object per line, for log pipelines).
    log_format: Literal["text", "json"] = "text"
    #: Serve ``/metrics`` without authentication (only for a scraper on a private network);
    #: by default it needs a credential allowed ``audit`` on the whole store.
    metrics_public: bool = False
    # -- alerts (docs/alerts.md) --
    #: Rules raising alerts from the audit trail (``[[alert_rules]]``), file only.
    alert_rules: AlertRules = Field(default_factory=list, max_length=64)
    #: Where alerts are POSTed, signed (``[[alert_webhooks]]``), file only.
    alert_webhooks: list[WebhookConfig] = Field(default_factory=list, max_length=16)
    #: How often the audit followers (SIEM sinks, alert rules) look for new records.
    audit_follow_interval_seconds: float = Field(default=1.0, gt=0, le=60)

    @field_validator("host")
    @classmethod
    def _ip_host(cls, v: str) -> str:
        if v == "localhost":
            return v
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(
                f"host {v!r} is not an IP address; use an address such as 127.0.0.1, ::1, "
                "0.0.0.0 or localhost"
            ) from None
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                net = ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                raise ValueError(f"trusted proxy {cidr!r} is not an address or CIDR") from None
            if net.prefixlen == 0:
                raise ValueError(f"trusted proxy {cidr!r} would trust every address")
        return v

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        return normalize_database_url(v)

    def database_display(self) -> str:
        """The metadata store for messages and logs, never with its password."""
        if self.database_url is None:
            return f"sqlite:///{self.db_path}"
        return display_database_url(self.database_url)

    @property
    def serves_loopback_only(self) -> bool:
        return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback

    @model_validator(mode="after")
    def _transport_security(self) -> Settings:
        """Plain HTTP to the network would carry tokens and states in clear text."""
        if self.serves_loopback_only or self.tls_cert is not None or self.trusted_proxies:
            return self
        raise ValueError(
            f"refusing to serve plain HTTP on non-loopback address {self.host}: configure "
            "tls_cert/tls_key, or declare the TLS-terminating proxy in trusted_proxies"
        )

    @model_validator(mode="after")
    def _tls_files(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together (both or neither)")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) requires tls_cert and tls_key")
        if self.cert_principals and self.tls_client_ca is None:
            raise ValueError("cert_principals need tls_client_ca (verified client certificates)")
        for key in ("tls_cert", "tls_key", "tls_client_ca"):
            path: Path | None = getattr(self, key)
            if path is None:
                continue
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from None
            if not path.is_file():
                raise ValueError(f"{key}: {path} is not a regular file")
        return self

    @model_validator(mode="after")
    def _encryption_rules(self) -> Settings:
        known = set(self.key_providers) | {"default"}
        for rule in self.encryption:
            if rule.provider not in known:
                raise ValueError(f"encryption rule names unknown key provider {rule.provider!r}")
        for name in self.key_providers:
            if not _PROVIDER_NAME_RE.fullmatch(name):
                raise ValueError(f"key provider name {name!r}: use 1-64 of a-z 0-9 . _ -")
        return self

    @property
    def db_path(self) -> Path:
        return self.data_dir / "stateward.db"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


_LIST_KEYS = {"protected_paths", "trusted_proxies"}


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "STATEWARD_CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        non_scalar = (
            "lock_leases",
            "retention",
            "roles",
            "oidc_issuers",
            "cert_principals",
            "key_providers",
            "encryption",
            "client_encryption",
            "audit_sinks",
            "alert_rules",
            "alert_webhooks",
            "blob_store",
        )
        if key not in Settings.model_fields or key in non_scalar:
            raise ConfigError(f"unknown or non-scalar environment setting {name}")
        out[key] = [p for p in value.split(",") if p] if key in _LIST_KEYS else value
    return out


def load_settings(
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the sources in precedence order and validate the result."""
    env = os.environ if env is None else env
    if config_file is None and env.get("STATEWARD_CONFIG"):
        config_file = Path(env["STATEWARD_CONFIG"])
    merged: dict[str, Any] = {}
    if config_file is not None:
        try:
            merged.update(tomllib.loads(config_file.read_text()))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
    merged.update(_env_values(env))
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    try:
        return Settings(**merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"invalid setting {loc}: {first['msg']}") from None
