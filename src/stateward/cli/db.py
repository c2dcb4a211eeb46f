"""``stateward db status|upgrade``: the metadata store's schema revision.

Both need only the store's engine, not the service (no keys, no blob store): they work on a
store that the service could not open yet, such as one behind a pending upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy import Engine

from stateward.cli.context import CliContext, emit_json, pass_ctx
from stateward.config import Settings
from stateward.storage.engine import (
    MetadataStoreError,
    known_revisions,
    schema_status,
    upgrade_schema,
)


@click.group()
def db() -> None:
    """Schema of the metadata store (SQLite or PostgreSQL): status and upgrade."""


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    from stateward.service.factory import metadata_engine

    engine = metadata_engine(settings)
    try:
        yield engine
    except MetadataStoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()


@db.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(obj: CliContext, as_json: bool) -> None:
    """The store's schema revision and this build's newest (head). Changes nothing.

    Exits 1 if the store was upgraded by a newer stateward than this one."""
    settings = obj.settings()
    store = settings.database_display()
    known = known_revisions()
    head = known[-1]
    if settings.database_url is None and not settings.db_path.exists():
        current: str | None = None  # no database yet: do not create one just to look
    else:
        with _engine(settings) as engine:
            current, head = schema_status(engine)
    if current is None:
        state, pending = "empty", known
    elif current in known:
        pending = known[known.index(current) + 1 :]
        state = "pending" if pending else "current"
    else:
        state, pending = "newer", []
    if as_json:
        emit_json(
            {"store": store, "current": current, "head": head, "state": state, "pending": pending}
        )
    else:
        click.echo(f"metadata store:   {store}")
        click.echo(f"current revision: {current or 'none (empty store)'}")
        click.echo(f"head revision:    {head}")
        if state == "current":
            click.echo("up to date")
        elif state != "newer":
            click.echo(
                f"pending: {', '.join(pending)} (applied by `stateward db upgrade` or by the "
                "next start of the server)"
            )
    if state == "newer":
        raise click.ClickException(
            f"the store is at revision {current}, which this stateward does not know: written "
            "by a newer stateward; upgrade the binary"
        )


@db.command()
@pass_ctx
def upgrade(obj: CliContext) -> None:
    """Upgrade the schema to this build's head (the server also does it when it starts).

    One transaction: it is applied whole or not at all. Back the store up first."""
    settings = obj.settings()
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _engine(settings) as engine:
        done = upgrade_schema(engine)
    click.echo(f"metadata store: {settings.database_display()}")
    if done.legacy:
        click.echo(
            "recorded the schema of the release before migrations (schema_info version 1) as "
            "revision 0001"
        )
    for revision in done.applied:
        click.echo(f"applied {revision}")
    if done.changed:
        click.echo(f"now at revision {done.after} (head)")
    else:
        click.echo(f"already at revision {done.after} (head): nothing to do")
