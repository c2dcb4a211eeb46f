"""``stateward db status|upgrade``: the metadata store's schema revision (``service/schema.py``
does the work; it needs no keys, so it works on a store the server could not open yet)."""

from __future__ import annotations

import click

from stateward.cli.context import CliContext, emit_json, pass_ctx
from stateward.domain.errors import ServiceError
from stateward.service import schema


@click.group()
def db() -> None:
    """Schema of the metadata store (SQLite or PostgreSQL): status and upgrade."""


@db.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(obj: CliContext, as_json: bool) -> None:
    """The store's schema revision and this build's newest (head). Changes nothing.

    Exits 1 if the store was upgraded by a newer stateward than this one."""
    try:
        found = schema.status(obj.settings())
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    store, current, head, state, pending = (
        found.store, found.current, found.head, found.state, found.pending
    )
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
    try:
        done = schema.upgrade(settings)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
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
