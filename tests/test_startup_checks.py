"""What ``serve`` checks before accepting a request: that a replica's keys are the store's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from stateward.cli.main import cli
from stateward.config import Settings
from stateward.crypto.providers.local import KeyfileConfig
from stateward.domain.principal import Principal
from stateward.service.factory import build_service
from stateward.service.startup import StartupError, check_before_serving
from stateward.storage.schema import blob_keys
from tests.harness.pg import PgCluster, Store
from tests.harness.support import make_state

ADMIN = Principal("admin", roles=("admin",), source="127.0.0.1")


def _keys(tmp_path: Path, name: str) -> dict[str, object]:
    """Settings for keys outside the data directory, in ``tmp_path/name``."""
    return {
        "token_key_file": tmp_path / name / "token.key",
        "key_providers": {
            "default": KeyfileConfig(path=tmp_path / name / "master.key", create=True)
        },
    }


def test_a_replica_with_its_own_token_key_is_refused(store: Store, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = store.build(data, **_keys(tmp_path, "keys"))
    check_before_serving(first)  # records the key's fingerprint
    check_before_serving(first)  # and accepts it again
    settings = store.settings(data, **_keys(tmp_path, "keys"))
    (tmp_path / "elsewhere").mkdir()
    other = store.build(
        data,
        token_key_file=tmp_path / "elsewhere" / "token.key",
        key_providers=settings.key_providers,
    )
    with pytest.raises(StartupError, match="not the key this store's tokens were created with"):
        check_before_serving(other)
    for svc in (first, other):
        svc.engine.dispose()


def test_a_replica_with_a_new_key_file_is_refused(store: Store, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = store.build(data, **_keys(tmp_path, "keys"))
    first.writes.write(ADMIN, "team/app", make_state(serial=1))
    check_before_serving(first)
    # same token key, but a master key of its own (created fresh on start)
    fresh = store.build(
        data,
        token_key_file=tmp_path / "keys" / "token.key",
        key_providers={"default": KeyfileConfig(path=tmp_path / "new" / "master.key", create=True)},
    )
    with pytest.raises(StartupError, match=r"key version 1 in .*new/master\.key does not open"):
        check_before_serving(fresh)
    for svc in (first, fresh):
        svc.engine.dispose()


@pytest.fixture
def pg(pg_cluster: PgCluster) -> Iterator[Store]:
    """Only a shared (PostgreSQL) store has replicas."""
    store = Store("postgres", pg_cluster)
    yield store
    store.close()


def test_shared_store_needs_keys_outside_the_data_dir(pg: Store, tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = pg.url_for(data)
    # the defaults: token.key and master.key inside the data dir
    svc = build_service(Settings(data_dir=data, database_url=url))
    with pytest.raises(StartupError, match="set token_key_file"):
        check_before_serving(svc)
    svc.engine.dispose()
    (tmp_path / "k").mkdir()
    svc = build_service(
        Settings(data_dir=data, database_url=url, token_key_file=tmp_path / "k" / "token.key")
    )
    with pytest.raises(StartupError, match="'default' keeps its key file in the data directory"):
        check_before_serving(svc)
    svc.engine.dispose()


def test_serve_refuses_with_one_line(pg: Store, tmp_path: Path) -> None:
    store = pg
    data = tmp_path / "data"
    url = store.url_for(data)
    assert url is not None
    res = CliRunner().invoke(
        cli,
        ["serve", "--data-dir", str(data), "--port", "1"],
        env={"STATEWARD_DATABASE_URL": url},
    )
    assert res.exit_code == 1
    assert "set token_key_file to a file outside the data directory" in res.output


def test_missing_blobs_neither_hide_a_wrong_key_nor_stop_a_right_one(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    first = store.build(data, **_keys(tmp_path, "keys"))
    for i in range(3):
        first.writes.write(ADMIN, f"team/app{i}", make_state(serial=1))
    with first.engine.connect() as conn:
        blob_keys_in_order = sorted(conn.execute(select(blob_keys.c.blob_key)).scalars())
    first.barrier.blobs.delete(blob_keys_in_order[0])  # the first sample is gone
    check_before_serving(first)  # the next sample proves the key
    fresh = store.build(
        data,
        token_key_file=tmp_path / "keys" / "token.key",
        key_providers={"default": KeyfileConfig(path=tmp_path / "new" / "master.key", create=True)},
    )
    with pytest.raises(StartupError, match="does not open"):
        check_before_serving(fresh)
    for key in blob_keys_in_order[1:]:
        first.barrier.blobs.delete(key)
    check_before_serving(first)  # nothing to check against: a warning, not a refusal
    assert "no readable blob under key version 1" in caplog.text
    for svc in (first, fresh):
        svc.engine.dispose()
