"""Configuration precedence and the command line (offline against the data dir)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from stateward.cli.main import cli
from stateward.config import ConfigError, load_settings
from stateward.domain.principal import Principal
from stateward.service.factory import build_service
from tests.harness.pg import Store
from tests.harness.support import lock_body, make_state


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('port = 1111\nhost = "127.0.0.1"\nmax_body_bytes = 4096\n'
                   'protected_paths = ["prod/**"]\n'
                   '[[retention]]\npath = "dev/**"\nkeep_versions = 3\n')
    s = load_settings(cfg, {}, env={})
    assert (s.port, s.max_body_bytes, s.retention[0].keep_versions) == (1111, 4096, 3)
    s = load_settings(cfg, {}, env={"STATEWARD_PORT": "2222"})
    assert s.port == 2222 and s.protected_paths == ["prod/**"]
    s = load_settings(cfg, {"port": 3333, "host": None}, env={"STATEWARD_PORT": "2222"})
    assert s.port == 3333
    s = load_settings(None, {}, env={"STATEWARD_CONFIG": str(cfg)})
    assert s.port == 1111


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [("prot_paths = []", {}, "prot_paths"), ("port = 'x'", {}, "port"),
     ("", {"STATEWARD_NOPE": "1"}, "STATEWARD_NOPE"), ("host = '0.0.0.0'", {}, "non-loopback"),
     ("host = '10.1.2.3'", {}, "non-loopback"), ("host = 'example.com'", {}, "host"),
     ("[[retention]]\npath='x'\nkeep_versions=0", {}, "retention"), ("= broken", {}, "TOML")],
)
def test_invalid_config_refused(tmp_path: Path, text: str, env: dict[str, str],
                                needle: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_settings(cfg, {}, env=env)


def test_loopback_hosts_allowed() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert load_settings(None, {"host": host}, env={}).host == host


def test_serve_refuses_non_loopback(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "stateward", "serve", "--data-dir",
                        str(tmp_path / "d"), "--host", "0.0.0.0", "--port", "0"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "non-loopback" in r.stderr
    assert not (tmp_path / "d").exists()


def _run(store: Store, data: Path, *args: str, input: str | None = None) -> str:
    res = CliRunner().invoke(cli, [*store.cli_args(data), *args], input=input,
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_cli_state_commands(tmp_path: Path, store: Store) -> None:
    data = tmp_path / "d"
    svc = build_service(load_settings(store.config_file(data), {"data_dir": data}, env={}))
    who = Principal("ci", roles=("admin",))
    b1 = make_state(serial=1, lineage="l")
    svc.writes.write(who, "t/a/prod", b1)
    svc.writes.write(who, "t/a/prod", make_state(serial=2, lineage="l", resources=2))
    svc.locks.lock(who, "t/a/prod", lock_body("LID", who="dave@h"))

    listing = json.loads(_run(store, data, "list", "--json"))
    assert listing[0]["path"] == "t/a/prod" and listing[0]["lock_who"] == "dave@h"
    assert "t/a/prod" in _run(store, data, "list")
    hist = json.loads(_run(store, data, "history", "t/a/prod", "--json"))
    assert [h["seq"] for h in hist] == [2, 1]
    assert "current" in _run(store, data, "history", "t/a/prod")
    assert json.loads(_run(store, data, "show", "t/a/prod"))["seq"] == 2
    assert _run(store, data, "pull", "t/a/prod", "--version", "1").encode() == b1
    assert json.loads(_run(store, data, "diff", "t/a/prod", "1", "2"))["resources_added"]
    assert "LID" in _run(store, data, "locks", "list")
    res = CliRunner().invoke(cli, [*store.cli_args(data), "rollback", "t/a/prod", "1"])
    assert res.exit_code == 1 and "locked" in res.output
    assert "broke lock LID" in _run(store, data, "locks", "break", "t/a/prod")
    assert "as version 3" in _run(store, data, "rollback", "t/a/prod", "1")
    _run(store, data, "protect", "t/a/prod")
    res = CliRunner().invoke(cli, [*store.cli_args(data), "delete", "t/a/prod"])
    assert res.exit_code == 1 and "protected" in res.output
    _run(store, data, "protect", "t/a/prod", "--off")
    _run(store, data, "delete", "t/a/prod")
    _run(store, data, "restore", "t/a/prod")
    _run(store, data, "allow-next-write", "t/a/prod")
    _run(store, data, "delete", "t/a/prod")
    assert "purged t/a/prod (3 versions)" in _run(store, data, "purge", "t/a/prod", "--yes")
    events = json.loads(_run(store, data, "events", "--json"))
    actions = {e["action"] for e in events}
    assert {"break-lock", "rollback", "protect", "delete", "restore", "purge",
            "override-next-write"} <= actions
    assert "break-lock" in _run(store, data, "events")
    assert json.loads(_run(store, data, "gc"))["orphans_removed"] == 0


def test_cli_errors_are_one_line(tmp_path: Path, store: Store) -> None:
    res = CliRunner().invoke(cli, [*store.cli_args(tmp_path / "d"), "history", "../x"])
    assert res.exit_code == 1 and res.output.count("\n") == 1


def test_python_dash_m_and_console_script(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "stateward", "--version"], capture_output=True,
                       text=True, check=True)
    assert "stateward" in r.stdout
    r = subprocess.run(["stateward", "--help"], capture_output=True, text=True, check=True)
    assert "serve" in r.stdout
