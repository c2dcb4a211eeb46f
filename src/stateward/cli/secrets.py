"""``stateward state scan|sanitize``: secrets stored in clear text in a state."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from stateward.cli.context import CliContext, emit_json, pass_ctx, print_table


@click.group("state")
def state() -> None:
    """Find the secrets a state holds in clear text; make a copy safe to share."""


@state.command("scan")
@click.argument("path")
@click.option("--version", "seq", type=int, help="Version number (default: current).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def scan(obj: CliContext, path: str, seq: int | None, as_json: bool) -> None:
    """Where PATH holds secrets (location and kind; never a value). Exit 1 if any."""
    result = obj.call(obj.ops.secrets.scan_state, path, seq)
    if as_json:
        emit_json(result.to_dict())
    else:
        table = Table("location", "kind", "rule")
        for f in result.findings:
            table.add_row(f.location, f.kind, f.rule)
        print_table(table)
        note = f" ({result.note})" if result.note else ""
        click.echo(f"{path} version {result.seq}: {len(result.findings)} finding(s){note}")
    if result.findings:
        sys.exit(1)


@state.command("sanitize")
@click.argument("path")
@click.option("--version", "seq", type=int, help="Version number (default: current).")
@pass_ctx
def sanitize(obj: CliContext, path: str, seq: int | None) -> None:
    """The state on stdout with every finding's value replaced by REDACTED(<kind>)."""
    body = obj.call(obj.ops.secrets.sanitized_state, path, seq)
    sys.stdout.buffer.write(body)
    sys.stdout.flush()
