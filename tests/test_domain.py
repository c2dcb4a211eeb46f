"""Pure domain modules: paths, globs, statefile parsing and diff, lock info."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stateward.domain.errors import BadRequest
from stateward.domain.globs import glob_match
from stateward.domain.lockinfo import parse_lock_info
from stateward.domain.paths import validate_path
from stateward.domain.statefile import diff_states, parse_state, resource_address
from tests.harness.support import TOFU_ENCRYPTED, make_state


@pytest.mark.parametrize("path", ["a", "team/app/env", "a.b/c_d/e-f", "x/" * 7 + "y"])
def test_valid_paths(path: str) -> None:
    assert validate_path(path) == path


@pytest.mark.parametrize(
    "path",
    ["", "/a", "a/", "a//b", ".", "a/../b", "a/./b", "a b", "a%2Fb", "ä", "a/lock",
     "x/" * 8 + "y", "a" * 65, "/".join(["abcdefghij" * 5] * 5) + "/x" * 3, "a\\b", "a?b"],
)
def test_invalid_paths_refused(path: str) -> None:
    with pytest.raises(BadRequest):
        validate_path(path)


@given(st.text(max_size=40))
def test_validated_paths_are_never_normalised(text: str) -> None:
    try:
        assert validate_path(text) == text
    except BadRequest:
        return
    assert ".." not in text.split("/") and "//" not in text


@pytest.mark.parametrize(
    ("glob", "path", "ok"),
    [("prod/**", "prod/a/b", True), ("prod/**", "prod", True), ("prod/**", "dev/prod", False),
     ("*/network", "team/network", True), ("*/network", "a/b/network", False),
     ("**/network", "a/b/network", True), ("team/*/prod", "team/app/prod", True),
     ("team/app-*", "team/app-x", True), ("a", "a/b", False)],
)
def test_globs(glob: str, path: str, ok: bool) -> None:
    assert glob_match(glob, path) is ok


def test_parse_state_summary() -> None:
    s = parse_state(make_state(serial=7, lineage="L", resources=3))
    assert (s.serial, s.lineage, s.resource_count, s.output_count) == (7, "L", 3, 2)
    assert not s.client_encrypted


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b"{}", b'{"serial":1}', b'{"serial":-1,"lineage":"x","version":4}',
     b'{"serial":1,"lineage":"x","version":3,"terraform_version":"0.11"}',
     b'{"serial":1,"lineage":"x","version":4}', b'{"serial":true,"lineage":"x","version":4}',
     b'{"serial":1,"lineage":"x","version":4,"terraform_version":"1","resources":{}}',
     b'{"serial":1,"lineage":"x","encryption_version":"v9","encrypted_data":"","meta":{}}',
     b'{"serial":1,"lineage":"x","encryption_version":"v0"}', b"\xff\xfe"],
)
def test_parse_state_refuses(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_state(body)


def test_client_encrypted_state_is_recognised() -> None:
    s = parse_state(TOFU_ENCRYPTED)
    assert s.client_encrypted and s.serial == 3


def test_resource_addresses() -> None:
    r = {"mode": "data", "type": "t", "name": "n", "module": "module.m"}
    assert resource_address(r, None) == "module.m.data.t.n"
    assert resource_address({"type": "t", "name": "n"}, 2) == "t.n[2]"
    assert resource_address({"type": "t", "name": "n"}, "k") == 't.n["k"]'


def test_diff_never_shows_sensitive_values() -> None:
    a = json.loads(make_state(serial=1, lineage="L", resources=2))
    b = json.loads(make_state(serial=2, lineage="L", resources=3))
    b["outputs"]["secret"]["value"] = "n3w-s3cr3t"
    d = diff_states(a, b)
    assert d["resources_added"] == ["terraform_data.r2"]
    assert [c["address"] for c in d["resources_changed"]] == ["terraform_data.r0",
                                                               "terraform_data.r1"]
    assert d["resources_changed"][0]["attributes"] == ["input"]
    text = json.dumps(d)
    assert "s3cr3t" not in text and "n3w" not in text
    assert {"name": "name", "change": "changed", "sensitive": False, "old": "v1",
            "new": "v2"} in d["outputs"]


def test_lock_info() -> None:
    info = parse_lock_info(b'{"ID":"abc","Who":"me","Version":"1.11.4"}')
    assert (info.id, info.who, info.version) == ("abc", "me", "1.11.4")
    for bad in (b"", b"x", b"[]", b"{}", b'{"ID":""}', b'{"ID":5}', b'{"ID":"a","Who":1}',
                b'{"ID":"' + b"a" * 300 + b'"}'):
        with pytest.raises(BadRequest):
            parse_lock_info(bad)
