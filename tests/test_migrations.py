"""Schema migrations (storage/migrations, Alembic) on both metadata stores.

What must hold: an empty store is migrated to head; a store of the release before migrations
(``schema_info`` version 1, no ``alembic_version``) is recognised, stamped 0001 and upgraded
with its rows intact; a store at a revision this build does not know is refused, never
downgraded; an upgrade is all or nothing; replicas starting together migrate once, under the
write lock; and the head of the migrations is exactly schema.py (so a schema change without
its migration fails here).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql

from stateward.cli.main import cli
from stateward.storage import engine as engine_module
from stateward.storage.engine import (
    MIGRATIONS_DIR,
    MetadataStoreError,
    head_revision,
    init_schema,
    known_revisions,
    postgres_engine,
    schema_status,
    sqlite_engine,
    upgrade_schema,
)
from stateward.storage.schema import metadata
from tests.harness.pg import STORES, PgCluster, close_connections

# -- the schema of the release before migrations ----------------------------------------------


def _legacy_metadata() -> MetaData:
    """The tables of schema.py as of commit e17c7df, the last release before migrations, copied
    verbatim (comments dropped): that release built its store with ``create_all`` of these and
    recorded ``schema_info`` version "1". Frozen here on purpose: never update it."""
    md = MetaData()

    def path() -> Any:
        return String(256).with_variant(postgresql.VARCHAR(256, collation="C"), "postgresql")

    def principal() -> Any:
        return String(256).with_variant(Text(), "postgresql")

    Table(
        "states", md,
        Column("path", path(), primary_key=True),
        Column("current_seq", Integer, nullable=True),
        Column("next_seq", Integer, nullable=False, default=1),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        Column("deleted_at", Float, nullable=True),
        Column("deleted_by", principal(), nullable=True),
        Column("protected", Boolean, nullable=False, default=False),
        Column("override_next_write", Boolean, nullable=False, default=False),
    )  # fmt: skip
    versions = Table(
        "versions", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("path", path(), ForeignKey("states.path"), nullable=False),
        Column("seq", Integer, nullable=False),
        Column("serial", BigInteger, nullable=False),
        Column("lineage", String(128), nullable=False),
        Column("size", BigInteger, nullable=False),
        Column("stored_size", BigInteger, nullable=False),
        Column("md5", String(32), nullable=False),
        Column("sha256", String(64), nullable=False),
        Column("blob_key", String(128), nullable=False, unique=True),
        Column("author", principal(), nullable=False),
        Column("created_at", Float, nullable=False),
        Column("client_version", String(64), nullable=False, default=""),
        Column("terraform_version", String(64), nullable=False, default=""),
        Column("lock_id", String(256), nullable=True),
        Column("resource_count", Integer, nullable=False),
        Column("output_count", Integer, nullable=False),
        Column("client_encrypted", Boolean, nullable=False),
        Column("kind", String(16), nullable=False),
        Column("source_seq", Integer, nullable=True),
        UniqueConstraint("path", "seq", name="uq_versions_path_seq"),
    )  # fmt: skip
    Index("ix_versions_path_created", versions.c.path, versions.c.created_at)
    blob_keys = Table(
        "blob_keys", md,
        Column("blob_key", String(128), ForeignKey("versions.blob_key"), primary_key=True),
        Column("path", path(), nullable=False),
        Column("provider", String(64), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("key_id", String(512), nullable=False),
        Column("key_version", String(128), nullable=False),
    )  # fmt: skip
    Index("ix_blob_keys_provider", blob_keys.c.provider, blob_keys.c.key_version)
    Table(
        "locks", md,
        Column("path", path(), primary_key=True),
        Column("lock_id", String(256), nullable=False),
        Column("info", LargeBinary, nullable=False),
        Column("who", String(256), nullable=False),
        Column("operation", String(256), nullable=False),
        Column("client_version", String(64), nullable=False),
        Column("principal", principal(), nullable=False),
        Column("acquired_at", Float, nullable=False),
    )  # fmt: skip
    events = Table(
        "events", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", Float, nullable=False),
        Column("principal", principal(), nullable=False),
        Column("action", String(64), nullable=False),
        Column("path", path(), nullable=True),
        Column("detail", Text, nullable=False, default=""),
    )  # fmt: skip
    Index("ix_events_path", events.c.path)
    audit = Table(
        "audit", md,
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("at", Float, nullable=False),
        Column("principal", String(512), nullable=False),
        Column("action", String(32), nullable=False),
        Column("path", path(), nullable=True),
        Column("outcome", String(16), nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
        Column("record", Text, nullable=False),
    )  # fmt: skip
    Index("ix_audit_path_at", audit.c.path, audit.c.at)
    Index("ix_audit_principal_at", audit.c.principal, audit.c.at)
    Index("ix_audit_at", audit.c.at)
    Table(
        "secret_scans", md,
        Column("path", path(), primary_key=True),
        Column("seq", Integer, primary_key=True),
        Column("scanned_at", Float, nullable=False),
        Column("findings", Integer, nullable=False),
        Column("note", String(256), nullable=False, default=""),
    )  # fmt: skip
    secret_findings = Table(
        "secret_findings", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("path", path(), nullable=False),
        Column("seq", Integer, nullable=False),
        Column("location", Text, nullable=False),
        Column("kind", String(64), nullable=False),
        Column("rule", String(64), nullable=False),
    )  # fmt: skip
    Index("ix_secret_findings_version", secret_findings.c.path, secret_findings.c.seq)
    Table(
        "audit_cursors", md,
        Column("name", String(64), primary_key=True),
        Column("seq", BigInteger, nullable=False),
    )  # fmt: skip
    Table(
        "tokens", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(64), nullable=False, unique=True),
        Column("hash", String(64), nullable=False, unique=True, index=True),
        Column("roles", Text, nullable=False),
        Column("paths", Text, nullable=False),
        Column("created_at", Float, nullable=False),
        Column("created_by", principal(), nullable=False),
        Column("expires_at", Float, nullable=True),
        Column("revoked_at", Float, nullable=True),
        Column("last_used_at", Float, nullable=True),
    )  # fmt: skip
    Table(
        "schema_info", md,
        Column("key", String(64), primary_key=True),
        Column("value", String(256), nullable=False),
    )  # fmt: skip
    alerts = Table(
        "alerts", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", Float, nullable=False),
        Column("rule", String(64), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("severity", String(16), nullable=False),
        Column("path", path(), nullable=True),
        Column("principal", String(512), nullable=True),
        Column("summary", Text, nullable=False),
        Column("audit_seq", BigInteger, nullable=True),
        Column("dedup", String(64), nullable=False, unique=True),
        Column("acknowledged_at", Float, nullable=True),
        Column("acknowledged_by", String(512), nullable=True),
    )  # fmt: skip
    Index("ix_alerts_open", alerts.c.acknowledged_at, alerts.c.id)
    return md


LEGACY = _legacy_metadata()


def make_legacy_store(engine: Engine, version: str | None = "1") -> None:
    """What the release before migrations left: its tables, and schema_info ``version``
    (None: the row is missing, as after a crash between its two start-up transactions)."""
    with engine.begin() as conn:
        LEGACY.create_all(conn)
        if version is not None:
            conn.execute(
                LEGACY.tables["schema_info"].insert(), {"key": "schema_version", "value": version}
            )


#: Rows a store of the release before migrations may hold, one or more per table.
LEGACY_ROWS: dict[str, list[dict[str, Any]]] = {
    "states": [
        {"path": "team/app/prod", "current_seq": 2, "next_seq": 3, "created_at": 1.5,
         "updated_at": 2.25, "deleted_at": None, "deleted_by": None, "protected": True,
         "override_next_write": False},
        {"path": "team/app-x/dev", "current_seq": None, "next_seq": 1, "created_at": 3.0,
         "updated_at": 3.0, "deleted_at": 4.0, "deleted_by": "token:ci", "protected": False,
         "override_next_write": True},
    ],
    "versions": [
        {"id": i, "path": "team/app/prod", "seq": i, "serial": 2**40 + i, "lineage": "lin",
         "size": 10 * i, "stored_size": 9 * i, "md5": "0" * 32, "sha256": "1" * 64,
         "blob_key": f"{i:064x}", "author": "oidc:issuer.example:" + "s" * 400,
         "created_at": 1.000001 * i, "client_version": "Terraform/1.9.0",
         "terraform_version": "1.9.0", "lock_id": None, "resource_count": 3,
         "output_count": 1, "client_encrypted": False, "kind": "write", "source_seq": None}
        for i in (1, 2)
    ],
    "blob_keys": [
        {"blob_key": f"{2:064x}", "path": "team/app/prod", "provider": "default",
         "kind": "keyfile", "key_id": "master.key", "key_version": "1"},
    ],
    "locks": [
        {"path": "team/app/prod", "lock_id": "abc", "info": b"\x00{\"ID\":\"abc\"}\xff",
         "who": "me@host", "operation": "OperationTypeApply", "client_version": "1.9.0",
         "principal": "token:ci", "acquired_at": 5.5},
    ],
    "events": [{"id": 1, "at": 6.0, "principal": "cli:root", "action": "break-lock",
                "path": "team/app/prod", "detail": "held by me@host"}],
    "audit": [
        {"seq": s, "at": 7.0 + s, "principal": "token:ci", "action": "GET",
         "path": "team/app/prod", "outcome": "ok", "prev_hash": "0" * 64, "hash": f"{s:064x}",
         "record": json.dumps({"seq": s})}
        for s in (1, 2, 3)
    ],
    "secret_scans": [{"path": "team/app/prod", "seq": 1, "scanned_at": 8.0, "findings": 1,
                      "note": ""}],
    "secret_findings": [{"id": 1, "path": "team/app/prod", "seq": 1,
                         "location": "resources[0].password", "kind": "password",
                         "rule": "attr-name"}],
    "audit_cursors": [{"name": "sink:siem", "seq": 2}],
    "tokens": [
        {"id": 1, "name": "initial-admin", "hash": "f" * 64, "roles": '["admin"]',
         "paths": "[]", "created_at": 0.5, "created_by": "cli:root", "expires_at": None,
         "revoked_at": 9.0, "last_used_at": 8.5},
    ],
    "alerts": [
        {"id": 1, "at": 9.5, "rule": "prod-writes", "kind": "write", "severity": "high",
         "path": "team/app/prod", "principal": "token:ci", "summary": "write to prod",
         "audit_seq": 2, "dedup": "d" * 64, "acknowledged_at": None, "acknowledged_by": None},
    ],
}  # fmt: skip


def legacy_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the legacy tables (schema_info aside), in primary key order."""
    out = {}
    with engine.connect() as conn:
        for name in LEGACY_ROWS:
            table = metadata.tables[name]
            cols = [table.c[c] for c in LEGACY.tables[name].c.keys()]  # noqa: SIM118
            rows = conn.execute(select(*cols).order_by(*table.primary_key.columns))
            out[name] = [tuple(r) for r in rows]
    return out


# -- stores -----------------------------------------------------------------------------------

_names = itertools.count(1)


class EmptyStore:
    """A store holding nothing at all (not even the schema): an empty SQLite file, or a new
    PostgreSQL database made like the tests' template (ICU en-US default collation)."""

    def __init__(self, kind: str, tmp_path: Path, cluster: PgCluster | None) -> None:
        self.kind = kind
        self.cluster = cluster
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir(parents=True)
        self.url: str | None = None
        self._engines: list[Engine] = []
        if cluster is not None:
            self.name = f"sw_migrations_{next(_names)}"
            cluster.admin(
                f"CREATE DATABASE {self.name} TEMPLATE template0 ENCODING 'UTF8' "
                "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
            self.url = cluster.url(self.name)

    def engine(self) -> Engine:
        """A new engine on the store, as a replica or a CLI command would open it."""
        if self.url is None:
            engine = sqlite_engine(self.data_dir / "stateward.db")
        else:
            engine = postgres_engine(self.url)
        self._engines.append(engine)
        return engine

    def cli(self, *args: str) -> Any:
        env = {"STATEWARD_DATABASE_URL": self.url} if self.url else {}
        return CliRunner().invoke(cli, ["--data-dir", str(self.data_dir), *args], env=env)

    def close(self) -> None:
        for engine in self._engines:
            engine.dispose()
        if self.cluster is not None:
            close_connections(self.name)
            self.cluster.admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


@pytest.fixture(params=STORES)
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmptyStore]:
    cluster = request.getfixturevalue("pg_cluster") if request.param == "postgres" else None
    s = EmptyStore(request.param, tmp_path, cluster)
    try:
        yield s
    finally:
        s.close()


def alembic_versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return []
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def schema_info_version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT value FROM schema_info WHERE key = 'schema_version'")
        ).scalar()


def upgrade_to(engine: Engine, revision: str) -> None:
    """Run the migrations up to ``revision`` only (as init_schema runs them: one transaction)."""
    with engine.begin() as conn:
        command.upgrade(engine_module._alembic_config(conn), revision)


def _pg_columns(engine: Engine) -> dict[tuple[str, str], tuple[str | None]]:
    """(table, column) -> (collation,) from PostgreSQL's information_schema."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT table_name, column_name, collation_name FROM "
                "information_schema.columns WHERE table_schema = 'public'"
            )
        )
        return {(t, c): (collation,) for t, c, collation in rows}


def fingerprint(engine: Engine) -> dict[str, Any]:
    """The schema as the database reports it (alembic_version aside): per table, its columns
    (type as the dialect spells it, nullability, default, collation), primary key, foreign
    keys, unique constraints and indexes."""
    out: dict[str, Any] = {}
    collations: dict[tuple[str, str], str | None] = {}
    if engine.dialect.name == "postgresql":
        collations = {key: collation for key, (collation,) in _pg_columns(engine).items()}
    with engine.connect() as conn:
        insp = inspect(conn)
        for table in sorted(insp.get_table_names()):
            if table == "alembic_version":
                continue
            out[table] = {
                "columns": [
                    (
                        c["name"],
                        c["type"].compile(dialect=conn.dialect),
                        c["nullable"],
                        c.get("default"),
                        collations.get((table, c["name"])),
                    )
                    for c in insp.get_columns(table)
                ],
                "pk": insp.get_pk_constraint(table)["constrained_columns"],
                "fks": sorted(
                    (
                        tuple(fk["constrained_columns"]),
                        fk["referred_table"],
                        tuple(fk["referred_columns"]),
                        fk["name"],
                    )
                    for fk in insp.get_foreign_keys(table)
                ),
                "unique": sorted(
                    (str(u["name"]), tuple(u["column_names"]))
                    for u in insp.get_unique_constraints(table)
                ),
                "indexes": sorted(
                    (str(i["name"]), tuple(map(str, i["column_names"])), i["unique"])
                    for i in insp.get_indexes(table)
                ),
            }
        if conn.dialect.name == "sqlite":  # the DDL itself, whitespace aside
            rows = conn.execute(
                text(
                    "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                    "AND name NOT LIKE 'sqlite_%' AND tbl_name <> 'alembic_version'"
                )
            )
            out["sqlite_master"] = sorted((name, " ".join(sql.split())) for name, sql in rows)
    return out


# -- the migrations themselves ----------------------------------------------------------------


def test_revisions_are_one_numbered_line() -> None:
    known = known_revisions()
    assert known[:2] == ["0001", "0002"]
    assert known == [f"{i:04d}" for i in range(1, len(known) + 1)]
    assert head_revision() == known[-1]
    # shipped inside the package (hatch's wheel takes every file under src/stateward)
    assert (MIGRATIONS_DIR / "env.py").is_file() and (MIGRATIONS_DIR / "script.py.mako").is_file()


def test_baseline_is_the_schema_of_the_release_before_migrations(
    empty: EmptyStore, tmp_path: Path
) -> None:
    """0001 builds what that release's create_all built, on both dialects: same columns,
    types, collations, keys, constraints and indexes (and on SQLite the same DDL)."""
    migrated = empty.engine()
    upgrade_to(migrated, "0001")
    assert alembic_versions(migrated) == ["0001"]
    other = EmptyStore(empty.kind, tmp_path / "legacy", empty.cluster)
    try:
        legacy = other.engine()
        make_legacy_store(legacy)
        assert fingerprint(migrated) == fingerprint(legacy)
        with migrated.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), LEGACY) == []
    finally:
        other.close()


def test_head_is_schema_py(empty: EmptyStore) -> None:
    """The migrated head is exactly storage/schema.py's ``metadata``: a table, column, index or
    constraint added to schema.py without a migration fails here (and the other way round)."""
    engine = empty.engine()
    init_schema(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # compare_metadata also compares types (compare_type is on by default), nullability and
    # server defaults. No known false positives on either dialect today; filter one here, by
    # its exact shape and with the reason, only if reflection can be shown to be wrong.
    assert diff == []
    # ... but not collations, which decide the order of listings on PostgreSQL: compare them
    # (information_schema names only the non-default ones, as schema.py does)
    if engine.dialect.name == "postgresql":
        expected = {
            (table.name, column.name): getattr(
                column.type.dialect_impl(engine.dialect), "collation", None
            )
            for table in metadata.sorted_tables
            for column in table.columns
        }
        actual = {
            key: collation
            for key, (*_, collation) in _pg_columns(engine).items()
            if key[0] != "alembic_version"
        }
        assert actual == expected


# -- init_schema ------------------------------------------------------------------------------


def test_empty_store_is_migrated_to_head_once(empty: EmptyStore) -> None:
    engine = empty.engine()
    assert schema_status(engine) == (None, head_revision())
    done = upgrade_schema(engine)
    assert done.before is None and done.after == head_revision() and not done.legacy
    assert [a.split()[0] for a in done.applied] == known_revisions()
    assert done.applied[1].startswith("0002 (Leases on background jobs")
    assert alembic_versions(engine) == [head_revision()]
    assert schema_info_version(engine) == head_revision()
    assert schema_status(engine) == (head_revision(), head_revision())
    again = upgrade_schema(engine)
    assert not again.changed and again.before == head_revision()
    init_schema(engine)  # and the start-up entry point is as quiet
    assert alembic_versions(engine) == [head_revision()]


@pytest.mark.parametrize("version", ["1", None])
def test_store_of_the_release_before_migrations_is_stamped_and_upgraded(
    empty: EmptyStore, version: str | None
) -> None:
    engine = empty.engine()
    make_legacy_store(engine, version)
    with engine.begin() as conn:
        for name, rows in LEGACY_ROWS.items():
            conn.execute(LEGACY.tables[name].insert(), rows)
    before = legacy_rows(engine)
    assert sum(map(len, before.values())) == sum(map(len, LEGACY_ROWS.values()))
    assert schema_status(engine) == ("0001", head_revision())  # what it is, nothing recorded
    assert alembic_versions(engine) == []

    done = upgrade_schema(engine)
    assert done.legacy and done.before is None
    assert [a.split()[0] for a in done.applied] == known_revisions()[1:]
    assert alembic_versions(engine) == [head_revision()]
    assert schema_info_version(engine) == head_revision()
    assert legacy_rows(engine) == before  # every row, every value, as it was
    with engine.begin() as conn:  # the new table is there and usable
        conn.execute(
            metadata.tables["leases"].insert(),
            {"name": "retention", "holder": "r1", "acquired_at": 1.0, "expires_at": 2.0},
        )
    assert not upgrade_schema(engine).changed


def test_older_store_lacking_later_tables_gets_them(empty: EmptyStore) -> None:
    """Releases before migrations added tables one at a time (create_all on start): a store
    from before tokens, audit and alerts existed gets them from 0001, its rows untouched."""
    engine = empty.engine()
    early = ("states", "versions", "locks", "events", "schema_info")
    with engine.begin() as conn:
        for name in early:
            LEGACY.tables[name].create(conn)
        conn.execute(LEGACY.tables["schema_info"].insert(), {"key": "schema_version", "value": "1"})
        conn.execute(LEGACY.tables["states"].insert(), LEGACY_ROWS["states"])
    done = upgrade_schema(engine)
    assert done.legacy and alembic_versions(engine) == [head_revision()]
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert set(metadata.tables) <= tables
        assert conn.execute(text("SELECT count(*) FROM states")).scalar() == 2
        indexes = {i["name"] for i in inspect(conn).get_indexes("tokens")}
        assert "ix_tokens_hash" in indexes


def test_service_starts_on_a_store_of_the_release_before_migrations(empty: EmptyStore) -> None:
    """build_service (serve, every CLI command) migrates it on start."""
    from stateward.config import Settings
    from stateward.service.factory import build_service

    make_legacy_store(empty.engine())
    svc = build_service(Settings(data_dir=empty.data_dir, database_url=empty.url))
    try:
        assert alembic_versions(svc.engine) == [head_revision()]
    finally:
        svc.engine.dispose()


def test_store_of_a_newer_release_is_refused_never_downgraded(empty: EmptyStore) -> None:
    engine = empty.engine()
    init_schema(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0917'"))
    snapshot = fingerprint(engine)
    with pytest.raises(MetadataStoreError) as err:
        init_schema(engine)
    message = str(err.value)
    assert "'0917'" in message and "newer stateward; upgrade the binary" in message
    assert alembic_versions(engine) == ["0917"] and fingerprint(engine) == snapshot
    assert schema_status(engine) == ("0917", head_revision())


@pytest.mark.parametrize(
    ("prepare", "refusal"),
    [
        (lambda e: make_legacy_store(e, "2"), "schema version '2'"),
        (
            lambda e: LEGACY.tables["states"].create(e),
            "holds stateward tables (states) but no schema version",
        ),
    ],
    ids=["unknown-schema-info", "no-version"],
)
def test_unrecognised_store_is_refused_untouched(
    empty: EmptyStore, prepare: Callable[[Engine], None], refusal: str
) -> None:
    engine = empty.engine()
    prepare(engine)
    snapshot = fingerprint(engine)
    with pytest.raises(MetadataStoreError, match=re.escape(refusal)):
        init_schema(engine)
    assert fingerprint(engine) == snapshot and alembic_versions(engine) == []


def test_failed_upgrade_changes_nothing(empty: EmptyStore) -> None:
    """The stamp and every migration share one transaction: 0002 failing (a table of that
    name is in the way) leaves the store exactly as the release before migrations left it."""
    engine = empty.engine()
    make_legacy_store(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE leases (something INTEGER)"))
    snapshot = fingerprint(engine)
    with pytest.raises(MetadataStoreError, match=r"the schema upgrade .*rolled back") as err:
        init_schema(engine)
    assert "leases" in str(err.value)
    assert alembic_versions(engine) == [] and schema_info_version(engine) == "1"
    assert fingerprint(engine) == snapshot


def test_unreachable_store_still_says_it_cannot_open_it(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path / "missing-dir" / "stateward.db")
    try:
        with pytest.raises(MetadataStoreError, match="cannot open the metadata store"):
            init_schema(engine)
    finally:
        engine.dispose()


# -- replicas ---------------------------------------------------------------------------------


def test_replicas_starting_together_migrate_once(empty: EmptyStore) -> None:
    engines = [empty.engine() for _ in range(6)]
    start = threading.Barrier(len(engines))

    def replica(engine: Engine) -> Any:
        start.wait()
        return upgrade_schema(engine)

    results: list[Any] = [None] * len(engines)
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, replica(engines[i])))
        for i in range(len(engines))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in results), "a replica failed to start"
    migrated = [r for r in results if r.changed]
    assert len(migrated) == 1 and len(migrated[0].applied) == len(known_revisions())
    assert all(r.before == head_revision() for r in results if not r.changed)
    assert alembic_versions(engines[0]) == [head_revision()]


def test_processes_opening_a_new_sqlite_file_together(tmp_path: Path) -> None:
    """Switching a new file to WAL answered "database is locked" at once (no busy wait) to
    about one start in seven when six opened it together (CI caught it); now retried."""
    for i in range(30):
        engines = [sqlite_engine(tmp_path / f"{i}.db") for _ in range(6)]
        start = threading.Barrier(len(engines))
        errors: list[BaseException] = []

        def replica(engine: Engine, start: threading.Barrier, errors: list[BaseException]) -> None:
            start.wait()
            try:
                upgrade_schema(engine)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=replica, args=(e, start, errors)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for e in engines:
            e.dispose()
        assert errors == []


def test_migration_waits_for_the_write_lock(empty: EmptyStore) -> None:
    """The upgrade is a write transaction like any other: it queues behind a writer (the
    PostgreSQL advisory lock, SQLite's BEGIN IMMEDIATE), then sees what that writer did."""
    holder = empty.engine()
    make_legacy_store(holder)
    done: list[Any] = []
    with holder.begin() as conn:  # holds the write lock until the block ends
        conn.execute(LEGACY.tables["audit_cursors"].insert(), {"name": "late", "seq": 1})
        t = threading.Thread(target=lambda: done.append(upgrade_schema(empty.engine())))
        t.start()
        time.sleep(1.0)
        assert t.is_alive() and done == []  # waiting for the lock
    t.join(30)
    assert done and done[0].legacy
    assert alembic_versions(holder) == [head_revision()]
    assert ("late", 1) in legacy_rows(holder)["audit_cursors"]


def test_migration_holds_the_advisory_lock(pg_cluster: PgCluster, tmp_path: Path) -> None:
    """While a replica migrates, PostgreSQL shows it holding the write lock."""
    store = EmptyStore("postgres", tmp_path, pg_cluster)
    try:
        _check_advisory_lock_held(store.engine())
    finally:
        store.close()


def _check_advisory_lock_held(engine: Engine) -> None:
    seen: list[int] = []
    original = engine_module._migrate

    def spy(conn: Any) -> Any:
        seen.append(
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                "pid = pg_backend_pid() AND (classid::bigint << 32 | objid::bigint) = "
                f"{engine_module.WRITE_LOCK_KEY}"
            ).scalar()
        )
        return original(conn)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_module, "_migrate", spy)
        upgrade_schema(engine)
    assert seen == [1]


# -- stateward db -----------------------------------------------------------------------------


def test_db_status_and_upgrade(empty: EmptyStore) -> None:
    head = head_revision()
    res = empty.cli("db", "status")
    assert res.exit_code == 0, res.output
    assert "current revision: none (empty store)" in res.output
    assert f"head revision:    {head}" in res.output and "pending: 0001, 0002" in res.output

    res = empty.cli("db", "upgrade")
    assert res.exit_code == 0, res.output
    assert "applied 0001 (Baseline" in res.output and "applied 0002 (Leases" in res.output
    assert f"now at revision {head} (head)" in res.output

    res = empty.cli("db", "status", "--json")
    assert res.exit_code == 0, res.output
    status = json.loads(res.output)
    assert status["current"] == head and status["state"] == "current"
    assert status["pending"] == [] and "***" not in status["store"]

    res = empty.cli("db", "upgrade")
    assert res.exit_code == 0 and f"already at revision {head} (head)" in res.output

    with empty.engine().begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0917'"))
    for args in (("db", "status"), ("db", "upgrade")):
        res = empty.cli(*args)
        assert res.exit_code == 1, res.output
        assert "0917" in res.output and "newer stateward; upgrade the binary" in res.output


def test_db_upgrade_of_a_store_of_the_release_before_migrations(empty: EmptyStore) -> None:
    make_legacy_store(empty.engine())
    res = empty.cli("db", "status", "--json")
    assert json.loads(res.output)["current"] == "0001"
    res = empty.cli("db", "upgrade")
    assert res.exit_code == 0, res.output
    assert "recorded the schema of the release before migrations" in res.output
    assert "applied 0002 (Leases" in res.output and "applied 0001" not in res.output


def test_db_status_creates_no_store(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "nothing"), "db", "status"])
    assert res.exit_code == 0 and "none (empty store)" in res.output
    assert not (tmp_path / "nothing").exists()


def test_pg_template_is_migrated(pg_cluster: PgCluster) -> None:
    """Every PostgreSQL test runs on a migrated schema (tests/harness/pg.py builds its template with
    init_schema); the databases handed out keep their alembic_version row."""
    url = pg_cluster.create_database()
    engine = postgres_engine(url)
    try:
        assert alembic_versions(engine) == [head_revision()]
    finally:
        engine.dispose()
        pg_cluster.drop_database(url)
