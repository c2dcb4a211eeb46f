"""``stateward keys status|rotate|rewrap|retire``: the keys protecting stored states."""

from __future__ import annotations

import click
from rich.progress import Progress
from rich.table import Table

from stateward.cli.context import CliContext, emit_json, pass_ctx, print_table


@click.group()
def keys() -> None:
    """Key status, rotation and rewrap (offline, against the data directory)."""


@keys.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(obj: CliContext, as_json: bool) -> None:
    """Which key versions protect how many stored blobs; what rewrap still has to move."""
    report = obj.call(obj.ops.keys.key_status)
    if as_json:
        emit_json(report.to_dict())
        return
    table = Table("provider", "kind", "current", "version", "blobs", "state")
    for p in report.providers:
        versions = sorted(set(p.references) | set(p.versions) | {p.current_version})
        for v in versions:
            n = p.references.get(v, 0)
            if v == p.current_version:
                state = "current"
            elif n:
                state = "decrypt-only (rewrap moves these)"
            else:
                state = "unreferenced (may be retired)"
            table.add_row(p.name, p.kind, p.current_version, v or "-", str(n), state)
    print_table(table)
    click.echo(f"unencrypted blobs from earlier releases: {report.unencrypted}")
    click.echo(f"blobs not under their path's current key (rewrap moves them): {report.stale}")


@keys.command("rotate")
@click.argument("provider")
@pass_ctx
def rotate(obj: CliContext, provider: str) -> None:
    """Start a new version of a key-file key. New data keys use it at once (a running server
    notices the changed file); cached data keys age out within data_key_max_age_seconds.
    Then run ``keys rewrap``."""
    version = obj.call(obj.ops.keys.rotate_key, provider)
    click.echo(f"{provider}: new key version {version} is current; run 'stateward keys rewrap'")


@keys.command("rewrap")
@pass_ctx
def rewrap(obj: CliContext) -> None:
    """Re-wrap every stored data key under its path's current key (resumable)."""
    with Progress(transient=False) as bar:
        task = bar.add_task("rewrapping", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        count = obj.call(obj.ops.keys.rewrap, progress)
    click.echo(f"rewrapped {count} blob(s)")


@keys.command("retire")
@click.argument("provider")
@click.argument("version")
@pass_ctx
def retire(obj: CliContext, provider: str, version: str) -> None:
    """Delete an old key-file version that no stored data key references any more."""
    obj.call(obj.ops.keys.retire_key, provider, version)
    click.echo(f"{provider}: key version {version} retired")
