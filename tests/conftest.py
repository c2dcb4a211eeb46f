from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from stateward.config import Settings
from stateward.service.core import StateService
from stateward.service.factory import build_service
from tests.harness.support import TERRAFORM_111, ServerProcess, terraform_015

if TYPE_CHECKING:  # imported by pytest as a plugin (below): not before, or no assert rewriting
    from tests.harness.pg import Store

pytest_plugins = ["tests.harness.aws", "tests.harness.pg"]


@pytest.fixture
def settings(tmp_path: Path, store: Store) -> Settings:
    """Settings of a fresh store; ``store`` runs every test using them on the embedded store
    (SQLite + blob files) and on PostgreSQL + S3 (tests/harness/pg.py)."""
    return store.settings(tmp_path / "data", orphan_min_age_seconds=0)


@pytest.fixture
def service(settings: Settings) -> Iterator[StateService]:
    svc = build_service(settings)
    yield svc
    svc.engine.dispose()


@pytest.fixture
def server(tmp_path: Path, store: Store) -> Iterator[ServerProcess]:
    """A real server on a fresh store: every test using it runs on both stores."""
    srv = ServerProcess(tmp_path / "srvdata", store=store).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def tf_binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Both real Terraform binaries; missing ones fail the run instead of skipping."""
    if not os.access(TERRAFORM_111, os.X_OK):
        raise RuntimeError(f"Terraform 1.11 not found at {TERRAFORM_111}")
    return {"1.11": TERRAFORM_111, "0.15": terraform_015(tmp_path_factory.mktemp("tf015"))}
