"""``stateward migrate-store``: copy everything from one store to another, verified.

The source is the store of the usual ``--config``/``--data-dir``; the target is described by
``--to-config`` (and ``--to-data-dir``), read from that file and the flag only: the
``STATEWARD_*`` environment variables configure the source, never the target. The workflow
(checks, copy, verification, the target's audit record) is the service's
(``service/migrate.py``); this command shows the plan, asks, and prints the reports.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.table import Table

from stateward.cli.context import CliContext, pass_ctx, print_table
from stateward.config import ConfigError, load_settings
from stateward.domain.errors import ServiceError
from stateward.service.migrate import (
    KEYS_NOTE,
    MigrationRefused,
    Plan,
    StoreMigration,
    VerifyReport,
)


@click.command("migrate-store")
@click.option(
    "--to-config",
    "to_config",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Configuration file (TOML) of the target store, e.g. with database_url and "
    "[blob_store]. STATEWARD_* environment variables do not apply to it.",
)
@click.option(
    "--to-data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory of the target (default: data_dir of --to-config).",
)
@click.option(
    "--verify-decrypt",
    is_flag=True,
    help="Also decrypt every version with the target's key providers before committing.",
)
@click.option("--dry-run", is_flag=True, help="Check and show what would be copied; write nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force",
    is_flag=True,
    help="Copy even though the source holds unexpired leases (a server seems to be running).",
)
@pass_ctx
def migrate_store(
    obj: CliContext,
    to_config: Path,
    to_data_dir: Path | None,
    verify_decrypt: bool,
    dry_run: bool,
    yes: bool,
    force: bool,
) -> None:
    """Copy every state, version, lock, token, audit record and blob to another store.

    Stop the servers of the source first. The target (--to-config) must be empty; it gets the
    same rows (ids, timestamps, the audit hash chain) and the same blob bytes, in a blob store
    of its own (another data directory or bucket prefix than the source's). Every table's
    row count and hash, every blob's sha256 and the audit chain are verified before the copy
    is committed; exit status 1 on any refusal or mismatch."""
    source = obj.settings()
    try:
        target = load_settings(to_config, {"data_dir": to_data_dir}, env={})
    except ConfigError as exc:
        raise click.ClickException(f"target configuration: {exc}") from None
    move = StoreMigration(source, target, obj.who, force=force)
    try:
        _migrate(move, verify_decrypt=verify_decrypt, dry_run=dry_run, yes=yes)
    except MigrationRefused as exc:
        if exc.report is not None:
            _print_report(exc.report)
            for problem in exc.report.problems()[:20]:
                click.echo(f"  {problem}", err=True)
        raise click.ClickException(str(exc)) from None
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        move.close()


def _migrate(move: StoreMigration, *, verify_decrypt: bool, dry_run: bool, yes: bool) -> None:
    click.echo(f"source: {move.describe(move.source)}")
    click.echo(f"target: {move.describe(move.target)}")
    click.echo(KEYS_NOTE)
    planned = move.check(progress=bar)
    for note in planned.notes:
        click.echo(note)
    click.echo(f"to copy: {planned.summary} ({_human(planned.size)})")
    if dry_run:
        _print_plan(planned.plan)
        click.echo("dry run: nothing was written")
        return
    if not yes:
        click.confirm(
            f"Copy {planned.summary} to {move.target.database_display()}?", abort=True
        )
    result = move.run(planned, verify_decrypt=verify_decrypt, progress=bar)
    _print_report(result.report)
    click.echo(f"copied and verified in {result.seconds:.1f}s")
    if not verify_decrypt:
        click.echo("decryption with the target's keys not checked (--verify-decrypt does)")
    click.echo(
        f"recorded in the target's audit trail as record {result.record_seq}; "
        f"chain verified ({result.chain.checked} record(s))"
    )


# -- output -------------------------------------------------------------------------------------


@contextmanager
def bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """Progress on stderr (click's bar: drawn on a terminal, one line otherwise)."""
    if total <= 0:
        yield lambda _n: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as progress_bar:
        yield progress_bar.update


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _print_plan(plan: Plan) -> None:
    table = Table("table", "rows")
    for name, digest in plan.tables.items():
        table.add_row(name, str(digest.rows))
    table.add_row("blobs", str(len(plan.blobs)))
    print_table(table)


def _print_report(report: VerifyReport) -> None:
    table = Table("table", "source rows", "target rows", "hash")
    for t in report.tables:
        table.add_row(t.name, str(t.source_rows), str(t.target_rows),
                      "match" if t.ok else "MISMATCH")  # fmt: skip
    b = report.blobs
    status = "match" if not (b.missing or b.mismatched) else "MISMATCH"
    table.add_row("blobs (sha256)", str(b.checked), str(b.checked - len(b.missing)), status)
    if b.decrypted:
        table.add_row("versions (decrypt)", str(b.checked), str(b.checked - len(b.undecryptable)),
                      "match" if not b.undecryptable else "MISMATCH")  # fmt: skip
    if report.tables:
        audit = report.audit
        table.add_row("audit chain", str(audit.checked), str(audit.checked),
                      "verified" if audit.ok else f"BROKEN at {audit.first_bad_seq}")  # fmt: skip
    print_table(table)
