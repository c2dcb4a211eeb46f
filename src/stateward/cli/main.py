"""Root command group."""

from __future__ import annotations

from pathlib import Path

import click

from stateward import __version__
from stateward.cli.alerts import alerts
from stateward.cli.audit import audit
from stateward.cli.context import CliContext
from stateward.cli.db import db
from stateward.cli.export import export
from stateward.cli.imports import import_group
from stateward.cli.keys import keys
from stateward.cli.locks import locks
from stateward.cli.maint import events, gc
from stateward.cli.migrate import migrate_store
from stateward.cli.policy import policy
from stateward.cli.s3 import s3
from stateward.cli.secrets import state
from stateward.cli.serve import serve
from stateward.cli.states import STATE_COMMANDS
from stateward.cli.tofu import tofu
from stateward.cli.tokens import token
from stateward.domain.errors import BadRequest, ServiceError
from stateward.transfer.errors import TransferError

#: Commands that run no state operation of their own (``serve`` audits each request itself).
UNAUDITED = frozenset({"serve", "policy", "tofu"})


class ServiceGroup(click.Group):
    """Turns service refusals and import/export failures into one-line errors with exit status
    1, and ends each command's
    gate session with its outcome (one audit record per command that used the store)."""

    def invoke(self, ctx: click.Context) -> object:
        # click keeps the subcommand in _protected_args (the public name is deprecated)
        pending = [*getattr(ctx, "_protected_args", []), *ctx.args]
        words = [a for a in pending if not a.startswith("-")][:2]
        if not words or words[0] in UNAUDITED:
            return self._run(ctx)
        if not isinstance(self.commands.get(words[0]), click.Group):
            words = words[:1]  # ``rollback PATH 3`` is recorded as ``cli rollback``
        operation = "cli " + " ".join(w[:32] for w in words)
        try:
            result = self._run(ctx, operation)
        except click.ClickException as exc:
            cause = getattr(exc, "service_error", None) or BadRequest(exc.format_message())
            self._close(ctx, cause)
            raise
        except BaseException as exc:
            self._close(ctx, exc)
            raise
        self._close(ctx, None)
        return result

    def _run(self, ctx: click.Context, operation: str | None = None) -> object:
        if operation is not None:
            ctx.meta["stateward.operation"] = operation
        try:
            return super().invoke(ctx)
        except ServiceError as exc:
            error = click.ClickException(str(exc))
            error.service_error = exc  # type: ignore[attr-defined]
            raise error from None
        except TransferError as exc:  # reading a source or writing a sink failed
            raise click.ClickException(str(exc)) from None

    @staticmethod
    def _close(ctx: click.Context, exc: BaseException | None) -> None:
        obj = ctx.obj
        if not isinstance(obj, CliContext):
            return
        try:
            obj.close(exc)
        except ServiceError as audit_exc:  # the trail is down: the command fails
            raise click.ClickException(str(audit_exc)) from None


@click.group(cls=ServiceGroup)
@click.version_option(__version__, prog_name="stateward")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STATEWARD_CONFIG",
    help="TOML configuration file.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory (default ./stateward-data).",
)
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, data_dir: Path | None) -> None:
    """stateward: hardened remote state for Terraform and OpenTofu."""
    operation = ctx.meta.get("stateward.operation", "cli")
    ctx.obj = CliContext(config_file, {"data_dir": data_dir}, operation)


for command in (serve, locks, gc, events, token, keys, audit, state, alerts, *STATE_COMMANDS):
    cli.add_command(command)
cli.add_command(policy)
cli.add_command(tofu)
cli.add_command(export)
cli.add_command(import_group)
cli.add_command(db)
cli.add_command(migrate_store)
cli.add_command(s3)


def main() -> None:
    cli(prog_name="stateward")
