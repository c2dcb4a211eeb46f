"""Planning an import from an S3 backend: which key becomes which path (the rules of
``domain/s3layout.py``, plus ``--map`` overrides), what is skipped and why, and refusing the
whole import when two states would land on one path -- before anything is written."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from stateward.domain import s3layout, statefile
from stateward.domain.errors import BadRequest
from stateward.domain.paths import validate_path
from stateward.transfer.errors import SourceError, TransferError
from stateward.transfer.s3source import Loader, ObjectVersion, too_large

SKIP_DELETED = "deleted in the source (its latest version is a delete marker)"


@dataclass(frozen=True, slots=True)
class Skip:
    """A key left out of the import: ``result`` is ``skipped`` or ``refused``."""

    key: str
    path: str | None
    result: str
    detail: str


@dataclass
class Candidate:
    key: str
    path: str
    #: Oldest first; the last one is the current object.
    versions: list[ObjectVersion]
    #: Older versions left out, larger than ``max_body_bytes``: (version, reason).
    too_large: list[tuple[ObjectVersion, str]] = field(default_factory=list)


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
            raise TransferError(f"--map {item!r}: use --map KEY=PATH (or KEY=- to skip)")
        if path != "-":
            try:
                validate_path(path)
            except BadRequest as exc:
                raise TransferError(f"--map {item!r}: {exc}") from None
        out[key] = None if path == "-" else path
    return out


def plan(
    listed: dict[str, list[ObjectVersion]],
    keys: list[str],
    deleted: set[str],
    overrides: dict[str, str | None],
    skips: list[Skip],
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
                skips.append(Skip(key, None, "skipped", s3layout.SKIP_MAPPED))
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
                skips.append(Skip(key, None, "skipped", mapping.skip))
                continue
            path, problem = mapping.path or "", mapping.problem
        if key in deleted:
            skips.append(Skip(key, path or None, "skipped", SKIP_DELETED))
            continue
        if not versions:
            continue
        if versions[-1].size > limit:
            skips.append(Skip(key, path or None, "skipped", too_large(limit, versions[-1].size)))
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
        reason = content_problem(cand, load)
        if reason is not None:
            skips.append(Skip(cand.key, None, "skipped", reason))
        else:
            skips.append(Skip(cand.key, cand.path or None, "refused", problem))
    clashes = []
    out: list[Candidate] = []
    for path, group in sorted(placed.items()):
        if len(group) > 1:
            states = []
            for cand in group:
                reason = content_problem(cand, load)
                if reason is None:
                    states.append(cand)
                else:
                    skips.append(Skip(cand.key, None, "skipped", reason))
            group = states
            if len(group) > 1:
                clashes.append(f"{path} <- " + ", ".join(repr(c.key) for c in group))
                continue
        out.extend(group)
    if clashes:
        raise TransferError(
            "nothing imported: several keys map to the same path (give --map KEY=PATH, or "
            "KEY=- to skip one): " + "; ".join(clashes)
        )
    return out


def content_problem(cand: Candidate, load: Loader) -> str | None:
    try:
        body, _, _ = load(cand.versions[-1])
    except SourceError as exc:
        return str(exc)
    return not_a_state(body)
