"""The application object passed down to every command (click's ``pass_obj``)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from stateward.config import ConfigError, Settings, load_settings
from stateward.domain.principal import Principal, cli_principal
from stateward.service.core import StateService


@dataclass
class CliContext:
    config_file: Path | None
    flags: dict[str, Any] = field(default_factory=dict)
    _service: StateService | None = None

    def settings(self, **extra: Any) -> Settings:
        try:
            return load_settings(self.config_file, {**self.flags, **extra})
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    def service(self) -> StateService:
        if self._service is None:
            from stateward.service.factory import build_service

            self._service = build_service(self.settings())
            ctx = click.get_current_context(silent=True)
            if ctx is not None:  # the pool's connections close with the command
                ctx.call_on_close(self._service.engine.dispose)
        return self._service

    @property
    def who(self) -> Principal:
        return cli_principal()


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


pass_ctx = click.make_pass_decorator(CliContext)


def print_table(table: Table) -> None:
    """Print a rich table; when piped, wide enough that nothing is cut off."""
    console = Console() if sys.stdout.isatty() else Console(width=240)
    console.print(table)
