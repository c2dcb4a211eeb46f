"""Baseline: the schema of the last release before migrations (schema_info version 1).

Revision ID: 0001
Revises:
Create Date: 2026-11-29

Exactly what that release's ``metadata.create_all`` built, written out so later changes to
schema.py never leak into it: a database created by that release is stamped ``0001`` as it is
(storage/engine.py) and must then upgrade like one created here. Column defaults of schema.py
(``default=``) are applied by SQLAlchemy, not by the database, so there are none here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _path() -> sa.types.TypeEngine[str]:
    """A state path: VARCHAR(256), with the byte-wise "C" collation on PostgreSQL."""
    return sa.String(256).with_variant(postgresql.VARCHAR(256, collation="C"), "postgresql")


def _principal() -> sa.types.TypeEngine[str]:
    """A principal's name: VARCHAR(256) on SQLite (not enforced there), TEXT on PostgreSQL."""
    return sa.String(256).with_variant(sa.Text(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "states",
        sa.Column("path", _path(), nullable=False),
        sa.Column("current_seq", sa.Integer(), nullable=True),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("deleted_at", sa.Float(), nullable=True),
        sa.Column("deleted_by", _principal(), nullable=True),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("override_next_write", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("path"),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("path", _path(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("lineage", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("stored_size", sa.BigInteger(), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("blob_key", sa.String(128), nullable=False),
        sa.Column("author", _principal(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("client_version", sa.String(64), nullable=False),
        sa.Column("terraform_version", sa.String(64), nullable=False),
        sa.Column("lock_id", sa.String(256), nullable=True),
        sa.Column("resource_count", sa.Integer(), nullable=False),
        sa.Column("output_count", sa.Integer(), nullable=False),
        sa.Column("client_encrypted", sa.Boolean(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source_seq", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("path", "seq", name="uq_versions_path_seq"),
        sa.ForeignKeyConstraint(["path"], ["states.path"]),
        sa.UniqueConstraint("blob_key"),
    )
    op.create_index("ix_versions_path_created", "versions", ["path", "created_at"])
    op.create_table(
        "blob_keys",
        sa.Column("blob_key", sa.String(128), nullable=False),
        sa.Column("path", _path(), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(512), nullable=False),
        sa.Column("key_version", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("blob_key"),
        sa.ForeignKeyConstraint(["blob_key"], ["versions.blob_key"]),
    )
    op.create_index("ix_blob_keys_provider", "blob_keys", ["provider", "key_version"])
    op.create_table(
        "locks",
        sa.Column("path", _path(), nullable=False),
        sa.Column("lock_id", sa.String(256), nullable=False),
        sa.Column("info", sa.LargeBinary(), nullable=False),
        sa.Column("who", sa.String(256), nullable=False),
        sa.Column("operation", sa.String(256), nullable=False),
        sa.Column("client_version", sa.String(64), nullable=False),
        sa.Column("principal", _principal(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("path"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("principal", _principal(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("path", _path(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_path", "events", ["path"])
    op.create_table(
        "audit",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("principal", sa.String(512), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("path", _path(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_audit_path_at", "audit", ["path", "at"])
    op.create_index("ix_audit_principal_at", "audit", ["principal", "at"])
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_table(
        "secret_scans",
        sa.Column("path", _path(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("scanned_at", sa.Float(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("path", "seq"),
    )
    op.create_table(
        "secret_findings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("path", _path(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_secret_findings_version", "secret_findings", ["path", "seq"])
    op.create_table(
        "audit_cursors",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("paths", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", _principal(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.Column("last_used_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    # unique=True, index=True in schema.py: one unique index, no separate constraint
    op.create_index("ix_tokens_hash", "tokens", ["hash"], unique=True)
    op.create_table(
        "schema_info",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("path", _path(), nullable=True),
        sa.Column("principal", sa.String(512), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=True),
        sa.Column("dedup", sa.String(64), nullable=False),
        sa.Column("acknowledged_at", sa.Float(), nullable=True),
        sa.Column("acknowledged_by", sa.String(512), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup"),
    )
    op.create_index("ix_alerts_open", "alerts", ["acknowledged_at", "id"])


def downgrade() -> None:
    raise NotImplementedError(
        "0001 is the baseline: below it there is no stateward schema (restore a backup instead)"
    )
