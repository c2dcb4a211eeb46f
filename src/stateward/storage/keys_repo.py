"""The ``blob_keys`` table: which key protects each version's blob (metadata only, never key
material), for ``keys status``, ``keys rewrap``, ``keys retire`` and the startup key check."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select

from stateward.storage.schema import blob_keys, versions

_INSERT = insert(blob_keys)


@dataclass(frozen=True, slots=True)
class BlobKeyRef:
    """A version's blob with the key that protects it (None: an unencrypted blob of an
    earlier release)."""

    blob_key: str
    path: str
    seq: int
    provider: str | None
    key_version: str | None


def insert_ref(conn: Connection, blob_key: str, path: str, ref: Any) -> None:
    """Record which key protects ``blob_key`` (``ref``: a barrier ``KeyRef``)."""
    conn.execute(
        _INSERT,
        {
            "blob_key": blob_key,
            "path": path,
            "provider": ref.provider,
            "kind": ref.kind,
            "key_id": ref.key_id,
            "key_version": ref.key_version,
        },
    )


def delete_ref(conn: Connection, blob_key: str) -> None:
    conn.execute(delete(blob_keys).where(blob_keys.c.blob_key == bindparam("k")), {"k": blob_key})


def reference_counts(conn: Connection) -> Counter[tuple[str, str]]:
    """How many blobs each (provider, key version) protects."""
    refs: Counter[tuple[str, str]] = Counter()
    for row in conn.execute(select(blob_keys.c.provider, blob_keys.c.key_version)):
        refs[(str(row.provider), str(row.key_version))] += 1
    return refs


def version_in_use(conn: Connection, provider: str, key_version: str) -> bool:
    stmt = select(blob_keys.c.blob_key).where(
        blob_keys.c.provider == provider, blob_keys.c.key_version == key_version
    )
    return conn.execute(stmt).first() is not None


def all_refs(conn: Connection) -> list[BlobKeyRef]:
    """Every version's blob and its key, oldest version first."""
    rows = conn.execute(
        select(
            versions.c.blob_key,
            versions.c.path,
            versions.c.seq,
            blob_keys.c.provider,
            blob_keys.c.key_version,
        )
        .select_from(versions.outerjoin(blob_keys))
        .order_by(versions.c.id)
    )
    return [BlobKeyRef(r.blob_key, r.path, r.seq, r.provider, r.key_version) for r in rows]


def samples(
    conn: Connection, providers: list[str], per_version: int
) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """For each (provider, key version) in use among ``providers``: up to ``per_version``
    ``(blob key, path)`` pairs it protects."""
    found = conn.execute(
        select(blob_keys.c.provider, blob_keys.c.key_version)
        .where(blob_keys.c.provider.in_(providers))
        .distinct()
    ).all()
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for name, version in found:
        rows = conn.execute(
            select(blob_keys.c.blob_key, blob_keys.c.path)
            .where(blob_keys.c.provider == name, blob_keys.c.key_version == version)
            .order_by(blob_keys.c.blob_key)
            .limit(per_version)
        )
        out[(str(name), str(version))] = [(str(r.blob_key), str(r.path)) for r in rows]
    return out
