"""State commands: list, show, pull, history, diff, rollback, delete, restore, purge, protect,
allow-next-write."""

from __future__ import annotations

import datetime as dt
import sys

import click
from rich.table import Table

from stateward.cli.context import CliContext, emit_json, pass_ctx, print_table


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.command("list")
@click.option("--prefix", default="", help="Path prefix or glob (e.g. prod/** or team/app).")
@click.option("--deleted", is_flag=True, help="Include soft-deleted paths.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def list_states(obj: CliContext, prefix: str, deleted: bool, as_json: bool) -> None:
    """List state paths with serial, size, last writer and lock status."""
    rows = obj.call(obj.ops.history.list_states, prefix, deleted)
    if as_json:
        emit_json([r.to_dict() for r in rows])
        return
    table = Table(
        "path", "serial", "versions", "size", "last writer", "updated (UTC)", "lock", "flags"
    )
    for r in rows:
        flags = ",".join(
            f for f, on in (("protected", r.protected), ("deleted", r.deleted_at is not None)) if on
        )
        lock = f"{r.lock_who or '?'} ({r.lock_age_seconds:.0f}s)" if r.lock_id else ""
        table.add_row(
            r.path,
            str(r.serial if r.serial is not None else ""),
            str(r.seq or ""),
            str(r.size or ""),
            r.last_writer or "",
            _when(r.updated_at),
            lock,
            flags,
        )
    print_table(table)


@click.command()
@click.argument("path")
@click.option("--version", "seq", type=int, help="Version number (default: current).")
@pass_ctx
def show(obj: CliContext, path: str, seq: int | None) -> None:
    """Show a version's metadata as JSON."""
    if seq is None:
        hist = obj.call(obj.ops.history.history, path, limit=1)
        current = [v for v in hist if v.current]
        if not current:
            raise click.ClickException(f"no current state at {path}")
        seq = current[0].seq
    view = obj.call(obj.ops.history.get_version, path, seq)
    emit_json(view.to_dict())


@click.command()
@click.argument("path")
@click.option("--version", "seq", type=int, help="Version number (default: current).")
@pass_ctx
def pull(obj: CliContext, path: str, seq: int | None) -> None:
    """Write a state (current or a version) to stdout, byte for byte."""
    if seq is None:
        state = obj.call(obj.ops.writes.read, path)
        if state is None:
            raise click.ClickException(f"no state at {path}")
        body = state.body
    else:
        _, body = obj.call(obj.ops.history.get_version_body, path, seq)
    sys.stdout.buffer.write(body)
    sys.stdout.flush()


@click.command()
@click.argument("path")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def history(obj: CliContext, path: str, limit: int, as_json: bool) -> None:
    """List the versions of a state, newest first."""
    rows = obj.call(obj.ops.history.history, path, limit)
    if as_json:
        emit_json([r.to_dict() for r in rows])
        return
    table = Table(
        "version",
        "serial",
        "kind",
        "size",
        "resources",
        "outputs",
        "secrets",
        "author",
        "client",
        "time (UTC)",
        "",
    )
    for v in rows:
        kind = v.kind + (f" of {v.source_seq}" if v.source_seq else "")
        table.add_row(
            str(v.seq),
            str(v.serial),
            kind,
            str(v.size),
            str(v.resource_count),
            str(v.output_count),
            "…" if v.secrets is None else str(v.secrets),  # … = not scanned yet
            v.author,
            v.client_version,
            _when(v.created_at),
            "current" if v.current else "",
        )
    print_table(table)


@click.command()
@click.argument("path")
@click.argument("from_seq", type=int)
@click.argument("to_seq", type=int)
@pass_ctx
def diff(obj: CliContext, path: str, from_seq: int, to_seq: int) -> None:
    """Resources and outputs changed between two versions (sensitive values never shown)."""
    emit_json(obj.call(obj.ops.history.diff, path, from_seq, to_seq))


@click.command()
@click.argument("path")
@click.argument("seq", type=int)
@pass_ctx
def rollback(obj: CliContext, path: str, seq: int) -> None:
    """Write version SEQ's content as a new version (refused while locked)."""
    out = obj.call(obj.ops.writes.rollback, path, seq)
    if out.created:
        click.echo(f"rolled back {path} to version {seq} as version {out.seq}")
    else:
        click.echo(f"{path} already has the content of version {seq}; nothing written")


@click.command()
@click.argument("path")
@pass_ctx
def delete(obj: CliContext, path: str) -> None:
    """Soft-delete a state (restorable until the grace period ends)."""
    obj.call(obj.ops.admin.delete, path)
    click.echo(f"deleted {path} (restorable with: stateward restore {path})")


@click.command()
@click.argument("path")
@pass_ctx
def restore(obj: CliContext, path: str) -> None:
    """Undo a soft delete."""
    obj.call(obj.ops.admin.restore, path)
    click.echo(f"restored {path}")


@click.command()
@click.argument("path")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def purge(obj: CliContext, path: str, yes: bool) -> None:
    """Permanently remove a soft-deleted state and all its versions."""
    if not yes:
        click.confirm(f"permanently remove {path} and every version of it?", abort=True)
    n = obj.call(obj.ops.admin.purge, path)
    click.echo(f"purged {path} ({n} versions)")


@click.command()
@click.argument("path")
@click.option("--off", is_flag=True, help="Remove the protection flag.")
@pass_ctx
def protect(obj: CliContext, path: str, off: bool) -> None:
    """Protect a path against delete and purge (like prevent_destroy)."""
    obj.call(obj.ops.admin.set_protected, path, not off)
    click.echo(f"{path} is {'no longer ' if off else ''}protected")


@click.command("allow-next-write")
@click.argument("path")
@pass_ctx
def allow_next_write(obj: CliContext, path: str) -> None:
    """Accept the next write to PATH regardless of lineage/serial (for state push -force)."""
    obj.call(obj.ops.admin.allow_next_write, path)
    click.echo(f"the next write to {path} will skip the lineage/serial guards (recorded)")


STATE_COMMANDS = (
    list_states,
    show,
    pull,
    history,
    diff,
    rollback,
    delete,
    restore,
    purge,
    protect,
    allow_next_write,
)
