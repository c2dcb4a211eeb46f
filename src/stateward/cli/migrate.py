"""``stateward migrate-store``: copy everything from one store to another, verified.

The source is the store of the usual ``--config``/``--data-dir``; the target is described by
``--to-config`` (and ``--to-data-dir``), read from that file and the flag only: the
``STATEWARD_*`` environment variables configure the source, never the target. Typical moves:
the embedded store (SQLite + blob files) to PostgreSQL + S3 when outgrowing one machine, and
back. The copy itself is storage/copy.py: raw rows and raw blob bytes, verified before the
target's transaction commits.

Blobs stay encrypted and are copied as they are, so the target must use the same key
providers (the same key file contents, passphrase or KMS keys) and the same token key file:
both are checked where they are files, before anything is written; ``--verify-decrypt``
decrypts every version with the target's configuration to prove the rest.

The target always gets its own blob store (another data directory, bucket or non-overlapping
prefix): a shared one is refused, since each store's gc and retention would delete the blobs
only the other's metadata references.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import click
from rich.table import Table
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import OperationalError

from stateward.cli.context import CliContext, pass_ctx, print_table
from stateward.config import ConfigError, Settings, load_settings
from stateward.crypto.barrier import Barrier, BlobCorrupt
from stateward.crypto.providers.base import KeyProviderError
from stateward.crypto.providers.local import KeyfileConfig, read_keyfile
from stateward.domain.actions import Action
from stateward.domain.errors import ServiceError
from stateward.domain.principal import cli_principal
from stateward.service import context as audit_context
from stateward.service.context import AuditContext
from stateward.service.core import StateService
from stateward.service.factory import blob_store, build_service, metadata_engine
from stateward.service.migrate import chain_check
from stateward.storage.blobs import FileBlobStore
from stateward.storage.copy import (
    BlobEntry,
    BlobLocation,
    CopyFailed,
    CopyRefused,
    Plan,
    StoreHandle,
    VerifyReport,
    active_leases,
    existing_rows,
    plan_copy,
    read_snapshot,
    refuse_shared_blobs,
)
from stateward.storage.copy import copy_store as run_copy
from stateward.storage.engine import MetadataStoreError, init_schema
from stateward.storage.s3 import S3BlobStore

KEYS_NOTE = (
    "Blobs are copied byte for byte and stay encrypted: the target must use the same key "
    "providers (same master key file, passphrase or KMS keys) and the same token_key_file "
    "as the source."
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
    engines: list[Engine] = []
    try:
        _migrate(source, target, engines, verify_decrypt=verify_decrypt, dry_run=dry_run,
                 yes=yes, force=force)  # fmt: skip
    except (CopyRefused, MetadataStoreError, KeyProviderError, ServiceError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except OperationalError as exc:
        first = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        raise click.ClickException(f"metadata store unavailable: {first}") from None
    finally:
        for engine in engines:
            engine.dispose()


def _migrate(
    source: Settings,
    target: Settings,
    engines: list[Engine],
    *,
    verify_decrypt: bool,
    dry_run: bool,
    yes: bool,
    force: bool,
) -> None:
    if _metadata_identity(source) == _metadata_identity(target):
        raise click.ClickException(
            "source and target are the same metadata store: give the target its own "
            "database_url or data directory"
        )
    refuse_shared_blobs(_blob_location(source), _blob_location(target))
    if source.database_url is None and not source.db_path.is_file():
        raise click.ClickException(f"no stateward database at {source.db_path} (the source)")
    click.echo(f"source: {source.database_display()}, blobs {_blob_display(source)}")
    click.echo(f"target: {target.database_display()}, blobs {_blob_display(target)}")
    click.echo(KEYS_NOTE)

    src_engine = metadata_engine(source)
    engines.append(src_engine)
    init_schema(src_engine)  # brings an older source schema up to date, as any command does
    src = StoreHandle(src_engine, blob_store(source), source.database_display())
    with read_snapshot(src_engine) as conn:
        running = active_leases(conn, time.time())
    if running and not force:
        jobs = ", ".join(f"{name} (held by {holder})" for name, holder in running[:3])
        raise click.ClickException(
            f"a server seems to be running on the source: unexpired leases on {jobs}; stop "
            "every server of the source first (--force copies anyway)"
        )
    _refuse_nonempty_target(target)
    with read_snapshot(src_engine) as conn:
        plan = plan_copy(conn, to_postgres=target.database_url is not None, progress=bar)
    notes = _check_keys(source, target, plan.key_versions)
    notes += _check_token_key(source, target, plan.tables["tokens"].rows)
    for note in notes:
        click.echo(note)
    size = sum(b.size for b in plan.blobs)
    what = f"{plan.rows} row(s) in {len(plan.tables)} tables, {len(plan.blobs)} blob(s)"
    click.echo(f"to copy: {what} ({_human(size)})")
    if dry_run:
        _print_plan(plan)
        click.echo("dry run: nothing was written")
        return
    if not yes:
        click.confirm(f"Copy {what} to {target.database_display()}?", abort=True)

    target.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    svc = build_service(target)
    engines.append(svc.engine)
    tgt = StoreHandle(svc.engine, svc.barrier.blobs, target.database_display())
    started = time.monotonic()
    try:
        result = run_copy(
            src,
            tgt,
            verify_chain=chain_check,
            check_blob=_decrypt_check(svc.barrier) if verify_decrypt else None,
            progress=bar,
        )
    except CopyFailed as exc:
        if exc.report is not None:
            _print_report(exc.report)
            for problem in exc.report.problems()[:20]:
                click.echo(f"  {problem}", err=True)
        raise click.ClickException(f"{exc}; nothing was kept in the target") from None
    _print_report(result.report)
    click.echo(f"copied and verified in {time.monotonic() - started:.1f}s")
    if not verify_decrypt:
        click.echo("decryption with the target's keys not checked (--verify-decrypt does)")
    _record(svc, source, result.plan)


# -- the two stores -----------------------------------------------------------------------------


def _metadata_identity(settings: Settings) -> str:
    if settings.database_url is None:
        return f"sqlite:{settings.db_path.resolve()}"
    url = make_url(settings.database_url)
    return f"postgresql:{url.host}:{url.port or 5432}/{url.database}"


def _blob_location(settings: Settings) -> BlobLocation:
    cfg = settings.blob_store
    if cfg is None:
        return BlobLocation.files(settings.blob_dir)
    return BlobLocation.s3(cfg.bucket, cfg.prefix)


def _blob_display(settings: Settings) -> str:
    cfg = settings.blob_store
    if cfg is None:
        return f"in files under {settings.blob_dir}"
    return f"in s3://{cfg.bucket}/{cfg.prefix}" + (
        f" at {cfg.endpoint_url}" if cfg.endpoint_url else ""
    )


def _refuse_nonempty_target(target: Settings) -> None:
    """Refuse a target holding anything, without writing to it (not even its schema)."""
    if target.database_url is not None or target.db_path.is_file():
        engine = metadata_engine(target)
        try:
            with engine.connect() as conn:
                held = existing_rows(conn)
        finally:
            engine.dispose()
        if held:
            what = ", ".join(f"{n} {name}" for name, n in held.items())
            raise click.ClickException(
                f"the target store is not empty ({what}): migrate-store copies into an empty "
                "store only, it never merges"
            )
    cfg = target.blob_store
    if cfg is not None:
        first = next(iter(S3BlobStore(cfg).list()), None)
    elif target.blob_dir.is_dir():
        first = next(iter(FileBlobStore(target.blob_dir).list()), None)
    else:
        first = None
    if first is not None:
        raise click.ClickException(
            f"the target blob store ({_blob_display(target)}) already holds blobs: give the "
            "target an empty bucket, prefix or data directory"
        )


# -- keys ---------------------------------------------------------------------------------------


def _provider_configs(settings: Settings) -> dict[str, object]:
    configs: dict[str, object] = dict(settings.key_providers)
    configs.setdefault("default", KeyfileConfig(create=True))
    return configs


def _check_keys(source: Settings, target: Settings, used: Mapping[str, set[str]]) -> list[str]:
    """Refuse a target that lacks a key the source's blobs need, where that can be seen
    without asking a KMS: every provider must be configured with the same type, and key files
    must hold the same key versions. Returns notes for what could not be checked."""
    notes = []
    src_configs, tgt_configs = _provider_configs(source), _provider_configs(target)
    for name in sorted(used):
        src_cfg, tgt_cfg = src_configs.get(name), tgt_configs.get(name)
        if src_cfg is None:
            notes.append(f"note: key provider {name!r} of some blobs is not in the source's "
                         "configuration either")  # fmt: skip
            continue
        if tgt_cfg is None or type(tgt_cfg) is not type(src_cfg):
            raise click.ClickException(
                f"blobs are encrypted by key provider {name!r}, which the target configuration "
                f"does not define as the source does: copy its [key_providers.{name}] section"
            )
        if isinstance(src_cfg, KeyfileConfig) and isinstance(tgt_cfg, KeyfileConfig):
            _same_keyfile(name, _keyfile(source, src_cfg), _keyfile(target, tgt_cfg), used[name])
        else:
            notes.append(f"note: key provider {name!r} is not a key file; only --verify-decrypt "
                         "proves the target can use it")  # fmt: skip
    return notes


def _keyfile(settings: Settings, config: KeyfileConfig) -> Path:
    return config.path or settings.data_dir / "master.key"


def _same_keyfile(name: str, src: Path, tgt: Path, versions: set[str]) -> None:
    if src.resolve() == tgt.resolve():
        return
    fix = f"copy {src} there (mode 0600) or set [key_providers.{name}] path = {str(src)!r}"
    if not tgt.exists():
        raise click.ClickException(
            f"the target's key file for provider {name!r}, {tgt}, does not exist: {fix}"
        )
    try:
        _cur, src_keys = read_keyfile(src, name)
        _cur, tgt_keys = read_keyfile(tgt, name)
    except KeyProviderError as exc:
        raise click.ClickException(str(exc)) from None
    for version in sorted(versions):
        mine, theirs = src_keys.get(version), tgt_keys.get(version)
        if mine is not None and (theirs is None or not hmac.compare_digest(mine, theirs)):
            raise click.ClickException(
                f"the target's key file {tgt} does not hold version {version} of key provider "
                f"{name!r} as the source's {src} does: {fix}"
            )


def _check_token_key(source: Settings, target: Settings, tokens: int) -> list[str]:
    """Token rows hold keyed hashes: the target needs the same token key file."""
    src = source.token_key_file or source.data_dir / "token.key"
    tgt = target.token_key_file or target.data_dir / "token.key"
    if not tokens or src.resolve() == tgt.resolve():
        return []
    if not src.exists():
        return [f"note: the source has no token key ({src}): its tokens cannot authenticate"]
    fix = f"copy {src} there (mode 0600) or set token_key_file = {str(src)!r}"
    if not tgt.exists():
        raise click.ClickException(
            f"the target's token key file {tgt} does not exist, so none of the {tokens} "
            f"token(s) would authenticate there: {fix}"
        )
    if not hmac.compare_digest(src.read_bytes(), tgt.read_bytes()):
        raise click.ClickException(
            f"the target's token key file {tgt} differs from the source's, so none of the "
            f"{tokens} token(s) would authenticate there: {fix}"
        )
    return []


def _decrypt_check(barrier: Barrier) -> Callable[[BlobEntry, bytes], str | None]:
    """``--verify-decrypt``: open each copied blob with the target's keys; its plaintext must
    have the version's sha256."""

    def check(entry: BlobEntry, data: bytes) -> str | None:
        try:
            body = barrier.open(entry.path, entry.blob_key, data)
        except (BlobCorrupt, KeyProviderError) as exc:
            return f"does not decrypt with the target's keys ({exc})"
        if hashlib.sha256(body).hexdigest() != entry.sha256:
            return "decrypts to content whose sha256 differs from the version's"
        return None

    return check


# -- output -------------------------------------------------------------------------------------


@contextmanager
def bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """Progress on stderr (click's bar: drawn on a terminal, one line otherwise)."""
    if total <= 0:
        yield lambda _n: None
        return
    stream = sys.stderr
    with click.progressbar(length=total, label=label, file=stream) as progress_bar:
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


def _record(svc: StateService, source: Settings, plan: Plan) -> None:
    """Append one ``migrate-store`` record to the target's audit trail, so its (copied) chain
    continues and shows the move, then verify the chain through the target's service."""
    current = audit_context.current()
    scope: AbstractContextManager[AuditContext] = (
        nullcontext(current) if current is not None else audit_context.begin("cli migrate-store")
    )
    who = cli_principal()
    reason = (
        f"migrate-store from {source.database_display()} with blobs {_blob_display(source)}: "
        f"{plan.tables['versions'].rows} version(s), {plan.tables['audit'].rows} audit record(s)"
    )
    try:
        with scope as ctx:
            ctx.who, ctx.action, ctx.path, ctx.source = who, Action.ADMIN.value, None, "cli"
            svc.record_outcome(ctx, "ok", 200, reason)
        report = svc.verify_audit(who)
    except ServiceError as exc:
        raise click.ClickException(
            f"the copy is complete and verified, but the target's audit trail could not record "
            f"it: {exc}"
        ) from None
    if not report.ok:
        raise click.ClickException(
            f"the target's audit trail is broken at record {report.first_bad_seq}: {report.problem}"
        )
    click.echo(
        f"recorded in the target's audit trail as record {svc.audit_head_seq()}; "
        f"chain verified ({report.checked} record(s))"
    )
