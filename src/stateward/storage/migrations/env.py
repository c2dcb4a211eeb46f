"""Alembic environment of the metadata store's migrations.

Run only through :func:`stateward.storage.engine.init_schema` (and the ``stateward db``
commands built on it), never by the ``alembic`` command line and never offline: the caller
hands over a connection already inside its write transaction (``config.attributes
["connection"]``), which holds the PostgreSQL write lock or SQLite's ``BEGIN IMMEDIATE`` lock,
so every migration of one upgrade, and the stamp of a pre-migration database, commit or roll
back together, and replicas starting at once migrate one after the other.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from stateward.storage.schema import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "stateward's migrations run inside stateward (init_schema, `stateward db upgrade`), "
        "on a connection it passes in; there is no offline mode"
    )

sqlite = connection.dialect.name == "sqlite"
if sqlite:
    # Batch migrations rebuild a table (create a copy, move the rows, drop, rename); with
    # foreign_keys=ON (engine.py), dropping a referenced table would fail on the spot. Deferred,
    # the references are checked at the commit, when the renamed copy satisfies them again.
    # (PRAGMA foreign_keys cannot change inside a transaction; defer_foreign_keys can, and it
    # ends with the transaction.)
    connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite has almost no ALTER TABLE: op.batch_alter_table() rebuilds the table instead.
    render_as_batch=sqlite,
)
with context.begin_transaction():  # a no-op: the caller's transaction is already open
    context.run_migrations()
