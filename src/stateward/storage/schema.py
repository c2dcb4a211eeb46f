"""Metadata tables (SQLAlchemy Core), shared by SQLite and PostgreSQL.

The same types on both: ``Float`` is a double on both (timestamps keep their microseconds),
``LargeBinary`` is a BLOB / BYTEA, ``BigInteger`` a 64-bit integer. PostgreSQL enforces the
``String`` lengths that SQLite only declares: every value is bounded before it gets here, and
the columns holding principal names are TEXT there (:func:`_principal`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

metadata = MetaData()


def _path() -> TypeEngine[str]:
    """A state path. On PostgreSQL with the "C" collation: paths sort byte-wise, as SQLite's
    BINARY collation sorts them, whatever the database's locale (``en_US`` would ignore the
    punctuation in ``team/app-x``), so listings come out in the same order on both stores."""
    return String(256).with_variant(postgresql.VARCHAR(256, collation="C"), "postgresql")


def _principal() -> TypeEngine[str]:
    """A principal's name, copied from ``Principal.name``. SQLite never enforced the declared
    256; names are bounded where they are made (the longest, ``oidc:<host>:<sub>``, reaches 515
    characters), so PostgreSQL gets TEXT rather than refusing a long CI identity."""
    return String(256).with_variant(Text(), "postgresql")


#: One row per state path. ``current_seq`` points at the current version (NULL: no state yet).
states = Table(
    "states",
    metadata,
    Column("path", _path(), primary_key=True),
    Column("current_seq", Integer, nullable=True),
    Column("next_seq", Integer, nullable=False, default=1),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("deleted_at", Float, nullable=True),
    Column("deleted_by", _principal(), nullable=True),
    Column("protected", Boolean, nullable=False, default=False),
    Column("override_next_write", Boolean, nullable=False, default=False),
)

#: Immutable versions. ``seq`` counts 1, 2, 3 … per path; a row is never updated.
versions = Table(
    "versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", _path(), ForeignKey("states.path"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("lineage", String(128), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("stored_size", BigInteger, nullable=False),
    Column("md5", String(32), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("blob_key", String(128), nullable=False, unique=True),
    Column("author", _principal(), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("client_version", String(64), nullable=False, default=""),
    Column("terraform_version", String(64), nullable=False, default=""),
    Column("lock_id", String(256), nullable=True),
    Column("resource_count", Integer, nullable=False),
    Column("output_count", Integer, nullable=False),
    Column("client_encrypted", Boolean, nullable=False),
    Column("kind", String(16), nullable=False),  # write | rollback
    Column("source_seq", Integer, nullable=True),  # for rollbacks
    UniqueConstraint("path", "seq", name="uq_versions_path_seq"),
)
Index("ix_versions_path_created", versions.c.path, versions.c.created_at)

#: Which key protects each version's blob (metadata only, never key material): lets
#: ``keys status`` count references per key version and ``keys rewrap`` find what to move.
#: Versions without a row are unencrypted blobs of an earlier release.
blob_keys = Table(
    "blob_keys",
    metadata,
    Column("blob_key", String(128), ForeignKey("versions.blob_key"), primary_key=True),
    Column("path", _path(), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("key_id", String(512), nullable=False),
    Column("key_version", String(128), nullable=False),
)
Index("ix_blob_keys_provider", blob_keys.c.provider, blob_keys.c.key_version)

#: At most one row per path: the primary key is what makes LOCK a compare-and-set.
locks = Table(
    "locks",
    metadata,
    Column("path", _path(), primary_key=True),
    Column("lock_id", String(256), nullable=False),
    Column("info", LargeBinary, nullable=False),
    Column("who", String(256), nullable=False),
    Column("operation", String(256), nullable=False),
    Column("client_version", String(64), nullable=False),
    Column("principal", _principal(), nullable=False),
    Column("acquired_at", Float, nullable=False),
)

#: Administrative events (break-lock, overrides, deletes …), until the hash-chained audit lands.
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("principal", _principal(), nullable=False),
    Column("action", String(64), nullable=False),
    Column("path", _path(), nullable=True),
    Column("detail", Text, nullable=False, default=""),
)
Index("ix_events_path", events.c.path)

#: The audit trail: one hash-chained record per request and command (audit/chain.py). ``seq``
#: is assigned by the writer (max + 1 inside the write transaction), never reused; the JSON in
#: ``record`` is what the hash covers, the other columns are copies for filtering.
audit = Table(
    "audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", Float, nullable=False),
    Column("principal", String(512), nullable=False),
    Column("action", String(32), nullable=False),
    Column("path", _path(), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("record", Text, nullable=False),
)
Index("ix_audit_path_at", audit.c.path, audit.c.at)
Index("ix_audit_principal_at", audit.c.principal, audit.c.at)
Index("ix_audit_at", audit.c.at)

#: Secret scans: one row per scanned version (``findings`` = how many), and the findings
#: themselves as location + kind + rule (never a value). Versions without a scan row are
#: scanned by the background scanner.
secret_scans = Table(
    "secret_scans",
    metadata,
    Column("path", _path(), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("scanned_at", Float, nullable=False),
    Column("findings", Integer, nullable=False),
    Column("note", String(256), nullable=False, default=""),
)
secret_findings = Table(
    "secret_findings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", _path(), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("location", Text, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("rule", String(64), nullable=False),
)
Index("ix_secret_findings_version", secret_findings.c.path, secret_findings.c.seq)

#: Where each follower of the trail (sinks, alert rules) has got to.
audit_cursors = Table(
    "audit_cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)

#: API tokens. Only the keyed hash of a secret is stored (crypto/tokens.py); names are never
#: reused, so events naming a token stay unambiguous after it is revoked.
tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("hash", String(64), nullable=False, unique=True, index=True),
    Column("roles", Text, nullable=False),  # JSON list of role names
    Column("paths", Text, nullable=False),  # JSON list of path globs; [] = unrestricted
    Column("created_at", Float, nullable=False),
    Column("created_by", _principal(), nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),
)

#: Facts about the store: ``schema_version`` (the Alembic revision, storage/engine.py; the
#: release before migrations wrote "1") and ``token_key_check`` (service/startup.py).
schema_info = Table(
    "schema_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

#: Alerts raised by the ``[[alert_rules]]`` (docs/alerts.md). ``dedup`` (a hash of rule + audit
#: seq, or rule + lock ID for long locks) is unique, so an audit record delivered twice to the
#: alert follower, or a long lock seen on every poll, raises one alert.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("path", _path(), nullable=True),
    Column("principal", String(512), nullable=True),
    Column("summary", Text, nullable=False),
    Column("audit_seq", BigInteger, nullable=True),
    Column("dedup", String(64), nullable=False, unique=True),
    Column("acknowledged_at", Float, nullable=True),
    Column("acknowledged_by", String(512), nullable=True),
)
Index("ix_alerts_open", alerts.c.acknowledged_at, alerts.c.id)

#: Leases on background jobs (service/leases.py): one row per job that must run on one replica
#: at a time (retention, the audit followers, the secret scanner, a key rewrap). Taken and
#: renewed by compare-and-set inside a write transaction; ``expires_at`` (the holder's clock)
#: lets another replica take over from a holder that died.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("acquired_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)
