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
from typing import Any

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


def _create_table(have: set[str], name: str, *parts: Any) -> None:
    if name not in have:
        op.create_table(name, *parts)


def _create_index(have: set[str], name: str, table: str, columns: list[str], **kw: Any) -> None:
    if table not in have:  # an existing table of that release has its indexes already
        op.create_index(name, table, columns, **kw)


def upgrade() -> None:
    # Tables already there are left alone: a database of a release before migrations that
    # predates some of these tables (they were added one release at a time, by create_all)
    # gets the missing ones here, exactly as that release's next start would have made them.
    have = set(sa.inspect(op.get_bind()).get_table_names())
    _create_table(
        have,
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
    _create_table(
        have,
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
    _create_index(have, "ix_versions_path_created", "versions", ["path", "created_at"])
    _create_table(
        have,
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
    _create_index(have, "ix_blob_keys_provider", "blob_keys", ["provider", "key_version"])
    _create_table(
        have,
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
    _create_table(
        have,
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("principal", _principal(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("path", _path(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _create_index(have, "ix_events_path", "events", ["path"])
    _create_table(
        have,
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
    _create_index(have, "ix_audit_path_at", "audit", ["path", "at"])
    _create_index(have, "ix_audit_principal_at", "audit", ["principal", "at"])
    _create_index(have, "ix_audit_at", "audit", ["at"])
    _create_table(
        have,
        "secret_scans",
        sa.Column("path", _path(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("scanned_at", sa.Float(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("path", "seq"),
    )
    _create_table(
        have,
        "secret_findings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("path", _path(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _create_index(have, "ix_secret_findings_version", "secret_findings", ["path", "seq"])
    _create_table(
        have,
        "audit_cursors",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    _create_table(
        have,
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
    _create_index(have, "ix_tokens_hash", "tokens", ["hash"], unique=True)
    _create_table(
        have,
        "schema_info",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    _create_table(
        have,
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
    _create_index(have, "ix_alerts_open", "alerts", ["acknowledged_at", "id"])


def downgrade() -> None:
    raise NotImplementedError(
        "0001 is the baseline: below it there is no stateward schema (restore a backup instead)"
    )
