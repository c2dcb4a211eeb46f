"""Moving a whole store to another (``stateward migrate-store``), verified.

Typical moves: the embedded store (SQLite + blob files) to PostgreSQL + S3 when outgrowing one
machine, and back. The copy itself is ``storage/copy.py``: raw rows and raw blob bytes,
verified before the target's transaction commits.

Blobs stay encrypted and are copied as they are, so the target must use the same key
providers (the same key file contents, passphrase or KMS keys) and the same token key file:
both are checked where they are files, before anything is written; ``verify_decrypt``
decrypts every version with the target's configuration to prove the rest.

The target always gets its own blob store (another data directory, bucket or non-overlapping
prefix): a shared one is refused, since each store's gc and retention would delete the blobs
only the other's metadata references.

The workflow is two steps, so an operator can look at the plan before anything is written:
:meth:`StoreMigration.check` (refusals, the plan, notes) and :meth:`StoreMigration.run` (copy,
verify, and one ``migrate-store`` record appended to the target's audit trail).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stateward.config import Settings
from stateward.crypto.barrier import Barrier, BlobCorrupt
from stateward.crypto.providers.base import KeyProviderError
from stateward.crypto.providers.local import KeyfileConfig, read_keyfile
from stateward.domain import audit_chain
from stateward.domain.actions import Action
from stateward.domain.errors import Conflict, ServiceError, Unavailable
from stateward.domain.principal import Principal
from stateward.service import context
from stateward.service.audit import VerifyReport as ChainReport
from stateward.service.core import StateService
from stateward.service.factory import blob_store, build_service, metadata_engine
from stateward.storage.blobs import FileBlobStore
from stateward.storage.copy import (
    AuditCheck,
    BlobEntry,
    BlobLocation,
    CopyFailed,
    CopyRefused,
    Plan,
    Progress,
    StoreHandle,
    VerifyReport,
    active_leases,
    existing_rows,
    no_progress,
    plan_copy,
    read_snapshot,
    refuse_shared_blobs,
)
from stateward.storage.copy import copy_store as run_copy
from stateward.storage.engine import MetadataStoreError, init_schema
from stateward.storage.errors import StoreUnavailable
from stateward.storage.s3 import S3BlobStore
from stateward.storage.transactions import Engine
from stateward.storage.urls import store_identity

__all__ = [
    "KEYS_NOTE",
    "MigrationPlan",
    "MigrationRefused",
    "MigrationResult",
    "Plan",
    "StoreMigration",
    "VerifyReport",
    "chain_check",
]

KEYS_NOTE = (
    "Blobs are copied byte for byte and stay encrypted: the target must use the same key "
    "providers (same master key file, passphrase or KMS keys) and the same token_key_file "
    "as the source."
)


class MigrationRefused(Conflict):
    """The move cannot start (nothing was written), or did not verify (nothing was kept)."""

    def __init__(self, message: str, report: VerifyReport | None = None) -> None:
        super().__init__(message)
        self.report = report


def chain_check(rows: Iterable[tuple[int, str, str, str]]) -> AuditCheck:
    """The domain's audit chain rules, as the storage copy's verification step."""
    checked, problem = audit_chain.verify(rows)
    if problem is None:
        return AuditCheck(checked)
    return AuditCheck(checked, problem.seq, problem.what)


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    plan: Plan
    notes: list[str]

    @property
    def summary(self) -> str:
        p = self.plan
        return f"{p.rows} row(s) in {len(p.tables)} tables, {len(p.blobs)} blob(s)"

    @property
    def size(self) -> int:
        return sum(b.size for b in self.plan.blobs)


@dataclass(frozen=True, slots=True)
class MigrationResult:
    report: VerifyReport
    seconds: float
    #: The target's audit chain after the move's own record was appended.
    chain: ChainReport
    record_seq: int


@dataclass
class StoreMigration:
    source: Settings
    target: Settings
    who: Principal
    force: bool = False
    #: The operation recorded in the target's trail.
    operation: str = "cli migrate-store"
    _engines: list[Engine] = field(default_factory=list)
    _source: StoreHandle | None = None

    def describe(self, which: Settings) -> str:
        return f"{which.database_display()}, blobs {blob_display(which)}"

    def check(self, progress: Progress = no_progress) -> MigrationPlan:
        """Everything that can be refused before a write: the same store twice, a shared blob
        store, a running source, a non-empty target, missing keys. Raises MigrationRefused
        (or Unavailable for a store that cannot be reached)."""
        with _translated():
            return self._check(progress)

    def _check(self, progress: Progress) -> MigrationPlan:
        source, target = self.source, self.target
        if metadata_identity(source) == metadata_identity(target):
            raise MigrationRefused(
                "source and target are the same metadata store: give the target its own "
                "database_url or data directory"
            )
        refuse_shared_blobs(blob_location(source), blob_location(target))
        if source.database_url is None and not source.db_path.is_file():
            raise MigrationRefused(f"no stateward database at {source.db_path} (the source)")
        engine = metadata_engine(source)
        self._engines.append(engine)
        init_schema(engine)  # brings an older source schema up to date, as any command does
        self._source = StoreHandle(engine, blob_store(source), source.database_display())
        with read_snapshot(engine) as conn:
            running = active_leases(conn, time.time())
        if running and not self.force:
            jobs = ", ".join(f"{name} (held by {holder})" for name, holder in running[:3])
            raise MigrationRefused(
                f"a server seems to be running on the source: unexpired leases on {jobs}; stop "
                "every server of the source first (--force copies anyway)"
            )
        refuse_nonempty_target(target)
        with read_snapshot(engine) as conn:
            plan = plan_copy(conn, to_postgres=target.database_url is not None, progress=progress)
        notes = check_keys(source, target, plan.key_versions)
        notes += check_token_key(source, target, plan.tables["tokens"].rows)
        return MigrationPlan(plan, notes)

    def run(
        self, planned: MigrationPlan, *, verify_decrypt: bool, progress: Progress = no_progress
    ) -> MigrationResult:
        """Copy and verify (committed only if everything verifies), then append the move's
        record to the target's trail and verify its chain."""
        with _translated():
            return self._run(planned, verify_decrypt, progress)

    def _run(
        self, planned: MigrationPlan, verify_decrypt: bool, progress: Progress
    ) -> MigrationResult:
        assert self._source is not None, "check() first"
        self.target.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        svc = build_service(self.target)
        self._engines.append(svc.engine)
        handle = StoreHandle(svc.engine, svc.barrier.blobs, self.target.database_display())
        started = time.monotonic()
        try:
            result = run_copy(
                self._source,
                handle,
                verify_chain=chain_check,
                check_blob=decrypt_check(svc.barrier) if verify_decrypt else None,
                progress=progress,
            )
        except CopyFailed as exc:
            raise MigrationRefused(f"{exc}; nothing was kept in the target", exc.report) from exc
        seconds = time.monotonic() - started
        chain, seq = self._record(svc, result.plan)
        return MigrationResult(result.report, seconds, chain, seq)

    def _record(self, svc: StateService, plan: Plan) -> tuple[ChainReport, int]:
        """One ``migrate-store`` record in the target's trail, so its (copied) chain continues
        and shows the move; then the chain verified through the target's service."""
        reason = (
            f"migrate-store from {self.source.database_display()} with blobs "
            f"{blob_display(self.source)}: {plan.tables['versions'].rows} version(s), "
            f"{plan.tables['audit'].rows} audit record(s)"
        )
        try:
            with context.begin(self.operation, "cli") as ctx:
                ctx.who = self.who
                svc.audit.record_note(self.who, Action.ADMIN, reason)
                report = svc.audit.verify_audit(self.who)
                seq = svc.audit.audit_head_seq(self.who)
        except ServiceError as exc:
            raise Unavailable(
                "the copy is complete and verified, but the target's audit trail could not "
                f"record it: {exc}",
                retry=False,
            ) from None
        if not report.ok:
            raise MigrationRefused(
                f"the target's audit trail is broken at record {report.first_bad_seq}: "
                f"{report.problem}"
            )
        return report, seq

    def close(self) -> None:
        for engine in self._engines:
            engine.dispose()


class _translated:
    """Lower layers' refusals as service errors (one line, with the reason)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, ServiceError):
            return
        if isinstance(exc, StoreUnavailable):
            raise Unavailable(str(exc), retry=exc.retry) from exc
        if isinstance(exc, CopyRefused | MetadataStoreError | KeyProviderError | OSError):
            raise MigrationRefused(str(exc)) from exc


# -- the two stores -----------------------------------------------------------------------------


def metadata_identity(settings: Settings) -> str:
    return store_identity(settings.database_url, settings.db_path)


def blob_location(settings: Settings) -> BlobLocation:
    cfg = settings.blob_store
    if cfg is None:
        return BlobLocation.files(settings.blob_dir)
    return BlobLocation.s3(cfg.bucket, cfg.prefix)


def blob_display(settings: Settings) -> str:
    cfg = settings.blob_store
    if cfg is None:
        return f"in files under {settings.blob_dir}"
    return f"in s3://{cfg.bucket}/{cfg.prefix}" + (
        f" at {cfg.endpoint_url}" if cfg.endpoint_url else ""
    )


def refuse_nonempty_target(target: Settings) -> None:
    """Refuse a target holding anything, without writing to it (not even its schema)."""
    if target.database_url is not None or target.db_path.is_file():
        engine = metadata_engine(target)
        try:
            with read_snapshot(engine) as conn:
                held = existing_rows(conn)
        finally:
            engine.dispose()
        if held:
            what = ", ".join(f"{n} {name}" for name, n in held.items())
            raise MigrationRefused(
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
        raise MigrationRefused(
            f"the target blob store ({blob_display(target)}) already holds blobs: give the "
            "target an empty bucket, prefix or data directory"
        )


# -- keys ---------------------------------------------------------------------------------------


def _provider_configs(settings: Settings) -> dict[str, object]:
    configs: dict[str, object] = dict(settings.key_providers)
    configs.setdefault("default", KeyfileConfig(create=True))
    return configs


def check_keys(source: Settings, target: Settings, used: Mapping[str, set[str]]) -> list[str]:
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
            raise MigrationRefused(
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
        raise MigrationRefused(
            f"the target's key file for provider {name!r}, {tgt}, does not exist: {fix}"
        )
    _cur, src_keys = read_keyfile(src, name)
    _cur, tgt_keys = read_keyfile(tgt, name)
    for version in sorted(versions):
        mine, theirs = src_keys.get(version), tgt_keys.get(version)
        if mine is not None and (theirs is None or not hmac.compare_digest(mine, theirs)):
            raise MigrationRefused(
                f"the target's key file {tgt} does not hold version {version} of key provider "
                f"{name!r} as the source's {src} does: {fix}"
            )


def check_token_key(source: Settings, target: Settings, tokens: int) -> list[str]:
    """Token rows hold keyed hashes: the target needs the same token key file."""
    src = source.token_key_file or source.data_dir / "token.key"
    tgt = target.token_key_file or target.data_dir / "token.key"
    if not tokens or src.resolve() == tgt.resolve():
        return []
    if not src.exists():
        return [f"note: the source has no token key ({src}): its tokens cannot authenticate"]
    fix = f"copy {src} there (mode 0600) or set token_key_file = {str(src)!r}"
    if not tgt.exists():
        raise MigrationRefused(
            f"the target's token key file {tgt} does not exist, so none of the {tokens} "
            f"token(s) would authenticate there: {fix}"
        )
    if not hmac.compare_digest(src.read_bytes(), tgt.read_bytes()):
        raise MigrationRefused(
            f"the target's token key file {tgt} differs from the source's, so none of the "
            f"{tokens} token(s) would authenticate there: {fix}"
        )
    return []


def decrypt_check(barrier: Barrier) -> Callable[[BlobEntry, bytes], str | None]:
    """``verify_decrypt``: open each copied blob with the target's keys; its plaintext must
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
