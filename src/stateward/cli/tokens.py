"""``stateward token create|list|revoke``: API tokens, offline against the data dir."""

from __future__ import annotations

import datetime as dt
import re
import time

import click
from rich.table import Table

from stateward.cli.context import CliContext, emit_json, pass_ctx, print_table

_DURATION_RE = re.compile(r"([1-9][0-9]{0,5})([mhdw])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str, now: float) -> float:
    """``90d``/``12h``/``30m``/``2w`` from now, or an ISO 8601 date or time (UTC if no zone)."""
    m = _DURATION_RE.fullmatch(text.strip())
    if m:
        return now + int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.ClickException(
            f"invalid --expires {text[:40]!r}: use a duration (30m, 12h, 90d, 2w) or an ISO 8601 "
            "date/time (2026-01-31, 2026-01-31T18:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    expires = when.timestamp()
    if expires <= now:
        raise click.ClickException(f"--expires {text} is in the past")
    return expires


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (offline, against the data directory)."""


@token.command("create")
@click.argument("name")
@click.option("--role", "roles", multiple=True, help="Role granted (repeatable).")
@click.option("--path", "paths", multiple=True, help="Restrict to a path glob (repeatable).")
@click.option("--expires", help="Lifetime (90d, 12h, 30m) or ISO 8601 date/time.")
@pass_ctx
def create(
    obj: CliContext, name: str, roles: tuple[str, ...], paths: tuple[str, ...], expires: str | None
) -> None:
    """Create a token and print its secret (once) as the last line of stdout."""
    expires_at = None if expires is None else parse_expiry(expires, time.time())
    view, secret = obj.call(obj.ops.tokens.create_token, name, roles, paths, expires_at)
    click.echo(
        f"created token {view.name}: roles {', '.join(view.roles)}; "
        f"paths {', '.join(view.paths) or 'unrestricted'}; "
        f"expires {_when(view.expires_at) + ' UTC' if view.expires_at else 'never'}",
        err=True,
    )
    click.echo("The secret below is shown only this once; store it in a secret manager.", err=True)
    click.echo(str(secret))


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def list_(obj: CliContext, as_json: bool) -> None:
    """List tokens with roles, paths, expiry, revocation and last use (never secrets)."""
    views = obj.call(obj.ops.tokens.list_tokens)
    now = time.time()
    if as_json:
        emit_json([{**v.to_dict(), "status": v.status(now)} for v in views])
        return
    table = Table(
        "name", "roles", "paths", "created (UTC)", "created by", "expires (UTC)",
        "revoked (UTC)", "last used (UTC)", "status",
    )
    for v in views:
        table.add_row(
            v.name,
            ",".join(v.roles),
            ",".join(v.paths) or "(all)",
            _when(v.created_at),
            v.created_by,
            _when(v.expires_at) or "never",
            _when(v.revoked_at),
            _when(v.last_used_at) or "never",
            v.status(now),
        )
    print_table(table)


@token.command("revoke")
@click.argument("name")
@pass_ctx
def revoke(obj: CliContext, name: str) -> None:
    """Revoke a token; requests using it are refused from then on."""
    view = obj.call(obj.ops.tokens.revoke_token, name)
    click.echo(f"token {view.name} revoked at {_when(view.revoked_at)} UTC")
