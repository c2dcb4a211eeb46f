"""The application object passed down to every command (click's ``pass_obj``).

A command runs its operations through the gate as the operator's own shell principal
(``cli:<user>``, acting as ``admin``: whoever can run it on the data directory can read the
database and the keys anyway): ``obj.call(obj.ops.<group>.<method>, …)``. All the operations of
one command share one gate session, so the command is one audit record.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.table import Table

from stateward.config import ConfigError, Settings, load_settings
from stateward.domain.principal import Principal, cli_principal
from stateward.gate import Caller, Gate, Session
from stateward.service.core import StateService

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class CliContext:
    config_file: Path | None
    flags: dict[str, Any] = field(default_factory=dict)
    #: The command line as recorded (``cli rollback``); set by the root group.
    operation: str = "cli"
    _gate: Gate | None = None
    _session: Session | None = None

    def settings(self, **extra: Any) -> Settings:
        try:
            return load_settings(self.config_file, {**self.flags, **extra})
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    @property
    def gate(self) -> Gate:
        """The gate over this data directory's store (opened on first use)."""
        if self._gate is None:
            from stateward.gate.build import open_gate

            self._gate = open_gate(self.settings())
            ctx = click.get_current_context(silent=True)
            if ctx is not None:  # the pool's connections close with the command
                ctx.call_on_close(self._gate.ops.close)
        return self._gate

    @property
    def ops(self) -> StateService:
        """The operations to name in :meth:`call`."""
        return self.gate.ops

    @property
    def who(self) -> Principal:
        return cli_principal()

    def call(
        self, op: Callable[Concatenate[Principal, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``op`` in this command's gate session."""
        return self.session().run(op, *args, **kwargs)

    def session(self) -> Session:
        """This command's gate session (opened on first use, closed by the root group)."""
        if self._session is None:
            caller = Caller(self.operation, "cli", principal=self.who)
            self._session = self.gate.session(caller).__enter__()
        return self._session

    def close(self, exc: BaseException | None) -> None:
        """End the command's session: its one audit record (if it used the store)."""
        session, self._session = self._session, None
        if session is not None:
            session.__exit__(type(exc) if exc is not None else None, exc, None)


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


pass_ctx = click.make_pass_decorator(CliContext)


def print_table(table: Table) -> None:
    """Print a rich table; when piped, wide enough that nothing is cut off."""
    console = Console() if sys.stdout.isatty() else Console(width=240)
    console.print(table)
