"""Root command group."""

from __future__ import annotations

from pathlib import Path

import click

from stateward import __version__
from stateward.cli.context import CliContext
from stateward.cli.export import export
from stateward.cli.keys import keys
from stateward.cli.locks import locks
from stateward.cli.maint import events, gc
from stateward.cli.policy import policy
from stateward.cli.serve import serve
from stateward.cli.states import STATE_COMMANDS
from stateward.cli.tofu import tofu
from stateward.cli.tokens import token
from stateward.errors import ServiceError


class ServiceGroup(click.Group):
    """Turns service refusals into one-line errors with exit status 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ServiceError as exc:
            raise click.ClickException(str(exc)) from None


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
    ctx.obj = CliContext(config_file, {"data_dir": data_dir})


for command in (serve, locks, gc, events, token, keys, *STATE_COMMANDS):
    cli.add_command(command)
cli.add_command(policy)
cli.add_command(tofu)
cli.add_command(export)


def main() -> None:
    cli(prog_name="stateward")
