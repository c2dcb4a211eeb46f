"""Copy a whole store to another one, row for row and byte for byte, and prove the copy.

``stateward migrate-store`` (cli/migrate.py) moves an installation between the embedded store
(SQLite + blob files) and PostgreSQL + S3, or any other combination. This module is the
storage-level part: it never goes through the service, so every row arrives as it was (primary
keys, version ids, timestamps, token hashes, the audit hash chain) and every blob arrives as
the same ciphertext. The barrier binds a blob to its path and blob key, never to the store
holding it, so unchanged bytes stay decryptable wherever they go (with the same keys).

Source and target never share a blob store (:func:`refuse_shared_blobs`): each store's
``stateward gc`` and retention delete the blobs its own metadata does not reference, so two
stores in one blob directory or one bucket prefix would delete each other's blobs.

The copy, :func:`copy_store`, first refuses a target whose blob location is the source's or
overlaps it (the same directory, or the same bucket with one prefix a prefix of the other),
then:

1. reads the source in one read-only transaction (one snapshot for everything below);
2. scans it: per table the row count and a digest (:func:`digest_table`), the blobs the
   versions point at, and, for a PostgreSQL target, every value PostgreSQL would refuse (a NUL
   character in text, a string longer than its column, an integer past ``integer``), so such a
   store is refused before anything is written (:class:`CopyRefused`);
3. copies every version's blob to the target blob store and reads it back (sha256 against the
   source bytes, optionally a decryption check): blobs first, as the server writes them;
4. in **one** target write transaction: checks the target is still empty, inserts every row
   (tables in foreign-key order, :data:`BATCH` rows per statement, primary keys kept), moves
   PostgreSQL's id sequences past the copied ids, compares every table's count and digest with
   the source's, and verifies the audit hash chain; commits only if all of that holds.

Any failure rolls the transaction back and deletes the blobs written in step 3: the target is
left as it was found (:class:`CopyFailed`). ``schema_info`` and alembic's bookkeeping belong to
the target's own schema, ``leases`` are claims of running servers: none of them is copied.

:func:`verify_copy` runs the same comparison on two committed stores.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    LargeBinary,
    Row,
    Select,
    String,
    Table,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from stateward.storage.blobs import BlobStore, FileBlobStore
from stateward.storage.engine import READ_ONLY
from stateward.storage.errors import StoreUnavailable
from stateward.storage.s3 import S3BlobStore
from stateward.storage.schema import audit, blob_keys, leases, metadata, versions

#: Rows per read and per INSERT statement.
BATCH = 500
#: Blobs copied and read back at a time.
WORKERS = 8

#: Tables that belong to the target itself, or to running servers: never copied.
SKIPPED = frozenset({"schema_info", "leases"})

#: ``with progress(label, total) as step: step(n)`` -- a progress display (the CLI: a bar).
Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]

#: Checks a copied blob (its version and its bytes as read back from the target); returns a
#: one-line problem or None. The CLI's ``--verify-decrypt`` opens it through the barrier.
BlobCheckFn = Callable[["BlobEntry", bytes], str | None]

T = TypeVar("T")
_INT4 = (-(2**31), 2**31 - 1)
_INT8 = (-(2**63), 2**63 - 1)


class CopyRefused(Exception):
    """The copy was refused before anything was written (one line, no secret in it)."""


class CopyFailed(Exception):
    """The copy failed after it started; the target was put back as it was found.

    ``report`` is the verification that failed, if that is what failed."""

    def __init__(self, message: str, report: VerifyReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@contextmanager
def no_progress(_label: str, _total: int) -> Iterator[Callable[[int], None]]:
    yield lambda _n: None


def copied_tables() -> list[Table]:
    """Every table the copy carries, parents before children (foreign-key order)."""
    return [
        t
        for t in metadata.sorted_tables
        if t.name not in SKIPPED and not t.name.startswith("alembic")
    ]


@dataclass(frozen=True, slots=True)
class StoreHandle:
    """One side of a copy: its metadata engine and blob store, and how to name them."""

    engine: Engine
    blobs: BlobStore
    #: For messages (never a password): ``sqlite:///…`` or ``postgresql+psycopg://user@host/db``.
    name: str


@dataclass(frozen=True, slots=True)
class BlobLocation:
    """Where a blob store keeps its blobs: a directory, or a bucket and an object prefix."""

    directory: Path | None = None
    bucket: str | None = None
    prefix: str = ""

    @classmethod
    def files(cls, root: Path) -> BlobLocation:
        return cls(directory=root.resolve())

    @classmethod
    def s3(cls, bucket: str, prefix: str) -> BlobLocation:
        return cls(bucket=bucket, prefix=prefix)

    @classmethod
    def of(cls, store: BlobStore) -> BlobLocation | None:
        """The location of a file or S3 blob store; None for any other kind."""
        if isinstance(store, FileBlobStore):
            return cls.files(store.root)
        if isinstance(store, S3BlobStore):
            return cls.s3(store.bucket, store.prefix)
        return None

    def overlaps(self, other: BlobLocation) -> bool:
        """The same directory (or one inside the other), or the same bucket with one prefix a
        prefix of the other. Buckets are compared by name whatever the endpoints: two spellings
        of one endpoint cannot be told apart from two services."""
        if self.directory is not None and other.directory is not None:
            mine, theirs = self.directory, other.directory
            return mine.is_relative_to(theirs) or theirs.is_relative_to(mine)
        if self.bucket is not None and self.bucket == other.bucket:
            return self.prefix.startswith(other.prefix) or other.prefix.startswith(self.prefix)
        return False

    def __str__(self) -> str:
        if self.directory is not None:
            return f"files under {self.directory}"
        return f"s3://{self.bucket}/{self.prefix}"


def refuse_shared_blobs(source: BlobLocation, target: BlobLocation) -> None:
    """Refuse (:class:`CopyRefused`) a target blob location that is the source's or overlaps
    it: each store's gc and retention would delete the blobs of the other."""
    if source.overlaps(target):
        same = "is" if source == target else "overlaps"
        raise CopyRefused(
            f"the target's blob store ({target}) {same} the source's ({source}): give the target "
            "its own blob location (another data directory, bucket, or bucket prefix that does "
            "not overlap the source's); two stores sharing blobs delete each other's"
        )


@dataclass(frozen=True, slots=True)
class BlobEntry:
    """A version's blob, as the ``versions`` row names it."""

    path: str
    seq: int
    blob_key: str
    sha256: str  # of the plaintext
    size: int  # of the stored blob (``stored_size``)

    @property
    def label(self) -> str:
        return f"{self.path} version {self.seq}"


@dataclass(frozen=True, slots=True)
class TableDigest:
    rows: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What the source holds (one snapshot)."""

    tables: dict[str, TableDigest]
    blobs: list[BlobEntry]
    #: Key provider name -> key versions referenced by the source's blobs (``blob_keys``).
    key_versions: dict[str, set[str]]

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.tables.values())


@dataclass(frozen=True, slots=True)
class TableCheck:
    name: str
    source_rows: int
    target_rows: int
    source_sha256: str
    target_sha256: str

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sha256 == self.target_sha256


@dataclass(frozen=True, slots=True)
class BlobCheck:
    checked: int
    bytes: int
    #: Whether each blob was also put through the blob check (``--verify-decrypt``).
    decrypted: bool = False
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    undecryptable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.undecryptable)

    def problems(self) -> list[str]:
        return (
            [f"{x}: blob missing from the target" for x in self.missing]
            + [f"{x}: blob bytes differ (sha256)" for x in self.mismatched]
            + list(self.undecryptable)
        )


@dataclass(frozen=True, slots=True)
class AuditCheck:
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    tables: list[TableCheck]
    blobs: BlobCheck
    audit: AuditCheck

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables) and self.blobs.ok and self.audit.ok

    def problems(self) -> list[str]:
        out = [
            f"table {t.name}: {t.source_rows} row(s) in the source, {t.target_rows} in the "
            f"target{'' if t.source_rows != t.target_rows else ', contents differ'}"
            for t in self.tables
            if not t.ok
        ]
        out += self.blobs.problems()
        if not self.audit.ok:
            out.append(f"audit chain broken at record {self.audit.first_bad_seq}: "
                       f"{self.audit.problem}")  # fmt: skip
        return out


# -- reading ---------------------------------------------------------------------------------


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction: one snapshot (SQLite WAL, PostgreSQL REPEATABLE READ). A store
    that cannot be reached: StoreUnavailable naming the driver's reason (no retry: the
    operator runs the copy again)."""
    try:
        with engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                yield conn
    except OperationalError as exc:
        first = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        raise StoreUnavailable(f"metadata store unavailable: {first}", retry=False) from exc


def _ordered(table: Table, dialect: str) -> Select[Any]:
    """All rows in primary-key order, the same order on both stores: text keys compare
    byte-wise (SQLite's BINARY; on PostgreSQL the "C" collation, whatever the database's)."""
    keys: list[Any] = [
        c.collate("C") if dialect == "postgresql" and isinstance(c.type, String) else c
        for c in table.primary_key.columns
    ]
    return select(table).order_by(*keys)


@contextmanager
def _batches(conn: Connection, table: Table, size: int) -> Iterator[Iterator[Sequence[Row[Any]]]]:
    """The rows in batches, streamed (PostgreSQL: a server-side cursor, closed on exit even
    when the caller stops early)."""
    stmt = _ordered(table, conn.dialect.name).execution_options(yield_per=size)
    result = conn.execute(stmt)
    try:
        yield result.partitions()
    finally:
        result.close()


def _canonical(column: Column[Any], value: Any) -> Any:
    """A value as the same JSON on both stores (booleans, floats, integers, bytes normalised
    by the column's type; SQLite hands back whatever was stored, PostgreSQL its own types)."""
    if value is None:
        return None
    kind = column.type
    try:
        if isinstance(kind, Boolean):
            return bool(value)
        if isinstance(kind, Float):
            return float(value)
        if isinstance(kind, Integer):
            return int(value)
        if isinstance(kind, LargeBinary):
            return {"bytes": bytes(value).hex()}
        if isinstance(kind, String):
            return str(value)
    except (TypeError, ValueError):
        pass
    return {"other": f"{type(value).__name__}:{value!r}"}


def row_line(table: Table, row: Row[Any]) -> bytes:
    """One row's canonical form: a JSON list of its values in column order."""
    values = [_canonical(c, v) for c, v in zip(table.columns, row, strict=True)]
    return json.dumps(values, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def pk_text(table: Table, row: Row[Any]) -> str:
    """A row's primary key for messages (ids, paths, names: never a secret)."""
    mapping = row._mapping
    return ", ".join(f"{c.name}={mapping[c.name]!r}" for c in table.primary_key.columns)


RowCheck = Callable[[Table, Row[Any]], None]


def digest_table(
    conn: Connection,
    table: Table,
    *,
    check: RowCheck | None = None,
    batch: int = BATCH,
    step: Callable[[int], None] | None = None,
) -> TableDigest:
    """Row count and sha256 over the canonical rows in primary-key order."""
    digest = hashlib.sha256()
    count = 0
    with _batches(conn, table, batch) as parts:
        for rows in parts:
            for row in rows:
                if check is not None:
                    check(table, row)
                digest.update(row_line(table, row))
            count += len(rows)
            if step is not None:
                step(len(rows))
    return TableDigest(count, digest.hexdigest())


def postgres_check() -> RowCheck:
    """Refuse (:class:`CopyRefused`) any value PostgreSQL would not store as it is."""
    pg = make_url("postgresql+psycopg://").get_dialect()()
    limits: dict[tuple[str, str], tuple[str, int | None]] = {}
    for table in copied_tables():
        for c in table.columns:
            impl = c.type.dialect_impl(pg)
            if isinstance(impl, String):
                limits[(table.name, c.name)] = ("text", impl.length)
            elif isinstance(impl, BigInteger):
                limits[(table.name, c.name)] = ("int8", None)
            elif isinstance(impl, Integer):
                limits[(table.name, c.name)] = ("int4", None)

    def check(table: Table, row: Row[Any]) -> None:
        mapping = row._mapping
        for c in table.columns:
            kind, length = limits.get((table.name, c.name), ("", None))
            value = mapping[c.name]
            if value is None or not kind:
                continue
            problem = ""
            if kind == "text" and isinstance(value, str):
                if "\x00" in value:
                    problem = "holds a NUL character, which PostgreSQL cannot store in text"
                elif length is not None and len(value) > length:
                    problem = f"is longer than the column's {length} characters"
            elif kind in ("int4", "int8") and isinstance(value, int):
                low, high = _INT4 if kind == "int4" else _INT8
                if not low <= value <= high:
                    problem = f"is out of the range of PostgreSQL's {kind}"
            if problem:
                raise CopyRefused(
                    f"table {table.name}, row {pk_text(table, row)}: {c.name} {problem}; "
                    "fix or remove that row in the source first (nothing was written)"
                )

    return check


def blob_entries(conn: Connection) -> list[BlobEntry]:
    v = versions.c
    rows = conn.execute(
        select(v.path, v.seq, v.blob_key, v.sha256, v.stored_size).order_by(v.id)
    ).all()
    return [
        BlobEntry(str(r.path), int(r.seq), str(r.blob_key), str(r.sha256), int(r.stored_size))
        for r in rows
    ]


def key_versions(conn: Connection) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for provider, version in conn.execute(
        select(blob_keys.c.provider, blob_keys.c.key_version).distinct()
    ):
        out.setdefault(str(provider), set()).add(str(version))
    return out


def plan_copy(
    conn: Connection,
    *,
    to_postgres: bool = False,
    batch: int = BATCH,
    progress: Progress = no_progress,
) -> Plan:
    """Scan the source (``conn``: a read snapshot). With ``to_postgres``, refuse values
    PostgreSQL cannot hold, naming table, primary key and column."""
    check = postgres_check() if to_postgres else None
    counts = {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
              for t in copied_tables()}  # fmt: skip
    tables: dict[str, TableDigest] = {}
    with progress("scanning source rows", sum(counts.values())) as step:
        for table in copied_tables():
            tables[table.name] = digest_table(conn, table, check=check, batch=batch, step=step)
    return Plan(tables, blob_entries(conn), key_versions(conn))


def existing_rows(conn: Connection) -> dict[str, int]:
    """Copied tables of ``conn``'s store that hold rows, with their counts (no writes; tables
    that do not exist yet count as empty)."""
    present = set(inspect(conn).get_table_names())
    out = {}
    for table in copied_tables():
        if table.name in present:
            n = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            if n:
                out[table.name] = n
    return out


def refuse_unless_empty(conn: Connection) -> None:
    held = existing_rows(conn)
    if held:
        what = ", ".join(f"{n} {name}" for name, n in held.items())
        raise CopyRefused(
            f"the target store is not empty ({what}): migrate-store copies into an empty store "
            "only, it never merges"
        )


def active_leases(conn: Connection, now: float) -> list[tuple[str, str]]:
    """``(job, holder)`` of leases not yet expired: a server seems to run on this store."""
    if "leases" not in set(inspect(conn).get_table_names()):
        return []
    rows = conn.execute(
        select(leases.c.name, leases.c.holder).where(leases.c.expires_at > now)
    ).all()
    return [(str(r.name), str(r.holder)) for r in rows]


# -- verifying -------------------------------------------------------------------------------


def compare_tables(
    source: Mapping[str, TableDigest],
    conn: Connection,
    *,
    batch: int = BATCH,
    progress: Progress = no_progress,
) -> list[TableCheck]:
    """Digest every copied table of ``conn`` and compare with the source's digests."""
    out = []
    with progress("verifying rows", sum(d.rows for d in source.values())) as step:
        for table in copied_tables():
            mine = digest_table(conn, table, batch=batch, step=step)
            theirs = source.get(table.name, TableDigest(0, hashlib.sha256().hexdigest()))
            out.append(TableCheck(table.name, theirs.rows, mine.rows, theirs.sha256, mine.sha256))
    return out


#: Checks an audit hash chain given ``(seq, prev_hash, hash, record JSON)`` rows in seq order.
#: The chain's rules are the domain's (``domain/audit_chain.py``); the caller passes them in.
ChainCheck = Callable[[Iterable[tuple[int, str, str, str]]], AuditCheck]


def verify_audit_rows(conn: Connection, check: ChainCheck, batch: int = BATCH) -> AuditCheck:
    """The audit hash chain of ``conn``'s store, read in batches and checked by ``check``."""
    stmt = select(audit.c.seq, audit.c.prev_hash, audit.c.hash, audit.c.record).order_by(
        audit.c.seq
    )
    result = conn.execute(stmt.execution_options(yield_per=batch))
    try:
        return check(
            (int(r.seq), str(r.prev_hash), str(r.hash), str(r.record))
            for part in result.partitions()
            for r in part
        )
    finally:
        result.close()


def verify_blobs(
    entries: Sequence[BlobEntry],
    source_digests: Mapping[str, str],
    target: BlobStore,
    *,
    check_blob: BlobCheckFn | None = None,
    progress: Progress = no_progress,
    workers: int = WORKERS,
) -> BlobCheck:
    """Read every blob back from ``target``: its sha256 must be the source's
    (``source_digests``: blob key -> sha256), and ``check_blob`` must find nothing wrong
    with it."""

    def one(entry: BlobEntry) -> tuple[str, int]:
        """(problem kind or "", stored size) of one blob."""
        try:
            data = target.get(entry.blob_key)
        except FileNotFoundError:
            return "missing", 0
        if hashlib.sha256(data).hexdigest() != source_digests.get(entry.blob_key):
            return "mismatched", len(data)
        problem = check_blob(entry, data) if check_blob is not None else None
        return (f"bad:{problem}" if problem else ""), len(data)

    missing: list[str] = []
    mismatched: list[str] = []
    bad: list[str] = []
    size = 0
    with progress("verifying blobs", len(entries)) as step:
        for entry, (problem, length) in zip(
            entries, _parallel(one, entries, workers, step), strict=True
        ):
            size += length
            if problem == "missing":
                missing.append(entry.label)
            elif problem == "mismatched":
                mismatched.append(entry.label)
            elif problem:
                bad.append(f"{entry.label}: {problem[4:]}")
    return BlobCheck(
        checked=len(entries),
        bytes=size,
        decrypted=check_blob is not None,
        missing=missing,
        mismatched=mismatched,
        undecryptable=bad,
    )


def verify_copy(
    source: StoreHandle,
    target: StoreHandle,
    *,
    verify_chain: ChainCheck,
    check_blob: BlobCheckFn | None = None,
    batch: int = BATCH,
    progress: Progress = no_progress,
    workers: int = WORKERS,
) -> VerifyReport:
    """Compare two committed stores: every copied table's row count and digest, every
    version's blob bytes, and the target's audit chain."""
    with read_snapshot(source.engine) as sconn, read_snapshot(target.engine) as tconn:
        plan = plan_copy(sconn, batch=batch, progress=progress)

        def digest_of(entry: BlobEntry) -> str:
            try:
                return hashlib.sha256(source.blobs.get(entry.blob_key)).hexdigest()
            except FileNotFoundError:
                return "missing from the source"

        with progress("reading source blobs", len(plan.blobs)) as step:
            found = _parallel(digest_of, plan.blobs, workers, step)
            digests = {e.blob_key: d for e, d in zip(plan.blobs, found, strict=True)}
        tables = compare_tables(plan.tables, tconn, batch=batch, progress=progress)
        blobs = verify_blobs(plan.blobs, digests, target.blobs, check_blob=check_blob,
                             progress=progress, workers=workers)  # fmt: skip
        return VerifyReport(tables, blobs, verify_audit_rows(tconn, verify_chain, batch))


# -- copying ---------------------------------------------------------------------------------


def reset_sequences(conn: Connection) -> None:
    """PostgreSQL: move each table's id sequence past the copied ids (explicit ids do not
    advance it; the next insert would collide). An empty table starts again at 1."""
    if conn.dialect.name != "postgresql":
        return  # SQLite: an INTEGER PRIMARY KEY continues from max(rowid)
    for table in copied_tables():
        col = table.autoincrement_column
        if col is None:
            continue
        top = func.max(col)
        conn.execute(
            select(
                func.setval(
                    func.pg_get_serial_sequence(table.name, col.name),
                    func.coalesce(top, 1),
                    top.is_not(None),
                )
            )
        )


def _copy_rows(
    sconn: Connection, tconn: Connection, plan: Plan, batch: int, progress: Progress
) -> None:
    with progress("copying rows", plan.rows) as step:
        for table in copied_tables():
            with _batches(sconn, table, batch) as parts:
                for rows in parts:
                    tconn.execute(insert(table), [dict(r._mapping) for r in rows])
                    step(len(rows))


def _copy_blobs(
    source: BlobStore,
    target: BlobStore,
    entries: Sequence[BlobEntry],
    written: list[str],
    progress: Progress,
    workers: int,
) -> dict[str, str]:
    def one(entry: BlobEntry) -> str:
        try:
            data = source.get(entry.blob_key)
        except FileNotFoundError:
            raise CopyFailed(
                f"the source's blob of {entry.label} ({entry.blob_key}) is missing; "
                "the source is damaged (restore the blob from a backup)"
            ) from None
        written.append(entry.blob_key)  # before the put: a failed put is cleaned up as well
        target.put(entry.blob_key, data)
        return hashlib.sha256(data).hexdigest()

    with progress("copying blobs", len(entries)) as step:
        digests = list(_parallel(one, entries, workers, step))
    return {e.blob_key: d for e, d in zip(entries, digests, strict=True)}


def _parallel(
    call: Callable[[BlobEntry], T], entries: Sequence[BlobEntry], workers: int,
    step: Callable[[int], None],
) -> Iterator[T]:  # fmt: skip
    """``call`` on every entry, ``workers`` at a time (blob stores are network round trips);
    results in order. The first failure cancels what has not started, waits for what has,
    and is raised."""
    if workers <= 1 or len(entries) <= 1:
        for entry in entries:
            yield call(entry)
            step(1)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stateward-copy")
    try:
        futures = [pool.submit(call, e) for e in entries]
        for future in futures:
            yield future.result()
            step(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _removed(target: BlobStore, keys: Sequence[str]) -> str:
    """Delete the blobs the copy wrote; a note for the message if some could not be."""
    left = 0
    for key in keys:
        try:
            target.delete(key)
        except Exception:
            left += 1
    if not left:
        return ""
    return (f" ({left} copied blob(s) could not be removed from the target: orphans, which "
            "`stateward gc` on the target collects)")  # fmt: skip


def _describe(exc: Exception) -> str:
    """A failure in one line, without values: a database error's first line only (never the
    statement and its parameters, which hold the rows)."""
    if isinstance(exc, DBAPIError):
        where, text = "the copy failed in the metadata store", str(exc.orig)
    else:
        where, text = "the copy failed", str(exc)
    lines = text.strip().splitlines()
    return f"{where}: {lines[0] if lines else type(exc).__name__}"


@dataclass(frozen=True, slots=True)
class CopyResult:
    plan: Plan
    report: VerifyReport


def copy_store(
    source: StoreHandle,
    target: StoreHandle,
    *,
    verify_chain: ChainCheck,
    check_blob: BlobCheckFn | None = None,
    batch: int = BATCH,
    progress: Progress = no_progress,
    workers: int = WORKERS,
) -> CopyResult:
    """Copy ``source`` into the empty ``target`` (schema already created) and verify the copy
    before committing it. Raises :class:`CopyRefused` (nothing written) or :class:`CopyFailed`
    (everything written was removed again)."""
    to_postgres = target.engine.dialect.name == "postgresql"
    src_at, tgt_at = BlobLocation.of(source.blobs), BlobLocation.of(target.blobs)
    if src_at is not None and tgt_at is not None:
        refuse_shared_blobs(src_at, tgt_at)
    elif source.blobs is target.blobs:
        raise CopyRefused("source and target are the same blob store: give the target its own")
    with read_snapshot(source.engine) as sconn:
        with target.engine.connect() as probe:
            refuse_unless_empty(probe)
        plan = plan_copy(sconn, to_postgres=to_postgres, batch=batch, progress=progress)
        written: list[str] = []
        try:
            digests = _copy_blobs(
                source.blobs, target.blobs, plan.blobs, written, progress, workers
            )
            blobs = verify_blobs(plan.blobs, digests, target.blobs, check_blob=check_blob,
                                 progress=progress, workers=workers)  # fmt: skip
            if not blobs.ok:
                raise CopyFailed(
                    "the copied blobs do not verify",
                    VerifyReport([], blobs, AuditCheck(0)),
                )
            with target.engine.begin() as tconn:  # PostgreSQL: holds the write lock
                refuse_unless_empty(tconn)
                _copy_rows(sconn, tconn, plan, batch, progress)
                reset_sequences(tconn)
                tables = compare_tables(plan.tables, tconn, batch=batch, progress=progress)
                report = VerifyReport(tables, blobs, verify_audit_rows(tconn, verify_chain, batch))
                if not report.ok:
                    raise CopyFailed("the copy does not verify", report)  # rolls back
        except (CopyRefused, CopyFailed) as exc:
            exc.args = (str(exc) + _removed(target.blobs, written),)
            raise
        except Exception as exc:
            raise CopyFailed(_describe(exc) + _removed(target.blobs, written)) from exc
        except BaseException:  # interrupted: still take back what was written
            _removed(target.blobs, written)
            raise
    return CopyResult(plan, report)
