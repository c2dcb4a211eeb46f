"""``stateward import s3|file``: states, with their history, from an S3 backend or from files.

The way in (``stateward export`` is the way out): every object an ``s3`` backend wrote becomes
a path by the rules of :mod:`stateward.s3layout` (docs/import-export.md), every object version
(``--versions``) a stateward version of kind ``import``, through the service like any other
write (:meth:`~stateward.service.imports.ImportOps.import_state`). Runs are resumable: a second
run imports only what is new, and says so. Nothing is written when two keys would land on the
same path. Nothing larger than ``max_body_bytes`` is downloaded: the listed size decides before
any GET, and a GET reads at most one byte more than the limit.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from stateward.cli.context import CliContext, emit_json, pass_ctx, print_table
from stateward.common.text import source_ref
from stateward.domain import s3layout
from stateward.domain.errors import BadRequest, ServiceError, Unavailable
from stateward.domain.paths import validate_path
from stateward.service.imports import ImportResult, ImportSource
from stateward.transfer.errors import SourceError, TooLargeSource
from stateward.transfer.planner import Candidate, Skip, not_a_state, parse_maps, plan
from stateward.transfer.s3source import (
    Loader,
    ObjectVersion,
    fetch,
    list_current,
    list_versions,
    s3_client,
    s3_ref,
    too_large,
)


@dataclass
class Summary:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, key: str, path: str | None, result: str, versions: int, detail: str) -> None:
        self.rows.append(
            {"key": key, "path": path, "result": result, "versions": versions, "detail": detail}
        )

    def count(self, result: str) -> int:
        return sum(1 for r in self.rows if r["result"] == result)

    def add_result(self, key: str, res: ImportResult) -> None:
        notes = []
        if res.present:
            notes.append(f"{res.present} already present")
        if res.duplicates:
            notes.append(f"{res.duplicates} identical version(s) counted once")
        if res.current_matches:
            self.add(key, res.path, "up to date", 0, "its current version equals the source's")
        elif res.pending == 0:
            self.add(key, res.path, "up to date", 0, "; ".join(notes) or "nothing new")
        elif res.dry_run:
            self.add(key, res.path, "would import", res.pending, "; ".join(notes))
        else:
            first, last = res.imported[0], res.imported[-1]
            seqs = f"as version {first}" if first == last else f"as versions {first}-{last}"
            self.add(key, res.path, "imported", len(res.imported), "; ".join([seqs, *notes]))

    def emit(self, as_json: bool, dry_run: bool) -> None:
        imported = sum(r["versions"] for r in self.rows if r["result"] == "imported")
        totals = {
            "imported_paths": self.count("imported"),
            "imported_versions": imported,
            "would_import_versions": sum(
                r["versions"] for r in self.rows if r["result"] == "would import"
            ),
            "up_to_date": self.count("up to date"),
            "skipped": self.count("skipped"),
            "refused": self.count("refused"),
        }
        if as_json:
            emit_json({"dry_run": dry_run, "rows": self.rows, "totals": totals})
            return
        if self.rows:
            table = Table("source", "path", "result", "versions", "detail")
            for r in self.rows:
                table.add_row(
                    r["key"], r["path"] or "", r["result"], str(r["versions"]), r["detail"]
                )
            print_table(table)
        if dry_run:
            head = f"dry run: would import {totals['would_import_versions']} version(s)"
        elif imported:
            head = f"imported {imported} version(s) into {totals['imported_paths']} path(s)"
        else:
            head = "nothing new to import"
        click.echo(
            f"{head}; {totals['up_to_date']} path(s) up to date, {totals['skipped']} skipped, "
            f"{totals['refused']} refused"
        )

    def finish(self, as_json: bool, dry_run: bool) -> None:
        self.emit(as_json, dry_run)
        refused = self.count("refused")
        if refused:
            raise click.ClickException(f"{refused} source(s) refused: see the summary")


@click.group("import")
def import_group() -> None:
    """Import states and their history from an S3 backend's bucket, or from state files."""


@import_group.command("s3")
@click.option("--bucket", required=True, help="The S3 backend's bucket.")
@click.option("--prefix", default="", help="Only keys under this folder; stripped from paths.")
@click.option(
    "--workspace-key-prefix",
    default=s3layout.DEFAULT_WORKSPACE_KEY_PREFIX,
    show_default=True,
    help="The backend's workspace_key_prefix ('' = no workspaces).",
)
@click.option("--versions", "all_versions", is_flag=True, help="Import every object version.")
@click.option("--endpoint-url", help="S3 endpoint (MinIO, a VPC endpoint, …).")
@click.option("--region", help="AWS region (default: from the environment/profile).")
@click.option("--path-prefix", default="", help="Put every imported path under this one.")
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="KEY=PATH",
    help="Import the object KEY as PATH (KEY=- skips it); repeatable.",
)
@click.option("--dry-run", is_flag=True, help="Read and check everything, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def import_s3(
    obj: CliContext,
    bucket: str,
    prefix: str,
    workspace_key_prefix: str,
    all_versions: bool,
    endpoint_url: str | None,
    region: str | None,
    path_prefix: str,
    maps: tuple[str, ...],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Import the states an S3 backend keeps in BUCKET (see docs/import-export.md)."""
    if path_prefix.strip("/"):
        try:
            validate_path(path_prefix.strip("/"))
        except BadRequest as exc:
            raise click.ClickException(f"--path-prefix: {exc}") from None
    overrides = parse_maps(maps)
    limit = obj.settings().max_body_bytes
    client = s3_client(endpoint_url, region)
    prefixes = s3layout.list_prefixes(prefix, workspace_key_prefix)
    deleted: set[str] = set()
    if all_versions:
        listed, deleted = list_versions(client, bucket, prefixes)
    else:
        listed = list_current(client, bucket, prefixes)
    keys = sorted(k for k in listed if s3layout.selected(k, prefix, workspace_key_prefix))
    unknown = sorted(set(overrides) - set(keys))
    if unknown:
        raise click.ClickException(
            f"--map names key(s) not found under s3://{bucket}/{s3layout.folder(prefix)}: "
            + ", ".join(repr(k) for k in unknown)
        )
    summary = Summary()

    def load(v: ObjectVersion) -> tuple[bytes, str | None, float]:
        return fetch(client, bucket, v, limit)

    skips: list[Skip] = []
    candidates = plan(listed, keys, deleted, overrides, skips, load, prefix,
                      workspace_key_prefix, path_prefix, limit)  # fmt: skip
    for skip in skips:
        summary.add(skip.key, skip.path, skip.result, 0, skip.detail)
    total = sum(len(c.versions) for c in candidates)
    stderr = sys.stderr
    try:
        with click.progressbar(length=total, label="importing", file=stderr) as bar:
            for cand in candidates:
                _import_candidate(obj, cand, bucket, load, summary, bar.update, dry_run)
    except Unavailable:
        summary.emit(as_json, dry_run)  # what was done so far; a later run continues
        raise
    summary.finish(as_json, dry_run)


def _import_candidate(
    obj: CliContext,
    cand: Candidate,
    bucket: str,
    load: Loader,
    summary: Summary,
    advance: Callable[[int], None],
    dry_run: bool,
) -> None:
    done = 0
    try:
        latest = load(cand.versions[-1])
    except TooLargeSource as exc:
        advance(len(cand.versions))
        summary.add(cand.key, cand.path, "skipped", 0, str(exc))
        return
    except SourceError as exc:
        advance(len(cand.versions))
        summary.add(cand.key, cand.path, "refused", 0, str(exc))
        return
    reason = not_a_state(latest[0])
    if reason is not None:
        advance(len(cand.versions))
        summary.add(cand.key, None, "skipped", 0, reason)
        return
    for v, why in cand.too_large:
        summary.add(s3_ref(bucket, v.key, v.version_id), cand.path, "skipped", 0, why)

    def sources(first: bool) -> Iterator[ImportSource]:
        """The versions, oldest first. Only the first pass reports skips and moves the bar
        (the service reads them again when the path's history continues after a gap)."""
        nonlocal done
        last = len(cand.versions) - 1
        for i, v in enumerate(cand.versions):
            try:
                body, vid, modified = latest if i == last else load(v)
            except TooLargeSource as exc:  # grew since listed (not for a listed version ID)
                if first:
                    done += 1
                    advance(1)
                    summary.add(
                        s3_ref(bucket, v.key, v.version_id), cand.path, "skipped", 0, str(exc)
                    )
                continue
            if first:
                done += 1
                advance(1)
            ref = s3_ref(bucket, v.key, vid)
            why = not_a_state(body)
            if why is not None:
                if first:
                    summary.add(ref, cand.path, "skipped", 0, why)
                continue
            yield ImportSource(ref, body, modified or None)

    try:
        result = obj.call(obj.ops.imports.import_state, cand.path, Replay(sources), dry_run=dry_run)
    except SourceError as exc:
        summary.add(cand.key, cand.path, "refused", 0, f"{exc}; a later run continues")
    except Unavailable:
        raise
    except ServiceError as exc:
        summary.add(cand.key, cand.path, "refused", 0, str(exc))
    else:
        summary.add_result(cand.key, result)
    finally:
        advance(len(cand.versions) - done)


class Replay:
    """An iterable that starts over at each ``iter()``: ``make(True)`` the first time, then
    ``make(False)`` (the service may read the versions twice, one body in memory at a time)."""

    def __init__(self, make: Callable[[bool], Iterator[ImportSource]]) -> None:
        self._make = make
        self._passes = 0

    def __iter__(self) -> Iterator[ImportSource]:
        self._passes += 1
        return self._make(self._passes == 1)


# -- files -----------------------------------------------------------------------------------


@import_group.command("file")
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--path", "target", required=True, help="The stateward path to import into.")
@click.option("--dry-run", is_flag=True, help="Check everything, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def import_file(
    obj: CliContext, files: tuple[Path, ...], target: str, dry_run: bool, as_json: bool
) -> None:
    """Import state FILES (oldest first) as versions of PATH, as they are (plain or
    OpenTofu client-encrypted); each keeps its file's modification time."""
    limit = obj.settings().max_body_bytes
    items = []
    for file in files:
        try:
            info = file.stat()
            if info.st_size > limit:
                raise click.ClickException(
                    f"{file}: {too_large(limit, info.st_size)}; nothing imported"
                )
            with file.open("rb") as fh:
                body = fh.read(limit + 1)  # it may have grown since
            mtime = info.st_mtime
        except OSError as exc:
            raise click.ClickException(
                f"cannot read {file}: {exc.strerror or type(exc).__name__}"
            ) from None
        if len(body) > limit:
            raise click.ClickException(f"{file}: {too_large(limit, None)}; nothing imported")
        reason = not_a_state(body)
        if reason is not None:
            raise click.ClickException(f"{file}: {reason}; nothing imported")
        items.append(ImportSource(source_ref(f"file://{file.resolve()}"), body, mtime))
    result = obj.call(obj.ops.imports.import_state, target, items, dry_run=dry_run)
    summary = Summary()
    summary.add_result(", ".join(str(f) for f in files), result)
    summary.finish(as_json, dry_run)
