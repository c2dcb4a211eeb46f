"""The object layout of Terraform's and OpenTofu's ``s3`` backend, mapped to stateward paths.

Pure (no I/O): ``stateward import s3`` and ``stateward export`` both use it, so what one writes
the other reads back to the same path. The backend (Terraform >= 1.11, OpenTofu; see
``internal/backend/remote-state/s3`` in both) keeps, in one bucket:

- the default workspace's state at ``<key>``;
- workspace ``W``'s state at ``<workspace_key_prefix>/<W>/<key>`` (``path.Join``; the prefix
  defaults to ``env:``);
- with ``use_lockfile = true``, a lock object ``<key>.tflock`` (and
  ``<workspace_key_prefix>/<W>/<key>.tflock``) while a lock is held;
- with DynamoDB locking, an item ``<bucket>/<key>-md5`` holding the state's MD5. It lives in
  DynamoDB, but copies and tools sometimes leave ``…-md5`` objects in buckets.

Import: object key -> path (:func:`map_key`), the rules of docs/import-export.md:

1. keys ending in ``.tflock`` or ``-md5``, and folder markers (ending in ``/``), are skipped;
2. ``<wkp>/<W>/<key>`` is workspace ``W`` of ``<key>`` -- at the bucket root, as the backend
   writes it, or right under the import prefix;
3. the import prefix (a folder) is stripped from ``<key>``, leaving ``rest``;
4. ``stem(rest)`` is ``rest`` without a trailing ``/terraform.tfstate`` or ``.tfstate``
   (``network/terraform.tfstate`` -> ``network``, ``prod.tfstate`` -> ``prod``); a bare
   ``terraform.tfstate`` has the empty stem;
5. the path is ``stem`` (default workspace) or ``stem/W``, under ``path_prefix/`` if given; an
   empty result is refused (give a path prefix or a ``--map``).

Export: path ``P`` -> ``<prefix>/P/terraform.tfstate`` (:func:`export_key`), the default
workspace layout of a backend whose ``key`` is ``"<prefix>/P/terraform.tfstate"``; workspaces
are not reconstructed (an imported ``network/staging`` comes back as its own key).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_WORKSPACE_KEY_PREFIX = "env:"
STATE_FILE = "terraform.tfstate"
STATE_SUFFIX = ".tfstate"
LOCK_SUFFIX = ".tflock"
DIGEST_SUFFIX = "-md5"

SKIP_LOCK = "lock file of the S3 backend (use_lockfile), not a state"
SKIP_DIGEST = "state digest copied from DynamoDB locking (-md5), not a state"
SKIP_FOLDER = "folder marker object"
SKIP_MAPPED = "skipped by --map"


@dataclass(frozen=True, slots=True)
class KeyMapping:
    """Where one object key goes: a path, or why it is skipped."""

    key: str
    #: The stateward path (not yet validated: :func:`stateward.paths.validate_path`), or
    #: ``None`` when the key is skipped or maps to nothing.
    path: str | None
    #: The workspace, for ``<wkp>/<W>/<key>`` objects; ``None`` for the default workspace.
    workspace: str | None = None
    #: Why the key is skipped (by name, before its content is read); ``None`` otherwise.
    skip: str | None = None
    #: Why no path could be made (e.g. a bare ``terraform.tfstate`` without a path prefix).
    problem: str | None = None


def folder(prefix: str) -> str:
    """``prefix`` as a folder: ``""`` or ``a/b/`` (surrounding slashes dropped)."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


def stem(rest: str) -> str:
    """``rest`` without a trailing ``/terraform.tfstate`` or ``.tfstate``."""
    if rest == STATE_FILE:
        return ""
    if rest.endswith("/" + STATE_FILE):
        return rest[: -len(STATE_FILE) - 1]
    if rest.endswith(STATE_SUFFIX):
        return rest[: -len(STATE_SUFFIX)]
    return rest


def _split_workspace(key: str, workspace_key_prefix: str) -> tuple[str, str] | None:
    """``(W, inner key)`` if ``key`` is ``<wkp>/<W>/<inner>`` with both parts non-empty."""
    wkp = workspace_key_prefix.strip("/")
    if not wkp or not key.startswith(wkp + "/"):
        return None
    workspace, sep, inner = key[len(wkp) + 1 :].partition("/")
    if not sep or not workspace or not inner:
        return None
    return workspace, inner


def selected(key: str, prefix: str, workspace_key_prefix: str) -> bool:
    """Whether an import with ``prefix`` takes ``key`` (see :func:`map_key`)."""
    pre = folder(prefix)
    if key.startswith(pre):
        return True
    split = _split_workspace(key, workspace_key_prefix)
    return split is not None and split[1].startswith(pre)


def list_prefixes(prefix: str, workspace_key_prefix: str) -> list[str]:
    """The listing prefixes that find every key :func:`selected` takes."""
    pre = folder(prefix)
    wkp = workspace_key_prefix.strip("/")
    if not pre or not wkp or (wkp + "/").startswith(pre):
        return [pre]
    return [pre, wkp + "/"]


def map_key(
    key: str,
    *,
    prefix: str = "",
    workspace_key_prefix: str = DEFAULT_WORKSPACE_KEY_PREFIX,
    path_prefix: str = "",
) -> KeyMapping:
    """The stateward path of the object ``key`` (which :func:`selected` takes)."""
    if key.endswith(LOCK_SUFFIX):
        return KeyMapping(key, None, skip=SKIP_LOCK)
    if key.endswith(DIGEST_SUFFIX):
        return KeyMapping(key, None, skip=SKIP_DIGEST)
    if key.endswith("/"):
        return KeyMapping(key, None, skip=SKIP_FOLDER)
    pre = folder(prefix)
    workspace: str | None = None
    rest = key
    split = _split_workspace(key, workspace_key_prefix)
    if split is not None and split[1].startswith(pre):
        workspace, rest = split  # the backend's layout: <wkp>/<W>/<key>, from the bucket root
    else:
        rest = key[len(pre) :] if key.startswith(pre) else key
        split = _split_workspace(rest, workspace_key_prefix)
        if split is not None:
            workspace, rest = split  # <prefix>/<wkp>/<W>/<key>: a copied bucket
    if workspace is not None:
        rest = rest[len(pre) :] if rest.startswith(pre) else rest
    parts = [p for p in (path_prefix.strip("/"), stem(rest), workspace) if p]
    if not stem(rest) and not path_prefix.strip("/"):
        return KeyMapping(
            key,
            None,
            workspace,
            problem=f"{key!r} maps to no path: give --path-prefix or --map {key}=PATH",
        )
    return KeyMapping(key, "/".join(parts), workspace)


def export_key(path: str, prefix: str = "") -> str:
    """The object key (or file under a directory) that ``path`` is exported to."""
    return f"{folder(prefix)}{path}/{STATE_FILE}"


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` -> ``(bucket, prefix as a folder)``; ValueError otherwise."""
    if not url.startswith("s3://"):
        raise ValueError("an S3 destination looks like s3://bucket/prefix")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}: use s3://bucket/prefix")
    return bucket, folder(prefix)


def backend_block(bucket: str, path: str, prefix: str = "", region: str = "REGION") -> str:
    """The ``backend "s3"`` block that reads the state exported for ``path``."""
    return (
        'terraform {\n  backend "s3" {\n'
        f'    bucket       = "{bucket}"\n'
        f'    key          = "{export_key(path, prefix)}"\n'
        f'    region       = "{region}"\n'
        "    use_lockfile = true\n  }\n}\n"
    )
