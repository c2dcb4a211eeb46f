"""API token store: secrets shown once, stored only as keyed hashes, verified in constant time."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import event

from stateward.cli.main import cli
from stateward.cli.tokens import parse_expiry
from stateward.config import Settings
from stateward.crypto import tokens as crypto
from stateward.domain.errors import BadRequest, Conflict, NotFound, Unavailable
from stateward.domain.principal import Principal
from stateward.service.core import StateService
from stateward.service.factory import build_service
from stateward.service.tokens import LAST_USED_RESOLUTION, validate_glob
from tests.harness.pg import Store, db_dump

WHO = Principal(name="tester", roles=("admin",))
T0 = 1_800_000_000.0


def run(store: Store, data: Path, *args: str) -> Result:
    """The CLI, in process, on ``data``'s store."""
    return CliRunner().invoke(cli, [*store.cli_args(data), *args], catch_exceptions=False)


def files_under(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def svc(service: StateService) -> StateService:
    service.clock = lambda: T0
    return service


def test_cli_create_prints_secret_last_and_list_hides_it(tmp_path: Path, store: Store) -> None:
    data = tmp_path / "data"
    res = run(
        store,
        data,
        "token",
        "create",
        "ci-prod",
        "--role",
        "writer",
        "--path",
        "prod/**",
        "--expires",
        "90d",
    )
    assert res.exit_code == 0, res.output
    secret = res.stdout.splitlines()[-1]
    assert crypto.is_well_formed(secret) and secret.startswith("swt_")
    assert len(base64.urlsafe_b64decode(secret[4:] + "=")) * 8 >= 256
    assert "ci-prod" in res.stderr and secret not in res.stderr
    listed = run(store, data, "token", "list", "--json")
    [row] = json.loads(listed.stdout)
    assert row["name"] == "ci-prod" and row["roles"] == ["writer"] and row["paths"] == ["prod/**"]
    assert row["status"] == "active" and row["expires_at"] is not None
    assert "hash" not in row and secret not in listed.stdout
    table = run(store, data, "token", "list")
    assert "ci-prod" in table.stdout and secret not in table.stdout
    assert run(store, data, "token", "revoke", "ci-prod").exit_code == 0
    assert json.loads(run(store, data, "token", "list", "--json").stdout)[0]["status"] == "revoked"
    second = run(store, data, "token", "create", "other", "--role", "reader")
    assert second.stdout.splitlines()[-1] != secret


def test_secret_and_key_never_in_database_or_data_dir(svc: StateService) -> None:
    _, secret = svc.tokens.create_token(WHO, "a", ["admin"])
    first = svc.tokens.ensure_initial_admin_token(WHO)
    assert first is None  # a token exists already
    assert svc.tokens.authenticate_token(secret) is not None
    svc.tokens.revoke_token(WHO, "a")
    key = svc.tokens.token_key_path.read_bytes()
    raw = base64.urlsafe_b64decode(secret[4:] + "=")
    dump = db_dump(svc.engine)  # every stored value, on either store
    for needle in (secret.encode(), raw, raw.hex().encode(), key, key.hex().encode()):
        assert needle not in dump
    svc.engine.dispose()
    data_dir = svc.settings.data_dir
    for f in files_under(data_dir):
        blob = f.read_bytes()
        assert secret.encode() not in blob and raw not in blob, f
        assert raw.hex().encode() not in blob, f
        if f.name.startswith("stateward.db"):
            assert key not in blob and key.hex().encode() not in blob, f


def test_key_file_mode_location_and_custom_path(tmp_path: Path, store: Store) -> None:
    svc = build_service(store.settings(tmp_path / "d1", token_key_file=None))  # the default
    svc.tokens.create_token(WHO, "a", ["admin"])
    key_file = tmp_path / "d1" / "token.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and key_file.stat().st_size == 32
    assert [p.name for p in key_file.parent.iterdir() if p.name.startswith(".")] == []
    svc.engine.dispose()
    custom = tmp_path / "secrets" / "tk"
    custom.parent.mkdir()
    svc = build_service(store.settings(tmp_path / "d2", token_key_file=custom))
    _, secret = svc.tokens.create_token(WHO, "a", ["admin"])
    assert custom.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "d2" / "token.key").exists()
    assert svc.tokens.authenticate_token(secret) is not None
    svc.engine.dispose()
    before = custom.read_bytes()
    assert crypto.load_or_create_key(custom).digest("x") == crypto.TokenKey(before).digest("x")
    assert custom.read_bytes() == before  # never overwritten


def test_authenticate_ok_wrong_malformed_revoked_expired(svc: StateService) -> None:
    _, secret = svc.tokens.create_token(
        WHO, "ci", ["writer", "reader"], ["prod/**", "*/net"], expires_at=T0 + 3600
    )
    ok = svc.tokens.authenticate_token(secret)
    assert ok is not None and ok.name == "ci" and ok.roles == ("writer", "reader")
    assert ok.paths == ("prod/**", "*/net") and ok.created_by == "tester"
    assert svc.tokens.authenticate_token(crypto.new_token()) is None
    flipped = secret[:-2] + ("A" if secret[-2] != "A" else "B") + secret[-1]
    assert svc.tokens.authenticate_token(flipped) is None
    for bad in (
        "",
        "swt_",
        secret[4:],
        secret + "x",
        "Bearer " + secret,
        "swt_" + "!" * 43,
        secret.upper(),
        "x" * 10_000,
    ):
        assert svc.tokens.authenticate_token(bad) is None
    assert svc.tokens.authenticate_token(secret, now=T0 + 3599) is not None
    assert svc.tokens.authenticate_token(secret, now=T0 + 3600) is None
    svc.tokens.revoke_token(WHO, "ci")
    assert svc.tokens.authenticate_token(secret, now=T0 + 10) is None
    assert svc.tokens.revoke_token(WHO, "ci").revoked_at == T0  # revoking twice changes nothing
    with pytest.raises(NotFound, match="no token named nope"):
        svc.tokens.revoke_token(WHO, "nope")


def test_last_used_updated_but_throttled(svc: StateService) -> None:
    _, secret = svc.tokens.create_token(WHO, "ci", ["writer"])
    writes: list[str] = []

    def count(_c: Any, _cur: Any, stmt: str, *_a: Any) -> None:
        if stmt.lstrip().upper().startswith("UPDATE"):
            writes.append(stmt)

    event.listen(svc.engine, "before_cursor_execute", count)
    first = svc.tokens.authenticate_token(secret, now=T0 + 5)
    assert first is not None and first.last_used_at == T0 + 5
    for i in range(20):
        assert svc.tokens.authenticate_token(secret, now=T0 + 6 + i) is not None
    assert len(writes) == 1
    [stored] = svc.tokens.list_tokens(WHO)
    assert stored.last_used_at == T0 + 5
    later = T0 + 5 + LAST_USED_RESOLUTION
    again = svc.tokens.authenticate_token(secret, now=later)
    assert again is not None and again.last_used_at == later
    assert len(writes) == 2 and svc.tokens.list_tokens(WHO)[0].last_used_at == later


def test_malformed_token_never_queries_the_database(svc: StateService) -> None:
    statements: list[str] = []
    event.listen(
        svc.engine, "before_cursor_execute", lambda _c, _cur, stmt, *_a: statements.append(stmt)
    )
    for bad in ("", "nope", "swt_short", "swt_" + "=" * 43, "ghp_" + "a" * 43, "x" * 1_000_000):
        assert svc.tokens.authenticate_token(bad) is None
    assert statements == []
    assert not svc.tokens.token_key_path.exists()  # not even the key was needed
    svc.tokens.authenticate_token(crypto.new_token())
    assert statements  # a well-formed one is looked up


def test_duplicate_names_refused(svc: StateService, tmp_path: Path) -> None:
    svc.tokens.create_token(WHO, "ci", ["writer"])
    with pytest.raises(Conflict, match="already exists"):
        svc.tokens.create_token(WHO, "ci", ["reader"])
    svc.tokens.revoke_token(WHO, "ci")
    with pytest.raises(Conflict, match="never reused"):
        svc.tokens.create_token(WHO, "ci", ["reader"])
    assert len(svc.tokens.list_tokens(WHO)) == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["bad name", "--role", "writer"], "token name"),
        (["x" * 65, "--role", "writer"], "token name"),
        (["swt_" + "a" * 43, "--role", "writer"], "may not start with"),
        (["t"], "at least one role"),
        (["t", "--role", "Admin"], "invalid role"),
        (["t", "--role", "a b"], "invalid role"),
        (["t", "--role", "w", "--path", "prod/../x"], "invalid path glob"),
        (["t", "--role", "w", "--path", "/prod"], "invalid path glob"),
        (["t", "--role", "w", "--path", "prod/[ab]"], "invalid path glob"),
        (["t", "--role", "w", "--path", "prod/x**"], "whole segment"),
        (["t", "--role", "w", "--path", "a/b/c/d/e/f/g/h/i"], "segments"),
        (["t", "--role", "w", "--expires", "2001-01-01"], "in the past"),
        (["t", "--role", "w", "--expires", "0d"], "invalid --expires"),
        (["t", "--role", "w", "--expires", "soon"], "invalid --expires"),
        (["t", "--role", "w", "--expires", "10y"], "invalid --expires"),
    ],
)
def test_invalid_create_refused_with_one_line(
    tmp_path: Path, store: Store, args: list[str], needle: str
) -> None:
    data = tmp_path / "data"
    res = run(store, data, "token", "create", *args)
    assert res.exit_code == 1, res.output
    assert res.stdout == "" and res.stderr.count("\n") == 1 and needle in res.stderr
    assert "swt_" not in res.stderr.replace("'swt_'", "")
    assert json.loads(run(store, data, "token", "list", "--json").stdout) == []


def test_globs_accepted() -> None:
    for glob in ("prod/**", "*/network", "team-*/app/prod", "**", "a.b/c_d/e-f"):
        assert validate_glob(glob) == glob
    with pytest.raises(BadRequest):
        validate_glob("")


def test_expiry_parsing() -> None:
    now = T0
    assert parse_expiry("90d", now) == now + 90 * 86400
    assert parse_expiry("12h", now) == now + 12 * 3600
    assert parse_expiry("30m", now) == now + 1800
    utc = dt.datetime(2030, 1, 31, 18, tzinfo=dt.UTC).timestamp()
    assert parse_expiry("2030-01-31T18:00:00Z", now) == utc
    assert parse_expiry("2030-01-31T18:00:00", now) == utc  # no zone: UTC
    assert parse_expiry("2030-01-31T19:00:00+01:00", now) == utc
    assert parse_expiry("2030-01-31", now) == utc - 18 * 3600


def test_service_refuses_past_expiry(svc: StateService) -> None:
    with pytest.raises(BadRequest, match="not in the future"):
        svc.tokens.create_token(WHO, "t", ["w"], expires_at=T0)


def test_initial_admin_token_created_once(svc: StateService) -> None:
    secret = svc.tokens.ensure_initial_admin_token(WHO)
    assert secret is not None and crypto.is_well_formed(secret)
    view = svc.tokens.authenticate_token(secret)
    assert view is not None and view.name == "initial-admin" and view.roles == ("admin",)
    assert view.paths == () and view.expires_at is None
    assert svc.tokens.ensure_initial_admin_token(WHO) is None
    svc.tokens.revoke_token(WHO, "initial-admin")
    assert svc.tokens.ensure_initial_admin_token(WHO) is None  # never re-created
    assert [t.name for t in svc.tokens.list_tokens(WHO)] == ["initial-admin"]


def test_events_record_create_and_revoke_without_secret(svc: StateService) -> None:
    _, secret = svc.tokens.create_token(WHO, "ci", ["writer"], ["prod/**"], expires_at=T0 + 60)
    svc.tokens.revoke_token(WHO, "ci")
    evs = svc.admin.events(WHO)
    assert [e.action for e in evs] == ["token-revoke", "token-create"]
    assert "roles=writer" in evs[1].detail and "paths=prod/**" in evs[1].detail
    assert all(secret not in e.detail and e.principal == "tester" for e in evs)


@pytest.mark.parametrize(
    ("content", "mode", "needle"),
    [
        (os.urandom(32), 0o644, "chmod 600"),
        (os.urandom(32), 0o640, "chmod 600"),
        (os.urandom(31), 0o600, "exactly 32 bytes"),
        (os.urandom(33), 0o600, "exactly 32 bytes"),
        (b"", 0o600, "exactly 32 bytes"),
    ],
)
def test_bad_key_file_refused(
    tmp_path: Path, store: Store, content: bytes, mode: int, needle: str
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    key_file = store.token_key_file(data)
    key_file.write_bytes(content)
    key_file.chmod(mode)
    res = run(store, data, "token", "create", "t", "--role", "admin")
    assert res.exit_code == 1 and needle in res.stderr and res.stderr.count("\n") == 1
    assert key_file.read_bytes() == content  # never replaced
    svc = build_service(store.settings(data))
    with pytest.raises(Unavailable, match=needle):
        svc.tokens.load_token_key()
    with pytest.raises(Unavailable):
        svc.tokens.authenticate_token(crypto.new_token())  # fail closed, not "unknown token"
    assert svc.tokens.list_tokens(WHO) == []
    svc.engine.dispose()


def test_token_from_another_data_dir_or_key_does_not_authenticate(tmp_path: Path) -> None:
    # SQLite only: copies the database file between data dirs.
    a = build_service(Settings(data_dir=tmp_path / "a"))
    _, secret = a.tokens.create_token(WHO, "ci", ["writer"])
    a.engine.dispose()
    b = build_service(Settings(data_dir=tmp_path / "b"))
    b.tokens.create_token(WHO, "ci", ["writer"])
    assert b.tokens.authenticate_token(secret) is None
    b.engine.dispose()
    # The same database with another key: the stored hashes are worthless.
    (tmp_path / "c").mkdir(mode=0o700)
    shutil.copy(tmp_path / "a" / "stateward.db", tmp_path / "c" / "stateward.db")
    c = build_service(Settings(data_dir=tmp_path / "c"))
    assert [t.name for t in c.tokens.list_tokens(WHO)] == ["ci"]
    assert c.tokens.authenticate_token(secret) is None
    c.engine.dispose()
    shutil.copy(tmp_path / "a" / "token.key", tmp_path / "c" / "token.key")
    c = build_service(Settings(data_dir=tmp_path / "c"))
    assert c.tokens.authenticate_token(secret) is not None  # with its key, the copy works
    c.engine.dispose()


def test_nothing_prints_a_secret_or_key(svc: StateService) -> None:
    view, secret = svc.tokens.create_token(WHO, "ci", ["writer"])
    key = svc.tokens.load_token_key()
    raw = svc.tokens.token_key_path.read_bytes()
    for text in (
        repr(view),
        str(view),
        repr((view, secret)),
        repr(secret),
        repr(key),
        str(key),
        repr(svc.tokens.list_tokens(WHO)),
        repr(svc.tokens.authenticate_token(secret)),
        json.dumps(view.to_dict()),
    ):
        assert secret not in text and raw.hex() not in text, text
    assert "redacted" in repr(secret) and "redacted" in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    assert isinstance(secret, str) and str(secret) == secret and f"{secret}".startswith("swt_")


def test_existing_data_dir_gains_the_tokens_table(tmp_path: Path) -> None:
    # SQLite only: an embedded data dir from an earlier release.
    svc = build_service(Settings(data_dir=tmp_path / "d"))
    with svc.engine.begin() as conn:  # a data dir of a release before tokens and migrations
        for table in ("tokens", "leases", "alembic_version"):
            conn.exec_driver_sql(f"DROP TABLE {table}")
        conn.exec_driver_sql("UPDATE schema_info SET value = '1' WHERE key = 'schema_version'")
    svc.engine.dispose()
    svc = build_service(Settings(data_dir=tmp_path / "d"))
    _, secret = svc.tokens.create_token(WHO, "a", ["admin"])
    assert svc.tokens.authenticate_token(secret) is not None
    svc.engine.dispose()
