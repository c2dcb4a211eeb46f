"""Root command group."""

from __future__ import annotations

from pathlib import Path

import click

from stateward import __version__
from stateward.audit import context as audit_context
from stateward.audit.context import AuditContext
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
from stateward.errors import ServiceError
from stateward.principal import cli_principal

#: Commands that run no state operation of their own (``serve`` audits each request itself).
UNAUDITED = frozenset({"serve", "policy", "tofu"})


class ServiceGroup(click.Group):
    """Turns service refusals into one-line errors with exit status 1, and records every
    command that used the service in the audit trail (one record per command)."""

    def invoke(self, ctx: click.Context) -> object:
        # click keeps the subcommand in _protected_args (the public name is deprecated)
        pending = [*getattr(ctx, "_protected_args", []), *ctx.args]
        words = [a for a in pending if not a.startswith("-")][:2]
        if not words or words[0] in UNAUDITED:
            return self._run(ctx)
        if not isinstance(self.commands.get(words[0]), click.Group):
            words = words[:1]  # ``rollback PATH 3`` is recorded as ``cli rollback``
        with audit_context.begin("cli " + " ".join(w[:32] for w in words), "cli") as actx:
            actx.who = cli_principal()
            try:
                result = self._run(ctx)
            except click.ClickException as exc:
                self._record(ctx, actx, getattr(exc, "service_error", None) or exc)
                raise
            self._record(ctx, actx, None)
            return result

    def _run(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ServiceError as exc:
            error = click.ClickException(str(exc))
            error.service_error = exc  # type: ignore[attr-defined]
            raise error from None

    @staticmethod
    def _record(
        ctx: click.Context, actx: AuditContext, exc: ServiceError | click.ClickException | None
    ) -> None:
        obj = ctx.obj
        service = getattr(obj, "_service", None) if isinstance(obj, CliContext) else None
        if service is None or actx.recorded:
            return
        try:
            if exc is None:
                service.record_outcome(actx, "ok", 200)
            elif isinstance(exc, ServiceError):
                service.record_outcome(
                    actx, "denied" if exc.denied else "failed", exc.status, str(exc)
                )
            else:
                service.record_outcome(actx, "failed", 400, exc.format_message())
        except ServiceError as audit_exc:
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
    ctx.obj = CliContext(config_file, {"data_dir": data_dir})


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
