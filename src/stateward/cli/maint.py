"""``stateward gc`` and ``stateward events``."""

from __future__ import annotations

import datetime as dt

import click
from rich.table import Table

from stateward.cli.context import CliContext, emit_json, pass_ctx, print_table


@click.command()
@pass_ctx
def gc(obj: CliContext) -> None:
    """Apply retention, purge expired deleted paths, collect orphan blobs."""
    emit_json(obj.call(obj.ops.admin.run_maintenance).to_dict())


@click.command()
@click.argument("path", required=False)
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def events(obj: CliContext, path: str | None, limit: int, as_json: bool) -> None:
    """Administrative events (break-lock, force-unlock, delete, rollback, overrides …)."""
    rows = obj.call(obj.ops.admin.events, path, limit)
    if as_json:
        emit_json([e.to_dict() for e in rows])
        return
    table = Table("time (UTC)", "principal", "action", "path", "detail")
    for e in rows:
        at = dt.datetime.fromtimestamp(e.at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(at, e.principal, e.action, e.path or "", e.detail)
    print_table(table)
