"""``stateward migrate-store``: the embedded store to PostgreSQL + S3 (moto) and back, verified;
and every refusal leaves the target as it was."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, insert, select, update

from stateward.cli.main import cli
from stateward.config import Settings, load_settings
from stateward.crypto.providers.local import write_keyfile
from stateward.domain import audit_chain as chain
from stateward.domain.alerts import AlertDraft
from stateward.domain.errors import Conflict, Locked
from stateward.domain.principal import Principal
from stateward.gate import Caller, build_gate
from stateward.service.core import StateService
from stateward.service.factory import blob_store, build_service, metadata_engine
from stateward.service.migrate import chain_check
from stateward.storage.copy import (
    CopyFailed,
    CopyRefused,
    StoreHandle,
    copied_tables,
    copy_store,
    digest_table,
    read_snapshot,
    verify_copy,
)
from stateward.storage.schema import (
    alerts,
    audit,
    audit_cursors,
    events,
    leases,
    locks,
    secret_findings,
    tokens,
    versions,
)
from tests.harness.aws import REGION, s3_client
from tests.harness.pg import PgCluster
from tests.harness.support import lock_body, make_state

ADMIN = Principal("admin", roles=("admin",), source="127.0.0.1")
AKID = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key
PATHS = ("team/app/prod", "team/app/dev", "ops/net/prod")
T = TypeVar("T")


def audited(svc: StateService, call: Callable[[], T]) -> T:
    with build_gate(svc).session(Caller("test", "127.0.0.1", principal=ADMIN)) as session:
        return session.run(lambda _who: call())


def leaky_state(serial: int, lineage: str) -> bytes:
    doc = json.loads(make_state(serial=serial, lineage=lineage))
    doc["resources"][0]["instances"][0]["attributes"]["note"] = f"key {AKID} here"
    return (json.dumps(doc, indent=2) + "\n").encode()


@dataclass
class Source:
    data: Path
    token: str  # secret of an active token
    lock_id: str
    bodies: dict[tuple[str, int], bytes]


def populate(data: Path) -> Source:
    """An embedded store with a bit of everything: several versions per path (one rollback,
    one with secrets, one soft-deleted path), a held lock, tokens (one revoked), alerts, scans,
    findings, events, audit records, an audit cursor, and an expired lease."""
    svc = build_service(Settings(data_dir=data))
    try:
        for n, path in enumerate(PATHS):
            lineage = str(uuid.uuid4())
            for serial in range(1, 4 + n):
                body = leaky_state(serial, lineage) if serial == 2 else make_state(serial, lineage)
                audited(svc, lambda p=path, b=body: svc.writes.write(ADMIN, p, b))
        audited(svc, lambda: svc.writes.rollback(ADMIN, PATHS[0], 1))
        lock_id = str(uuid.uuid4())
        audited(svc, lambda: svc.locks.lock(ADMIN, PATHS[0], lock_body(lock_id, who="zoë@host")))
        _view, secret = audited(svc, lambda: svc.tokens.create_token(ADMIN, "ci", ["writer"]))
        audited(svc, lambda: svc.tokens.create_token(ADMIN, "old", ["reader"]))
        audited(svc, lambda: svc.tokens.revoke_token(ADMIN, "old"))
        audited(svc, lambda: svc.admin.delete(ADMIN, PATHS[2]))
        assert svc.secrets.scan_pending(limit=100) > 0
        for i in range(2):
            svc.alerts.store_alert(
                AlertDraft(
                    rule="mass",
                    kind="mass-destroy",
                    severity="high",
                    at=time.time(),
                    path=PATHS[1],
                    principal="admin",
                    summary=f"alert {i} ∂",
                    audit_seq=i + 1,
                    dedup=f"d{i}",
                )
            )
        now = time.time()
        with svc.engine.begin() as conn:
            conn.execute(insert(audit_cursors).values(name="sinks", seq=3))
            conn.execute(
                insert(leases).values(
                    name="scanner", holder="gone:1:x", acquired_at=now - 99, expires_at=now - 60
                )
            )
        bodies = {}
        with svc.engine.connect() as conn:
            rows = conn.execute(select(versions.c.path, versions.c.seq)).all()
        for path, seq in rows:
            bodies[(path, seq)] = svc.history.get_version_body(ADMIN, path, seq)[1]
        assert len(bodies) == 3 + 4 + 5 + 1
        with svc.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(secret_findings)).scalar()
    finally:
        svc.engine.dispose()
    return Source(data, str(secret), lock_id, bodies)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> Source:
    return populate(tmp_path / "src")


@pytest.fixture
def databases(pg_cluster: PgCluster) -> Iterator[Callable[[], str]]:
    """Fresh PostgreSQL databases (the empty schema), given back after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(pg_cluster.create_database())
        return made[-1]

    yield make
    for url in made:
        pg_cluster.release_database(url)


@pytest.fixture
def buckets(s3_url: str, aws_env: None) -> Callable[[], str]:
    def make() -> str:
        name = f"sw-mig-{uuid.uuid4().hex[:12]}"
        s3_client(s3_url).create_bucket(Bucket=name)
        return name

    return make


def objects(s3_url: str, bucket: str) -> dict[str, bytes]:
    client = s3_client(s3_url)
    out = {}
    for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        out[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def write_config(
    file: Path,
    src: Path,
    *,
    database_url: str | None = None,
    bucket: str | None = None,
    s3_url: str | None = None,
    prefix: str | None = None,
    shared_keys: bool = True,
) -> Path:
    """A target configuration; ``shared_keys``: the source's key file and token key file."""
    lines = []
    if database_url is not None:
        lines.append(f"database_url = {json.dumps(database_url)}")
    if shared_keys:
        lines.append(f"token_key_file = {json.dumps(str(src / 'token.key'))}")
        lines += [
            "[key_providers.default]",
            'type = "keyfile"',
            f"path = {json.dumps(str(src / 'master.key'))}",
        ]
    if bucket is not None:
        lines += [
            "[blob_store]",
            'type = "s3"',
            f"bucket = {json.dumps(bucket)}",
            f"endpoint_url = {json.dumps(s3_url)}",
            f'region = "{REGION}"',
        ]
        if prefix is not None:
            lines.append(f"prefix = {json.dumps(prefix)}")
    file.write_text("\n".join(lines) + "\n")
    return file


def migrate(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def handle(settings: Settings) -> StoreHandle:
    return StoreHandle(metadata_engine(settings), blob_store(settings), "x")


def table_rows(engine: Engine, table: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(table).order_by(*table.primary_key.columns)).all())


def row_total(engine: Engine) -> int:
    with engine.connect() as conn:
        return sum(
            int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in copied_tables()
        )


# -- the round trip ----------------------------------------------------------------------------


def test_embedded_to_postgres_s3_and_back(
    source: Source,
    tmp_path: Path,
    databases: Callable[[], str],
    buckets: Callable[[], str],
    s3_url: str,
) -> None:
    src = source.data
    url, bucket = databases(), buckets()
    pg_cfg = write_config(tmp_path / "pg.toml", src, database_url=url, bucket=bucket, s3_url=s3_url)
    pg_dir = tmp_path / "pgdata"
    res = migrate(
        "--data-dir",
        str(src),
        "migrate-store",
        "--to-config",
        str(pg_cfg),
        "--to-data-dir",
        str(pg_dir),
        "--verify-decrypt",
        "--yes",
    )
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "same key providers" in out and "MISMATCH" not in out
    assert "versions (decrypt)" in out and "chain verified" in out
    for table in copied_tables():
        assert table.name in out
    assert "leases" not in out.split("to copy:")[1]  # not copied

    pg = load_settings(pg_cfg, {"data_dir": pg_dir}, env={})
    s_handle, p_handle = handle(Settings(data_dir=src)), handle(pg)
    try:
        # every table equal but the audit trail, which has one record more: the move itself
        report = verify_copy(s_handle, p_handle, verify_chain=chain_check)
        bad = [t.name for t in report.tables if not t.ok]
        assert bad == ["audit"] and report.blobs.ok and report.audit.ok, report.problems()
        assert report.blobs.checked == len(source.bodies)
        src_audit = table_rows(s_handle.engine, audit)
        pg_audit = table_rows(p_handle.engine, audit)
        assert pg_audit[: len(src_audit)] == src_audit
        last = chain.from_json(pg_audit[-1].record)
        assert (last.operation, last.action, last.outcome) == ("cli migrate-store", "admin", "ok")
        assert last.principal.startswith("cli:") and "sqlite:///" in last.reason
        assert last.prev_hash == src_audit[-1].hash
        assert table_rows(p_handle.engine, leases) == []
        # blob objects: the very same bytes as the files
        stored = objects(s3_url, bucket)
        assert len(stored) == len(source.bodies)
        for name, data in stored.items():
            key = name.rsplit("/", 1)[1]
            assert (src / "blobs" / key[:2] / key).read_bytes() == data

        svc = build_service(pg)
        try:
            for (path, seq), body in source.bodies.items():
                assert svc.history.get_version_body(ADMIN, path, seq)[1] == body
            assert svc.audit.verify_audit(ADMIN).ok
        finally:
            svc.engine.dispose()

        # ... and back, into a new embedded store
        back = tmp_path / "back"
        back_cfg = write_config(tmp_path / "back.toml", src)
        res = migrate(
            "--config",
            str(pg_cfg),
            "--data-dir",
            str(pg_dir),
            "migrate-store",
            "--to-config",
            str(back_cfg),
            "--to-data-dir",
            str(back),
            "--yes",
        )
        assert res.exit_code == 0, res.output
        assert "--verify-decrypt" in res.stdout  # says what it did not check
        b_handle = handle(Settings(data_dir=back))
        try:
            report = verify_copy(p_handle, b_handle, verify_chain=chain_check)
            assert [t.name for t in report.tables if not t.ok] == ["audit"], report.problems()
            assert report.blobs.ok and report.audit.ok
            with read_snapshot(s_handle.engine) as a, read_snapshot(b_handle.engine) as b:
                for table in copied_tables():
                    if table.name != "audit":
                        assert digest_table(a, table) == digest_table(b, table), table.name
            assert len(table_rows(b_handle.engine, audit)) == len(src_audit) + 2
            for key, _age in b_handle.blobs.list():
                assert (back / "blobs" / key[:2] / key).read_bytes() == (
                    src / "blobs" / key[:2] / key
                ).read_bytes()
            assert len(list(b_handle.blobs.list())) == len(source.bodies)
        finally:
            b_handle.engine.dispose()

        back_svc = build_service(load_settings(back_cfg, {"data_dir": back}, env={}))
        try:
            for (path, seq), body in source.bodies.items():
                assert back_svc.history.get_version_body(ADMIN, path, seq)[1] == body
            assert back_svc.audit.verify_audit(ADMIN).checked == len(src_audit) + 2
            assert back_svc.tokens.authenticate_token(source.token) is not None
            _fresh_ids(back_svc, source)
        finally:
            back_svc.engine.dispose()

        # the PostgreSQL store works on: tokens, the held lock, fresh ids (sequences moved on)
        svc = build_service(pg)
        try:
            view = svc.tokens.authenticate_token(source.token)
            assert view is not None and view.name == "ci"
            held = svc.locks.get_lock(ADMIN, PATHS[0])
            assert held is not None and held.id == source.lock_id and held.who == "zoë@host"
            with pytest.raises(Locked):
                audited(svc, lambda: svc.locks.lock(ADMIN, PATHS[0], lock_body()))
            with pytest.raises(Conflict, match="is locked by zoë@host"):
                audited(svc, lambda: svc.writes.write(ADMIN, PATHS[0], make_state(9)))
            _fresh_ids(svc, source)
            assert svc.audit.verify_audit(ADMIN).ok
        finally:
            svc.engine.dispose()
    finally:
        s_handle.engine.dispose()
        p_handle.engine.dispose()


def _fresh_ids(svc: StateService, source: Source) -> None:
    """New rows get ids past the copied ones (PostgreSQL: the sequences were moved on)."""
    before = {t.name: _max_id(svc.engine, t) for t in (versions, tokens, events, alerts)}
    audited(svc, lambda: svc.writes.write(ADMIN, "new/after/move", make_state(1)))
    audited(svc, lambda: svc.tokens.create_token(ADMIN, "after-move", ["reader"]))
    svc.alerts.store_alert(
        AlertDraft(
            rule="r",
            kind="k",
            severity="low",
            at=time.time(),
            path=None,
            principal=None,
            summary="s",
            audit_seq=None,
            dedup="after",
        )
    )
    for table in (versions, tokens, events, alerts):
        assert _max_id(svc.engine, table) > before[table.name] > 0, table.name
    assert len(source.bodies) + 1 == _count(svc.engine, versions)


def _max_id(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.max(table.c.id))).scalar_one())


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# -- refusals ----------------------------------------------------------------------------------


def test_a_non_empty_target_is_refused_and_left_alone(
    source: Source,
    tmp_path: Path,
    databases: Callable[[], str],
    buckets: Callable[[], str],
    s3_url: str,
) -> None:
    url, bucket = databases(), buckets()
    cfg = write_config(
        tmp_path / "pg.toml", source.data, database_url=url, bucket=bucket, s3_url=s3_url
    )
    args = (
        "--data-dir",
        str(source.data),
        "migrate-store",
        "--to-config",
        str(cfg),
        "--to-data-dir",
        str(tmp_path / "pgdata"),
        "--yes",
    )
    assert migrate(*args).exit_code == 0
    settings = load_settings(cfg, {"data_dir": tmp_path / "pgdata"}, env={})
    engine = metadata_engine(settings)
    try:
        before = (row_total(engine), objects(s3_url, bucket))
        res = migrate(*args)
        assert res.exit_code == 1
        assert "target store is not empty" in res.output and "never merges" in res.output
        assert (row_total(engine), objects(s3_url, bucket)) == before
        # a fresh database but a bucket that already holds blobs: refused as well
        cfg2 = write_config(
            tmp_path / "pg2.toml",
            source.data,
            database_url=databases(),
            bucket=bucket,
            s3_url=s3_url,
        )
        res = migrate(
            "--data-dir", str(source.data), "migrate-store", "--to-config", str(cfg2), "--yes"
        )
        assert res.exit_code == 1 and "already holds blobs" in res.output
    finally:
        engine.dispose()


def test_nul_in_text_is_refused_for_postgresql_naming_the_row(
    source: Source,
    tmp_path: Path,
    databases: Callable[[], str],
    buckets: Callable[[], str],
    s3_url: str,
) -> None:
    engine = metadata_engine(Settings(data_dir=source.data))
    try:
        with engine.begin() as conn:
            conn.execute(update(events).where(events.c.id == 2).values(detail="a\x00b"))
    finally:
        engine.dispose()
    url, bucket = databases(), buckets()
    cfg = write_config(
        tmp_path / "pg.toml", source.data, database_url=url, bucket=bucket, s3_url=s3_url
    )
    for extra in ((), ("--dry-run",)):
        res = migrate(
            "--data-dir",
            str(source.data),
            "migrate-store",
            "--to-config",
            str(cfg),
            "--yes",
            *extra,
        )
        assert res.exit_code == 1
        line = res.output.strip().splitlines()[-1]
        assert "table events, row id=2: detail holds a NUL character" in line, res.output
    target = metadata_engine(load_settings(cfg, {}, env={}))
    try:
        assert row_total(target) == 0
    finally:
        target.dispose()
    assert objects(s3_url, bucket) == {}
    # the embedded store holds it: a copy to another embedded store goes through
    res = migrate(
        "--data-dir",
        str(source.data),
        "migrate-store",
        "--to-config",
        str(write_config(tmp_path / "e.toml", source.data)),
        "--to-data-dir",
        str(tmp_path / "other"),
        "--yes",
    )
    assert res.exit_code == 0, res.output


def pg_target(
    source: Source, tmp_path: Path, url: str, bucket: str, s3_url: str
) -> tuple[Path, Settings, str]:
    """A PostgreSQL + S3 target for ``source``: its config file, settings and bucket."""
    cfg = write_config(
        tmp_path / "pg.toml", source.data, database_url=url, bucket=bucket, s3_url=s3_url
    )
    return cfg, load_settings(cfg, {"data_dir": tmp_path / "pgdata"}, env={}), bucket


def test_verification_finds_tampered_blobs_rows_and_audit_records(
    source: Source,
    tmp_path: Path,
    databases: Callable[[], str],
    buckets: Callable[[], str],
    s3_url: str,
) -> None:
    _cfg, settings, _bucket = pg_target(source, tmp_path, databases(), buckets(), s3_url)
    s_handle, p_handle = handle(Settings(data_dir=source.data)), handle(settings)
    try:
        result = copy_store(
            s_handle, p_handle, batch=3, verify_chain=chain_check
        )  # several batches per table
        assert (
            result.report.ok
            and verify_copy(s_handle, p_handle, batch=4, verify_chain=chain_check).ok
        )
        victim = result.plan.blobs[2]
        p_handle.blobs.put(victim.blob_key, b"tampered")
        with p_handle.engine.begin() as conn:
            conn.execute(update(tokens).where(tokens.c.name == "ci").values(last_used_at=1.5))
            edited = func.replace(audit.c.record, '"status":200', '"status":201')
            conn.execute(update(audit).where(audit.c.seq == 3).values(record=edited))
        report = verify_copy(s_handle, p_handle, verify_chain=chain_check)
        assert not report.ok
        assert report.blobs.mismatched == [victim.label]
        assert {t.name for t in report.tables if not t.ok} == {"tokens", "audit"}
        tokens_check = next(t for t in report.tables if t.name == "tokens")
        assert tokens_check.source_rows == tokens_check.target_rows  # same count, other rows
        assert report.audit.first_bad_seq == 3
        problems = "\n".join(report.problems())
        assert "tokens" in problems and victim.label in problems and "record 3" in problems
        p_handle.blobs.delete(result.plan.blobs[0].blob_key)
        assert verify_copy(s_handle, p_handle, verify_chain=chain_check).blobs.missing == [
            result.plan.blobs[0].label
        ]
    finally:
        s_handle.engine.dispose()
        p_handle.engine.dispose()


def test_a_failed_copy_leaves_nothing_behind(
    source: Source,
    tmp_path: Path,
    databases: Callable[[], str],
    buckets: Callable[[], str],
    s3_url: str,
) -> None:
    cfg, settings, bucket = pg_target(source, tmp_path, databases(), buckets(), s3_url)
    s_handle, p_handle = handle(Settings(data_dir=source.data)), handle(settings)
    try:
        # a check failing on one blob (as --verify-decrypt does with the wrong keys)
        with pytest.raises(CopyFailed) as err:
            copy_store(
                s_handle,
                p_handle,
                verify_chain=chain_check,
                check_blob=lambda e, _d: "no" if e.seq == 2 else None,
            )
        assert err.value.report is not None and len(err.value.report.blobs.undecryptable) == 3
        assert row_total(p_handle.engine) == 0 and objects(s3_url, bucket) == {}
    finally:
        s_handle.engine.dispose()
        p_handle.engine.dispose()
    # a blob missing from the source: the copy stops, what it wrote is removed
    last = table_rows(s_handle.engine, versions)[-1].blob_key
    (source.data / "blobs" / last[:2] / last).unlink()
    res = migrate("--data-dir", str(source.data), "migrate-store", "--to-config", str(cfg), "--yes")
    assert res.exit_code == 1 and "is missing" in res.output and "nothing was kept" in res.output
    assert objects(s3_url, bucket) == {}
    target = metadata_engine(settings)
    try:
        assert row_total(target) == 0
    finally:
        target.dispose()


def test_running_server_missing_keys_and_dry_run(
    source: Source,
    tmp_path: Path,
    databases: Callable[[], str],
    buckets: Callable[[], str],
    s3_url: str,
) -> None:
    url, bucket = databases(), buckets()
    base = ("--data-dir", str(source.data), "migrate-store", "--yes")
    # the target's own (missing) key file: refused before anything is written
    cfg = write_config(
        tmp_path / "nokeys.toml",
        source.data,
        database_url=url,
        bucket=bucket,
        s3_url=s3_url,
        shared_keys=False,
    )
    res = migrate(*base, "--to-config", str(cfg), "--to-data-dir", str(tmp_path / "t"))
    assert res.exit_code == 1 and "master.key" in res.output and "does not exist" in res.output
    assert not (tmp_path / "t").exists()
    # another key file in its place: refused too
    write_keyfile(tmp_path / "t" / "master.key", {"1": os.urandom(32)}, "1", new=True)
    res = migrate(*base, "--to-config", str(cfg), "--to-data-dir", str(tmp_path / "t"))
    assert res.exit_code == 1 and "does not hold version 1" in res.output
    # the same master key but another token key: refused as well
    (tmp_path / "t" / "master.key").write_bytes((source.data / "master.key").read_bytes())
    (tmp_path / "t" / "token.key").write_bytes(b"k" * 32)
    res = migrate(*base, "--to-config", str(cfg), "--to-data-dir", str(tmp_path / "t"))
    assert res.exit_code == 1 and "token key file" in res.output and "differs" in res.output
    # a lease that has not expired: a server seems to be running
    engine = metadata_engine(Settings(data_dir=source.data))
    try:
        with engine.begin() as conn:
            conn.execute(update(leases).values(expires_at=time.time() + 60))
    finally:
        engine.dispose()
    good = write_config(
        tmp_path / "pg.toml", source.data, database_url=url, bucket=bucket, s3_url=s3_url
    )
    res = migrate(*base, "--to-config", str(good))
    assert res.exit_code == 1 and "server seems to be running" in res.output
    assert "scanner" in res.output
    # --force goes on; --dry-run shows the plan and writes nothing
    res = migrate(*base, "--to-config", str(good), "--force", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "dry run: nothing was written" in res.stdout and "versions" in res.stdout
    target = metadata_engine(load_settings(good, {}, env={}))
    try:
        assert row_total(target) == 0
    finally:
        target.dispose()
    assert objects(s3_url, bucket) == {}


SHARED = "give the target its own blob location"


def file_tree(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*") if f.is_file()}


def test_a_shared_blob_directory_is_refused_before_anything_is_written(
    source: Source, tmp_path: Path, databases: Callable[[], str]
) -> None:
    """SQLite to PostgreSQL keeping the data directory would leave two stores collecting
    orphans in one blob directory (each one's gc deletes the other's new blobs): refused,
    by the command and by copy_store itself, with nothing written anywhere."""
    url = databases()
    cfg = write_config(tmp_path / "pg.toml", source.data, database_url=url)
    settings = load_settings(cfg, {"data_dir": source.data}, env={})
    before = file_tree(source.data)
    res = migrate(
        "--data-dir", str(source.data), "migrate-store", "--to-config", str(cfg),
        "--to-data-dir", str(source.data), "--yes",
    )  # fmt: skip
    assert res.exit_code == 1
    line = res.output.strip().splitlines()[-1]
    blobs = source.data.resolve() / "blobs"
    assert f"blob store (files under {blobs}) is the source's" in line and SHARED in line, line
    # ... and through the library: never a write, never a deleted source blob
    src, dst = handle(Settings(data_dir=source.data)), handle(settings)
    try:
        with pytest.raises(CopyRefused, match=SHARED):
            copy_store(src, dst, verify_chain=chain_check)
        assert row_total(dst.engine) == 0
    finally:
        src.engine.dispose()
        dst.engine.dispose()
    assert file_tree(source.data) == before


def test_a_shared_bucket_prefix_is_refused(
    source: Source, tmp_path: Path, buckets: Callable[[], str], s3_url: str
) -> None:
    """Same bucket: the same prefix, or one prefix inside the other, is refused; a prefix of
    its own in the same bucket is fine."""
    bucket = buckets()
    s3_cfg = write_config(tmp_path / "s3.toml", source.data, bucket=bucket, s3_url=s3_url)
    s3_dir = tmp_path / "s3data"
    res = migrate(
        "--data-dir", str(source.data), "migrate-store", "--to-config", str(s3_cfg),
        "--to-data-dir", str(s3_dir), "--yes",
    )  # fmt: skip
    assert res.exit_code == 0, res.output  # the source from here on: blobs in "stateward/"
    before = objects(s3_url, bucket)
    assert len(before) == len(source.bodies)
    for n, (prefix, what) in enumerate(
        [
            (None, f"(s3://{bucket}/stateward/) is the source's"),
            ("stateward/next/", f"(s3://{bucket}/stateward/next/) overlaps the source's"),
            ("", f"(s3://{bucket}/) overlaps the source's (s3://{bucket}/stateward/)"),
        ]
    ):
        cfg = write_config(
            tmp_path / f"t{n}.toml", source.data, bucket=bucket, s3_url=s3_url, prefix=prefix
        )
        res = migrate(
            "--config", str(s3_cfg), "--data-dir", str(s3_dir), "migrate-store",
            "--to-config", str(cfg), "--to-data-dir", str(tmp_path / f"t{n}"), "--yes",
        )  # fmt: skip
        assert res.exit_code == 1
        line = res.output.strip().splitlines()[-1]
        assert what in line and SHARED in line, line
        assert not (tmp_path / f"t{n}").exists()
        assert objects(s3_url, bucket) == before
    cfg = write_config(
        tmp_path / "own.toml", source.data, bucket=bucket, s3_url=s3_url, prefix="moved/"
    )
    res = migrate(
        "--config", str(s3_cfg), "--data-dir", str(s3_dir), "migrate-store",
        "--to-config", str(cfg), "--to-data-dir", str(tmp_path / "own"), "--yes",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    after = objects(s3_url, bucket)
    assert {k: v for k, v in after.items() if k.startswith("stateward/")} == before
    assert {k.removeprefix("moved/") for k in after if k.startswith("moved/")} == {
        k.removeprefix("stateward/") for k in before
    }


def test_sqlite_to_postgresql_copies_the_blobs_to_another_data_directory(
    source: Source, tmp_path: Path, databases: Callable[[], str]
) -> None:
    """The metadata-only move done right: PostgreSQL and a data directory of its own."""
    cfg = write_config(tmp_path / "pg.toml", source.data, database_url=databases())
    pg_dir = tmp_path / "pgdata"
    res = migrate(
        "--data-dir", str(source.data), "migrate-store", "--to-config", str(cfg),
        "--to-data-dir", str(pg_dir), "--yes", "--verify-decrypt",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "MISMATCH" not in res.stdout and "chain verified" in res.stdout
    src_blobs = file_tree(source.data / "blobs")
    assert file_tree(pg_dir / "blobs") == src_blobs and len(src_blobs) == len(source.bodies)
    svc = build_service(load_settings(cfg, {"data_dir": pg_dir}, env={}))
    try:
        for (path, seq), body in source.bodies.items():
            assert svc.history.get_version_body(ADMIN, path, seq)[1] == body
        fresh = make_state(1)
        audited(svc, lambda: svc.writes.write(ADMIN, "team/new2", fresh))
        assert svc.history.get_version_body(ADMIN, "team/new2", 1)[1] == fresh
    finally:
        svc.engine.dispose()
    assert file_tree(source.data / "blobs") == src_blobs  # the source's blobs: untouched


def test_same_store_is_refused(source: Source, tmp_path: Path) -> None:
    cfg = tmp_path / "same.toml"
    cfg.write_text(f"data_dir = {json.dumps(str(source.data))}\n")
    res = migrate("--data-dir", str(source.data), "migrate-store", "--to-config", str(cfg), "--yes")
    assert res.exit_code == 1 and "same metadata store" in res.output


def test_digests_agree_across_sqlite_and_postgresql_for_the_same_rows(
    source: Source, tmp_path: Path, databases: Callable[[], str]
) -> None:
    """Hashes are over canonical values: floats, booleans, bytes, unicode and the primary-key
    order come out the same from both databases (the template's collation is ICU en-US)."""
    src = handle(Settings(data_dir=source.data))
    dst = handle(Settings(data_dir=tmp_path / "d", database_url=databases()))
    try:
        with src.engine.begin() as conn:
            conn.execute(
                insert(audit_cursors), [{"name": n, "seq": 1} for n in ("B", "a", "_x", "Z-1", "é")]
            )
        result = copy_store(src, dst, verify_chain=chain_check)
        assert result.report.ok
        with read_snapshot(dst.engine) as conn:
            names = [
                r.name for r in conn.execute(select(audit_cursors).order_by(audit_cursors.c.name))
            ]
        assert sorted(names) != names  # the database's own order differs ...
        for table in copied_tables():  # ... the digest's does not
            with read_snapshot(src.engine) as a, read_snapshot(dst.engine) as b:
                assert digest_table(a, table) == digest_table(b, table)
        assert hashlib.sha256(b"").hexdigest() not in {
            d.sha256 for n, d in result.plan.tables.items() if n in ("versions", "locks")
        }
        with dst.engine.connect() as conn:
            info = conn.execute(select(locks.c.info)).scalar_one()
        assert bytes(info) == lock_body(source.lock_id, who="zoë@host")
    finally:
        src.engine.dispose()
        dst.engine.dispose()
