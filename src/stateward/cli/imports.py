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

import datetime as dt
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]
import click
from rich.table import Table

from stateward.cli.context import CliContext, emit_json, pass_ctx, print_table
from stateward.common.aws import boto_client
from stateward.domain import s3layout, statefile
from stateward.domain.errors import BadRequest, ServiceError, Unavailable
from stateward.domain.paths import validate_path
from stateward.service.core import StateService
from stateward.service.imports import ImportResult, ImportSource, source_ref

SKIP_DELETED = "deleted in the source (its latest version is a delete marker)"


class SourceError(Exception):
    """Reading the source failed (one line: operation, object, S3 error code)."""


class TooLargeSource(SourceError):
    """An object (version) is larger than ``max_body_bytes``: skipped, not read."""


def too_large(limit: int, size: int | None) -> str:
    """The reason an object of ``size`` bytes (None: unknown) is skipped."""
    return f"larger than max_body_bytes ({limit} bytes)" + (
        "" if size is None else f": {size} bytes"
    )


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    key: str
    #: ``None`` when listed without ``--versions`` (the current object).
    version_id: str | None
    modified: float
    size: int


#: Reads one object version: (bytes, version ID, time).
Loader = Callable[[ObjectVersion], tuple[bytes, str | None, float]]


@dataclass
class Candidate:
    key: str
    path: str
    #: Oldest first; the last one is the current object.
    versions: list[ObjectVersion]
    #: Older versions left out, larger than ``max_body_bytes``: (version, reason).
    too_large: list[tuple[ObjectVersion, str]] = field(default_factory=list)


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


# -- S3 --------------------------------------------------------------------------------------


def _s3_error(op: str, where: str, exc: Exception) -> SourceError:
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return SourceError(f"S3 {op} {where} failed: {err.get('Code') or 'error'} (HTTP {status})")
    return SourceError(f"S3 {op} {where} failed: {type(exc).__name__}")


def s3_client(endpoint_url: str | None, region: str | None) -> Any:
    try:
        return boto_client(
            "s3",
            region=region,
            endpoint_url=endpoint_url,
            connect_timeout=5.0,
            read_timeout=60.0,
            max_attempts=5,
        )
    except botocore.exceptions.BotoCoreError as exc:
        raise click.ClickException(str(_s3_error("client setup", "", exc))) from None


def _when(value: Any) -> float:
    return value.timestamp() if isinstance(value, dt.datetime) else 0.0


def list_current(client: Any, bucket: str, prefixes: list[str]) -> dict[str, list[ObjectVersion]]:
    out: dict[str, list[ObjectVersion]] = {}
    try:
        for prefix in prefixes:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = str(obj["Key"])
                    out[key] = [
                        ObjectVersion(key, None, _when(obj.get("LastModified")), obj["Size"])
                    ]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise click.ClickException(str(_s3_error("ListObjectsV2", f"s3://{bucket}", exc))) from None
    return out


def list_versions(
    client: Any, bucket: str, prefixes: list[str]
) -> tuple[dict[str, list[ObjectVersion]], set[str]]:
    """Every version of every key, oldest first, and the keys whose latest version is a
    delete marker. S3 lists a key's versions newest first; times have a resolution of a
    second, so the listing order breaks ties."""
    listed: dict[str, list[ObjectVersion]] = defaultdict(list)
    deleted: set[str] = set()
    seen: set[tuple[str, str]] = set()
    try:
        for prefix in prefixes:
            pages = client.get_paginator("list_object_versions").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for page in pages:
                for v in page.get("Versions", ()):
                    key, vid = str(v["Key"]), str(v.get("VersionId") or "null")
                    if (key, vid) not in seen:
                        seen.add((key, vid))
                        listed[key].append(
                            ObjectVersion(key, vid, _when(v.get("LastModified")), v["Size"])
                        )
                for m in page.get("DeleteMarkers", ()):
                    if m.get("IsLatest"):
                        deleted.add(str(m["Key"]))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        where = f"s3://{bucket}"
        raise click.ClickException(str(_s3_error("ListObjectVersions", where, exc))) from None
    ordered = {
        key: sorted(reversed(found), key=lambda v: v.modified)  # stable: ties keep S3's order
        for key, found in listed.items()
    }
    return ordered, deleted


def _ref(bucket: str, key: str, version_id: str | None) -> str:
    """Where a version came from; ``?versionId=null`` names the version S3 keeps for an object
    written before versioning was enabled."""
    ref = f"s3://{bucket}/{key}"
    return source_ref(ref if version_id is None else f"{ref}?versionId={version_id}")


def fetch(
    client: Any, bucket: str, v: ObjectVersion, limit: int
) -> tuple[bytes, str | None, float]:
    """The bytes of one object version, its version ID (the current one's if unknown) and its
    time (as read, in case the current object changed since it was listed).

    A listed version is always fetched by its ID, ``null`` included (without it S3 answers
    with the current object). Raises TooLargeSource, reading at most ``limit + 1`` bytes, for
    an object larger than ``limit`` (one that grew since it was listed)."""
    args: dict[str, Any] = {"Bucket": bucket, "Key": v.key}
    if v.version_id is not None:
        args["VersionId"] = v.version_id
    try:
        answer = client.get_object(**args)
        body = answer["Body"]
        try:
            length = answer.get("ContentLength")
            length = length if isinstance(length, int) else None
            if length is not None and length > limit:
                raise TooLargeSource(too_large(limit, length))
            data = bytes(body.read(limit + 1))
        finally:
            body.close()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise _s3_error("GetObject", _ref(bucket, v.key, v.version_id), exc) from None
    if len(data) > limit:
        raise TooLargeSource(too_large(limit, length))
    modified = _when(answer.get("LastModified")) or v.modified
    return data, answer.get("VersionId") or v.version_id, modified


def not_a_state(body: bytes) -> str | None:
    """Why ``body`` is not a state stateward stores (plain v4, or OpenTofu-encrypted)."""
    try:
        statefile.parse_state(body)
    except BadRequest as exc:
        return f"not a state: {exc}"
    return None


def parse_maps(maps: tuple[str, ...]) -> dict[str, str | None]:
    """``KEY=PATH`` (``KEY=-``: skip the key) -> {key: path or None}."""
    out: dict[str, str | None] = {}
    for item in maps:
        key, sep, path = item.rpartition("=")  # paths never hold '=', keys may
        if not sep or not key or not path:
            raise click.ClickException(f"--map {item!r}: use --map KEY=PATH (or KEY=- to skip)")
        if path != "-":
            try:
                validate_path(path)
            except BadRequest as exc:
                raise click.ClickException(f"--map {item!r}: {exc}") from None
        out[key] = None if path == "-" else path
    return out


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
    load = _loader(client, bucket, limit)
    candidates = _plan(listed, keys, deleted, overrides, summary, load, prefix,
                       workspace_key_prefix, path_prefix, limit)  # fmt: skip
    svc = obj.service()
    total = sum(len(c.versions) for c in candidates)
    stderr = sys.stderr
    try:
        with click.progressbar(length=total, label="importing", file=stderr) as bar:
            for cand in candidates:
                _import_candidate(obj, svc, cand, bucket, load, summary, bar.update, dry_run)
    except Unavailable:
        summary.emit(as_json, dry_run)  # what was done so far; a later run continues
        raise
    summary.finish(as_json, dry_run)


def _loader(client: Any, bucket: str, limit: int) -> Loader:
    def load(v: ObjectVersion) -> tuple[bytes, str | None, float]:
        return fetch(client, bucket, v, limit)

    return load


def _plan(
    listed: dict[str, list[ObjectVersion]],
    keys: list[str],
    deleted: set[str],
    overrides: dict[str, str | None],
    summary: Summary,
    load: Loader,
    prefix: str,
    workspace_key_prefix: str,
    path_prefix: str,
    limit: int,
) -> list[Candidate]:
    """Keys -> candidates, skipping by name and refusing what cannot be placed; raise (nothing
    written) when two states would land on one path. Content is read only where needed: a
    key whose path is refused or collides is first checked to be a state at all.

    By the listed size, before any GET: a key whose current object is larger than ``limit``
    is skipped, and older versions that are, are left out (reported when it is imported)."""
    placed: dict[str, list[Candidate]] = defaultdict(list)
    problems: list[tuple[Candidate, str]] = []
    for key in keys:
        versions = listed[key]
        if key in overrides:
            path = overrides[key]
            if path is None:
                summary.add(key, None, "skipped", 0, s3layout.SKIP_MAPPED)
                continue
            problem = None
        else:
            mapping = s3layout.map_key(
                key,
                prefix=prefix,
                workspace_key_prefix=workspace_key_prefix,
                path_prefix=path_prefix,
            )
            if mapping.skip is not None:
                summary.add(key, None, "skipped", 0, mapping.skip)
                continue
            path, problem = mapping.path or "", mapping.problem
        if key in deleted:
            summary.add(key, path or None, "skipped", 0, SKIP_DELETED)
            continue
        if not versions:
            continue
        if versions[-1].size > limit:
            summary.add(key, path or None, "skipped", 0, too_large(limit, versions[-1].size))
            continue
        small = [v for v in versions if v.size <= limit]
        big = [(v, too_large(limit, v.size)) for v in versions if v.size > limit]
        cand = Candidate(key, path, small, big)
        if problem is None:
            try:
                validate_path(path)
            except BadRequest as exc:
                problem = f"{path!r} is not a valid stateward path ({exc}); use --map KEY=PATH"
        if problem is not None:
            problems.append((cand, problem))
        else:
            placed[path].append(cand)
    for cand, problem in problems:
        reason = _content_problem(cand, load)
        if reason is not None:
            summary.add(cand.key, None, "skipped", 0, reason)
        else:
            summary.add(cand.key, cand.path or None, "refused", 0, problem)
    clashes = []
    out: list[Candidate] = []
    for path, group in sorted(placed.items()):
        if len(group) > 1:
            states = []
            for cand in group:
                reason = _content_problem(cand, load)
                if reason is None:
                    states.append(cand)
                else:
                    summary.add(cand.key, None, "skipped", 0, reason)
            group = states
            if len(group) > 1:
                clashes.append(f"{path} <- " + ", ".join(repr(c.key) for c in group))
                continue
        out.extend(group)
    if clashes:
        raise click.ClickException(
            "nothing imported: several keys map to the same path (give --map KEY=PATH, or "
            "KEY=- to skip one): " + "; ".join(clashes)
        )
    return out


def _content_problem(cand: Candidate, load: Loader) -> str | None:
    try:
        body, _, _ = load(cand.versions[-1])
    except SourceError as exc:
        return str(exc)
    return not_a_state(body)


def _import_candidate(
    obj: CliContext,
    svc: StateService,
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
        summary.add(_ref(bucket, v.key, v.version_id), cand.path, "skipped", 0, why)

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
                        _ref(bucket, v.key, v.version_id), cand.path, "skipped", 0, str(exc)
                    )
                continue
            if first:
                done += 1
                advance(1)
            ref = _ref(bucket, v.key, vid)
            why = not_a_state(body)
            if why is not None:
                if first:
                    summary.add(ref, cand.path, "skipped", 0, why)
                continue
            yield ImportSource(ref, body, modified or None)

    try:
        result = svc.import_state(obj.who, cand.path, Replay(sources), dry_run=dry_run)
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
    result = obj.service().import_state(obj.who, target, items, dry_run=dry_run)
    summary = Summary()
    summary.add_result(", ".join(str(f) for f in files), result)
    summary.finish(as_json, dry_run)
