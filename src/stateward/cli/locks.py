"""``stateward locks list|break``."""

from __future__ import annotations

import click
from rich.table import Table

from stateward.cli.context import CliContext, emit_json, pass_ctx, print_table


@click.group()
def locks() -> None:
    """Show and break state locks."""


@locks.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def list_(obj: CliContext, as_json: bool) -> None:
    """List every held lock with its holder and age."""
    views = obj.call(obj.ops.locks.list_locks)
    if as_json:
        emit_json([v.to_dict() for v in views])
        return
    table = Table("path", "lock id", "who", "operation", "age (s)")
    for v in views:
        table.add_row(v.path, v.id, v.who, v.operation, f"{v.age_seconds:.0f}")
    print_table(table)


@locks.command("break")
@click.argument("path")
@pass_ctx
def break_(obj: CliContext, path: str) -> None:
    """Release someone else's lock (recorded as a break-lock event)."""
    v = obj.call(obj.ops.locks.break_lock, path)
    click.echo(f"broke lock {v.id} on {path} held by {v.who or 'unknown'}")
