"""``stateward alerts [list] [--all] [--json]`` and ``stateward alerts ack ID...``."""

from __future__ import annotations

import datetime as dt

import click
from rich.table import Table

from stateward.cli.context import CliContext, emit_json, pass_ctx, print_table
from stateward.domain.alerts import Alert


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _show(rows: list[Alert], as_json: bool, include_acknowledged: bool) -> None:
    if as_json:
        emit_json([a.to_dict() for a in rows])
        return
    if not rows:
        click.echo("no alerts" if include_acknowledged else "no open alerts")
        return
    table = Table("id", "time (UTC)", "severity", "kind", "rule", "path", "summary")
    if include_acknowledged:
        table.add_column("acknowledged")
    for a in rows:
        cells = [str(a.id), _when(a.at), a.severity, a.kind, a.rule, a.path or "-", a.summary]
        if include_acknowledged:
            cells.append(
                f"{_when(a.acknowledged_at)} by {a.acknowledged_by}" if a.acknowledged_at else "-"
            )
        table.add_row(*cells)
    print_table(table)


_ALL = click.option(
    "--all", "include_acknowledged", is_flag=True, help="Include acknowledged alerts."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
_LIMIT = click.option(
    "-n", "--limit", default=100, show_default=True, type=click.IntRange(1, 1000),
    help="Newest alerts to show.",
)  # fmt: skip


@click.group(invoke_without_command=True)
@_ALL
@_JSON
@_LIMIT
@click.pass_context
def alerts(ctx: click.Context, include_acknowledged: bool, as_json: bool, limit: int) -> None:
    """Alerts raised by the [[alert_rules]]: list them (the default) and acknowledge them."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_, include_acknowledged=include_acknowledged, as_json=as_json, limit=limit)


@alerts.command("list")
@_ALL
@_JSON
@_LIMIT
@pass_ctx
def list_(obj: CliContext, include_acknowledged: bool, as_json: bool, limit: int) -> None:
    """Open alerts, newest first (--all: acknowledged ones too)."""
    rows = obj.call(obj.ops.alerts.list_alerts, include_acknowledged, limit)
    _show(rows, as_json, include_acknowledged)


@alerts.command("ack")
@click.argument("ids", nargs=-1, required=True, type=click.IntRange(min=1))
@pass_ctx
def ack(obj: CliContext, ids: tuple[int, ...]) -> None:
    """Acknowledge alerts by ID (all or nothing: an unknown ID changes nothing)."""
    result = obj.call(obj.ops.alerts.acknowledge_alerts, list(ids))
    if result.acknowledged:
        click.echo("acknowledged " + ", ".join(f"#{i}" for i in result.acknowledged))
    if result.already:
        click.echo("already acknowledged " + ", ".join(f"#{i}" for i in result.already))
