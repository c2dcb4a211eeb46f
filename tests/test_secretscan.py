"""Secret detection in states (``stateward.secretscan``): the labelled catalog, whole states,
the sanitizer, and properties (no finding ever carries a value; sanitize is idempotent)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stateward.domain.secretscan import (
    CREDENTIAL_KINDS,
    HEURISTIC_KINDS,
    KINDS,
    MAX_TEXT_SCAN,
    TERRAFORM_KINDS,
    Finding,
    is_marker,
    sanitize,
    sanitize_fully,
    scan,
    scan_report,
)
from stateward.domain.statefile import parse_state
from tests.harness.support import TERRAFORM_111, TOFU_ENCRYPTED, make_state
from tests.secret_catalog import (
    STATES,
    entry_location,
    entry_state,
    load_entries,
    state_bytes,
)

EXPECTED: dict[str, list[list[str]]] = json.loads((STATES / "expected.json").read_text())
STATE_FILES = sorted(EXPECTED)


ENTRIES = load_entries("catalog.jsonl")
HOLDOUT = load_entries("holdout.jsonl")


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _resolve(doc: Any, pointer: str) -> Any:
    node = doc
    for token in pointer.lstrip("/").split("/") if pointer else []:
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _assert_no_value_in(findings: list[Finding], secrets: list[str]) -> None:
    for f in findings:
        text = repr(f)
        for secret in secrets:
            if len(secret) >= 8:
                assert secret not in text, f"{f.location} carries a value"


# -- the labelled catalog ----------------------------------------------------------------------


def test_catalog_size_and_coverage() -> None:
    positives = [e for e in ENTRIES if e["label"]]
    negatives = [e for e in ENTRIES if not e["label"]]
    assert len(positives) >= 60 and len(negatives) >= 60
    assert len({e["id"] for e in ENTRIES}) == len(ENTRIES)
    # every kind has at least two positive entries
    counts = {k: sum(1 for e in positives if e["kind"] == k) for k in KINDS}
    assert min(counts.values()) >= 2, counts


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_catalog_entry_classified_as_labelled(entry: dict[str, Any]) -> None:
    findings = scan(entry_state(entry))
    source = (
        entry["output"]["value"]
        if "output" in entry
        else entry.get("value", entry.get("attribute"))
    )
    secrets = _strings(source)
    _assert_no_value_in(findings, [s for s in secrets if entry["label"]])
    if not entry["label"]:
        assert findings == [], [(f.location, f.kind, f.rule) for f in findings]
        return
    where = entry_location(entry)
    at = [f for f in findings if where is None or f.location == where]
    assert [f.kind for f in at] == [entry["kind"]], [(f.location, f.kind) for f in findings]


def _holdout_param(entry: dict[str, Any]) -> Any:
    if "known_miss" in entry:
        return pytest.param(
            entry, id=entry["id"], marks=pytest.mark.xfail(reason=entry["known_miss"], strict=True)
        )
    return pytest.param(entry, id=entry["id"])


@pytest.mark.parametrize("entry", [_holdout_param(e) for e in HOLDOUT])
def test_holdout_entry(entry: dict[str, Any]) -> None:
    """Entries written after the rules were frozen: known misses are strict xfails."""
    findings = scan(entry_state(entry))
    if not entry["label"]:
        assert findings == [], [(f.location, f.kind, f.rule) for f in findings]
        return
    where = entry_location(entry)
    at = [f for f in findings if where is None or f.location == where]
    assert [f.kind for f in at] == [entry["kind"]], [(f.location, f.kind) for f in findings]


@pytest.mark.parametrize("name", STATE_FILES)
def test_whole_states(name: str) -> None:
    body = (STATES / name).read_bytes()
    findings = scan(body)
    assert [[f.location, f.kind] for f in findings] == EXPECTED[name]
    doc = json.loads(body)
    for f in findings:
        assert f.kind in KINDS and f.rule
        value = _resolve(doc, f.json_pointer)  # every pointer resolves
        _assert_no_value_in([f], _strings(value))


def test_kind_sets_partition_kinds() -> None:
    assert set(KINDS) == CREDENTIAL_KINDS | TERRAFORM_KINDS | HEURISTIC_KINDS
    assert not (CREDENTIAL_KINDS & TERRAFORM_KINDS or CREDENTIAL_KINDS & HEURISTIC_KINDS)


# -- shapes ------------------------------------------------------------------------------------


def test_the_repo_test_state_shape() -> None:
    """``make_state`` (harness/support.py): Terraform 1.11.4, terraform_data, a sensitive output."""
    findings = scan(make_state(resources=20, pad=5000))
    assert [(f.location, f.kind, f.json_pointer) for f in findings] == [
        ("outputs.secret", "sensitive-output", "/outputs/secret/value")
    ]


def test_real_terraform_state_is_sanitized_and_still_readable(tmp_path: Path) -> None:
    body = (STATES / "terraform_1114_real.tfstate.json").read_bytes()
    clean = sanitize(body, scan(body))
    assert "Tr0ub4dor&3-horse" in _strings(json.loads(body))
    doc = json.loads(clean)
    for secret in ("s3cr3t-one", "Tr0ub4dor&3-horse", "n0t-a-real-pass"):
        assert secret not in _strings(doc)
    # the dynamic wrapper keeps its type; the non-sensitive instance is untouched
    m = next(r for r in doc["resources"] if r["name"] == "m")["instances"][0]["attributes"]
    assert m["input"]["type"][0] == "object"
    assert m["input"]["value"] == {
        "list": ["a", "REDACTED(sensitive-attribute)"],
        "pass": "REDACTED(sensitive-attribute)",
        "user": "app",
    }
    r = next(r for r in doc["resources"] if r["name"] == "r")["instances"][0]["attributes"]
    assert r["input"] == {"value": "one", "type": "string"}


@pytest.mark.terraform
def test_terraform_reads_a_sanitized_state(tmp_path: Path) -> None:
    body = (STATES / "terraform_1114_real.tfstate.json").read_bytes()
    path = tmp_path / "sanitized.tfstate"
    path.write_bytes(sanitize(body, scan(body)))
    env = {**os.environ, "HOME": str(tmp_path), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    r = subprocess.run(
        [TERRAFORM_111, "show", "-json", str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["values"]["outputs"]["secret"]["value"] == "REDACTED(sensitive-output)"
    assert "Tr0ub4dor" not in r.stdout


def test_client_encrypted_state_has_nothing_to_scan() -> None:
    report = scan_report(TOFU_ENCRYPTED)
    assert report.findings == () and not report.scanned
    assert report.format == "opentofu-encrypted" and "encrypted" in report.note
    assert scan(TOFU_ENCRYPTED) == []
    assert sanitize(TOFU_ENCRYPTED, []) == TOFU_ENCRYPTED


@pytest.mark.parametrize("body", [b"", b"not json", b"\xff\xfe", b'{"a": ', b"[1, 2"])
def test_not_json(body: bytes) -> None:
    report = scan_report(body)
    assert report.format == "not-json" and not report.scanned and report.findings == ()
    with pytest.raises(ValueError, match="not JSON"):
        sanitize(body, [Finding("x", "jwt", "jwt", "/x")])


def test_other_json_shapes_are_scanned_generically() -> None:
    body = json.dumps(
        [{"db": {"password": "hunter2-example"}}, "AKIAIOSFODNN7EXAMPLE", 3, None]
    ).encode()
    report = scan_report(body)
    assert report.format == "json" and report.scanned
    assert [(f.location, f.kind, f.json_pointer) for f in report.findings] == [
        ("[0].db.password", "secret-name", "/0/db/password"),
        ("[1]", "aws-access-key", "/1"),
    ]
    clean = json.loads(sanitize(body, report.findings))
    assert clean == [
        {"db": {"password": "REDACTED(secret-name)"}},
        "REDACTED(aws-access-key)",
        3,
        None,
    ]
    # a v3 (or unknown-version) document is scanned as JSON too
    assert scan_report(b'{"version": 3, "modules": [{"outputs": {"token": "t0ken-x"}}]}').findings


def test_terraform_show_json_is_understood() -> None:
    body = (STATES / "terraform_1114_show.json").read_bytes()
    kinds = {(f.location, f.kind) for f in scan(body)}
    assert ("values.outputs.secret.value", "sensitive-output") in kinds
    assert ("values.root_module.resources[0].values.output", "sensitive-attribute") in kinds


def test_too_deep_to_scan_is_reported_not_raised() -> None:
    deep = b'{"version": 4, "resources": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    report = scan_report(deep)
    assert report.findings == () and "deep" in report.note
    with pytest.raises(ValueError, match="deep"):
        sanitize(deep, [Finding("x", "jwt", "jwt", "/resources/0")])


# -- locations and sensitive_attributes --------------------------------------------------------


def _one_resource(attrs: dict[str, Any], sensitive: Any = None, **res: Any) -> bytes:
    inst: dict[str, Any] = {"schema_version": 0, "attributes": attrs}
    if sensitive is not None:
        inst["sensitive_attributes"] = sensitive
    inst.update(res.pop("inst", {}))
    resource = {"mode": "managed", "type": "aws_thing", "name": "main", "provider": "p"}
    resource.update(res)
    resource["instances"] = [inst]
    return state_bytes({}, [resource])


def test_locations_name_module_data_index_key_and_deposed() -> None:
    body = _one_resource(
        {"password": "hunter2-example"},
        module='module.db["eu"]',
        mode="data",
        inst={"index_key": "primary", "deposed": "00abcdef"},
    )
    (f,) = scan(body)
    assert f.location == (
        'resources[module.db["eu"].data.aws_thing.main].instances["primary"]'
        '.deposed["00abcdef"].attributes.password'
    )
    assert f.json_pointer == "/resources/0/instances/0/attributes/password"
    (g,) = scan(
        _one_resource({"tags": {"my/odd~key": "AKIAIOSFODNN7EXAMPLE"}}, inst={"index_key": 3})
    )
    assert g.location == 'resources[aws_thing.main].instances[3].attributes.tags["my/odd~key"]'
    assert g.json_pointer == "/resources/0/instances/0/attributes/tags/my~1odd~0key"


def _attr(name: str) -> dict[str, Any]:
    return {"type": "get_attr", "value": name}


def _index(key: Any) -> dict[str, Any]:
    return {
        "type": "index",
        "value": {"value": key, "type": "number" if isinstance(key, int) else "string"},
    }


@pytest.mark.parametrize(
    ("sensitive", "location"),
    [
        ([[_attr("cfg"), _attr("pin")]], "cfg.pin"),  # Terraform 0.15+ / OpenTofu
        ([_attr("cfg"), _attr("pin")], "cfg.pin"),  # a flat list of steps: one path
        ([_attr("note")], "note"),
        (["cfg.pin"], "cfg.pin"),  # dotted strings
        ([[_attr("items"), _index(1)]], "items[1]"),
        ([[_attr("items"), _index("b")]], "items[1]"),  # a set element, by value
        ([[_attr("labels"), _index("team")]], "labels.team"),  # a map key
    ],
)
def test_sensitive_attribute_path_formats(sensitive: Any, location: str) -> None:
    attrs = {
        "cfg": {"pin": "0000-1111"},
        "note": "plain",
        "items": ["a", "b"],
        "labels": {"team": "x"},
    }
    findings = scan(_one_resource(attrs, sensitive))
    assert [(f.location.split(".attributes.")[1], f.kind) for f in findings] == [
        (location, "sensitive-attribute")
    ]


def test_unresolvable_or_odd_sensitive_paths_are_ignored() -> None:
    odd = [[{"type": "get_attr", "value": "missing"}], [{"type": "weird"}], 7, None, [[]]]
    assert scan(_one_resource({"name": "web"}, odd)) == []
    assert scan(_one_resource({"name": "web"}, {"not": "a list"})) == []


def test_terraform_data_output_mirrors_a_sensitive_input() -> None:
    wrapped = {"value": "plain-looking", "type": "string"}
    body = _one_resource(
        {"id": "x", "input": wrapped, "output": dict(wrapped)},
        [[{"type": "get_attr", "value": "input"}]],
    )
    body = body.replace(b'"aws_thing"', b'"terraform_data"')
    got = [
        (f.location.split(".attributes.")[1], f.json_pointer.rsplit("/", 2)[1:]) for f in scan(body)
    ]
    assert got == [("input", ["input", "value"]), ("output", ["output", "value"])]


def test_attributes_flat_legacy_instances() -> None:
    body = _one_resource({}, inst={"attributes_flat": {"password": "hunter2-x", "tags.%": "1"}})
    assert [(f.location.split("].")[-1], f.kind) for f in scan(body)] == [
        ("attributes_flat.password", "secret-name")
    ]


def test_most_specific_kind_wins() -> None:
    # sensitive + name + AWS key pattern on one value: the credential kind is reported
    body = _one_resource(
        {"token": "AKIAIOSFODNN7EXAMPLE"}, [[{"type": "get_attr", "value": "token"}]]
    )
    ((kind, rule),) = [(f.kind, f.rule) for f in scan(body)]
    assert (kind, rule) == ("aws-access-key", "aws-akid")
    # sensitive beats the name guess
    body = _one_resource({"password": "x-example-1"}, [[{"type": "get_attr", "value": "password"}]])
    assert [f.kind for f in scan(body)] == ["sensitive-attribute"]
    # a sensitive block is one finding; a credential inside it is its own, more specific one
    body = _one_resource(
        {"cfg": {"key": "AKIAIOSFODNN7EXAMPLE", "port": 1}},
        [[{"type": "get_attr", "value": "cfg"}]],
    )
    assert [(f.location.split(".attributes.")[1], f.kind) for f in scan(body)] == [
        ("cfg", "sensitive-attribute"),
        ("cfg.key", "aws-access-key"),
    ]


def test_long_strings_are_scanned_up_to_the_cap() -> None:
    near = "x" * 100 + " AKIAIOSFODNN7EXAMPLE " + "y" * (MAX_TEXT_SCAN + 10)
    far = "x" * (MAX_TEXT_SCAN + 10) + " AKIAIOSFODNN7EXAMPLE"
    found = scan(_one_resource({"blob": near, "other": far}))
    assert [(f.location.rsplit(".", 1)[1], f.kind, f.embedded) for f in found] == [
        ("blob", "aws-access-key", True)
    ]
    clean = json.loads(sanitize(_one_resource({"blob": near}), found))
    blob = clean["resources"][0]["instances"][0]["attributes"]["blob"]
    assert "AKIA" not in blob and blob.startswith("x" * 100 + " REDACTED(aws-access-key) yyy")
    # past the scanned prefix nothing is known, so the sanitizer does not hand it out
    assert blob.endswith("REDACTED(aws-access-key)") and len(blob) < len(near)


# -- the sanitizer -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", STATE_FILES)
def test_sanitize_whole_states(name: str) -> None:
    body = (STATES / name).read_bytes()
    findings = scan(body)
    clean = sanitize(body, findings)
    before, after = json.loads(body), json.loads(clean)
    for key in ("version", "terraform_version", "serial", "lineage", "format_version"):
        assert after.get(key) == before.get(key)
    if "resources" in before:
        assert parse_state(clean).resource_count == parse_state(body).resource_count
        assert [len(r["instances"]) for r in after["resources"]] == [
            len(r["instances"]) for r in before["resources"]
        ]
        assert list(after["outputs"]) == list(before["outputs"])
    assert scan(clean) == []  # nothing left, of any kind
    assert sanitize(clean, scan(clean)) == clean  # idempotent
    left = "\n".join(_strings(after))
    for f in findings:
        value = _resolve(before, f.json_pointer)
        if not f.embedded:
            for s in _strings(value):
                if len(s) >= 8 and not s.isdigit():
                    assert s not in left, f.location
    if not findings:
        assert clean == body
    # a Terraform-written state keeps its layout: only the redacted lines differ
    old_lines, new_lines = body.splitlines(), clean.splitlines()
    assert len(old_lines) == len(new_lines)
    for a, b in zip(old_lines, new_lines, strict=True):
        assert a == b or b"REDACTED(" in b, (a, b)


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["label"]], ids=lambda e: e["id"])
def test_sanitize_catalog_positives_round_trip(entry: dict[str, Any]) -> None:
    body = entry_state(entry)
    clean = sanitize(body, scan(body))
    rescanned = scan(clean)
    assert not [f for f in rescanned if f.kind in CREDENTIAL_KINDS or f.kind == "high-entropy"]
    assert rescanned == []
    assert sanitize(clean, rescanned) == clean


def test_sanitize_keeps_the_readable_rest_of_an_embedded_text() -> None:
    script = (
        "#!/bin/bash\nexport DB_HOST=db.internal\nexport DB_PASSWORD=hunter2hunter2\n./start.sh\n"
    )
    body = _one_resource({"user_data": script})
    (f,) = scan(body)
    assert (f.kind, f.embedded) == ("secret-assignment", True)
    text = json.loads(sanitize(body, [f]))["resources"][0]["instances"][0]["attributes"][
        "user_data"
    ]
    assert text == script.replace("hunter2hunter2", "REDACTED(secret-assignment)")
    url = "postgres://app:S3cure-Passw0rd@db.internal:5432/app"
    body = _one_resource({"dsn": url})
    text = json.loads(sanitize(body, scan(body)))["resources"][0]["instances"][0]["attributes"][
        "dsn"
    ]
    assert text == "postgres://app:REDACTED(connection-string-password)@db.internal:5432/app"


def test_sanitize_keeps_types_sane() -> None:
    outputs = {
        "pin": {"value": 4711, "type": "number", "sensitive": True},
        "conn": {"value": {"host": "db", "port": 5432}, "type": ["object", {}], "sensitive": True},
        "plain": {"value": {"cfg": {"password": "hunter2-example"}}, "type": ["object", {}]},
    }
    attrs = {"block": [{"user": "app", "port": 5432, "tls": True, "extra": None}], "pin": 1234}
    sens = [[{"type": "get_attr", "value": "block"}], [{"type": "get_attr", "value": "pin"}]]
    inst = {"schema_version": 0, "attributes": attrs, "sensitive_attributes": sens}
    resource = {"mode": "managed", "type": "aws_thing", "name": "main", "provider": "p"}
    resource["instances"] = [inst]
    body = state_bytes(outputs, [resource], serial=41)
    doc = json.loads(sanitize(body, scan(body)))
    assert doc["serial"] == 41
    assert doc["outputs"]["pin"] == {
        "value": "REDACTED(sensitive-output)",
        "type": "string",
        "sensitive": True,
    }
    assert doc["outputs"]["conn"]["value"] == "REDACTED(sensitive-output)"
    assert doc["outputs"]["conn"]["type"] == "string"
    assert doc["outputs"]["plain"] == {
        "value": {"cfg": {"password": "REDACTED(secret-name)"}},
        "type": ["object", {}],
    }
    got = doc["resources"][0]["instances"][0]["attributes"]
    assert got == {
        "block": [{"user": "REDACTED(sensitive-attribute)", "port": 0, "tls": True, "extra": None}],
        "pin": 0,
    }
    assert doc["resources"][0]["instances"][0]["sensitive_attributes"] == sens


def test_sanitize_keeps_a_compact_state_compact() -> None:
    body = json.dumps(json.loads(make_state()), separators=(",", ":")).encode()
    clean = sanitize(body, scan(body))
    assert b"\n" not in clean and len(clean) == len(body) - len("s3cr3t") + len(
        "REDACTED(sensitive-output)"
    )
    assert json.loads(clean)["outputs"]["secret"]["value"] == "REDACTED(sensitive-output)"


def test_sanitize_skips_pointers_that_do_not_resolve_and_formats_like_terraform() -> None:
    body = make_state()
    stale = [
        Finding("x", "jwt", "jwt", p) for p in ("/nope", "/resources/9/a", "/outputs/x/y/z", "")
    ]
    out = sanitize(body, [*stale, *scan(body)])
    assert out.startswith(b'{\n  "version": 4,\n  "terraform_version": "1.11.4",') and out.endswith(
        b"}\n"
    )
    assert json.loads(out)["outputs"]["secret"]["value"] == "REDACTED(sensitive-output)"
    assert sanitize(body, []) == body


# -- properties --------------------------------------------------------------------------------

_NAMES = st.sampled_from(
    ["password", "token", "client_secret", "api_key", "v", "value", "data", "name", "config",
     "DB_PASSWORD", "private_key", "note", "id", "secret_string", "pass", "url"]
)  # fmt: skip
_SECRETS = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=60),
    st.from_regex(r"AKIA[A-Z2-7]{16}", fullmatch=True),
    st.from_regex(r"gh[pousr]_[A-Za-z0-9]{36}", fullmatch=True),
    st.from_regex(r"xoxb-[0-9]{10}-[A-Za-z0-9]{20}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9+/]{40}", fullmatch=True),
    st.from_regex(r"postgres://u:[A-Za-z0-9]{8,20}@h:5432/d", fullmatch=True),
    st.builds(
        lambda s: f"export API_TOKEN={s}\n", st.from_regex(r"[A-Za-z0-9]{10,30}", fullmatch=True)
    ),
)


def _nest(value: Any, names: list[str]) -> Any:
    for name in names:
        value = {name: value}
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=_SECRETS,
    names=st.lists(_NAMES, min_size=1, max_size=4),
    sensitive=st.booleans(),
    as_output=st.booleans(),
)
def test_no_finding_ever_contains_the_value(
    secret: str, names: list[str], sensitive: bool, as_output: bool
) -> None:
    value = _nest(secret, names)
    if as_output:
        body = state_bytes({"o": {"value": value, "type": "dynamic", "sensitive": sensitive}}, [])
    else:
        sens = [[{"type": "get_attr", "value": names[-1]}]] if sensitive else []
        body = _one_resource(value, sens)
    structure = body.decode().replace(json.dumps(secret)[1:-1], "")
    assume(secret not in structure)  # the value is not also a name or a keyword
    # neither the value nor a 6-character prefix or suffix of it (unless that is also part of
    # the document's own names, as ``passwo`` is)
    parts = [p for p in {secret, secret[:6], secret[-6:]} if p not in structure]
    for f in scan(body):
        for field in (f.location, f.kind, f.rule, f.json_pointer):
            for part in parts:
                assert part not in field, (field, f)


_JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=40), _SECRETS
)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(_NAMES, st.text(max_size=8)), children, max_size=4),
    ),
    max_leaves=20,
)


@st.composite
def _states(draw: st.DrawFn) -> bytes:
    resources = []
    for i in range(draw(st.integers(0, 4))):
        attrs = draw(st.dictionaries(_NAMES, _JSON, max_size=5))
        keys = list(attrs)
        sens = [[{"type": "get_attr", "value": k}] for k in keys if draw(st.booleans())]
        instances = [{"schema_version": 0, "attributes": attrs, "sensitive_attributes": sens}]
        if draw(st.booleans()):
            instances[0]["index_key"] = draw(st.one_of(st.integers(0, 5), st.text(max_size=5)))
        rtype = draw(st.sampled_from(["aws_thing", "terraform_data", "random_password"]))
        resources.append(
            {
                "mode": "managed",
                "type": rtype,
                "name": f"r{i}",
                "provider": "p",
                "instances": instances,
            }
        )
    outputs = {
        name: {"value": v, "type": "dynamic", **({"sensitive": True} if s else {})}
        for name, v, s in draw(st.lists(st.tuples(_NAMES, _JSON, st.booleans()), max_size=3))
    }
    return state_bytes(outputs, resources, serial=draw(st.integers(0, 10**6)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_states())
def test_sanitize_is_idempotent_and_keeps_the_state(body: bytes) -> None:
    findings = scan(body)
    first = sanitize(body, findings)
    rescanned = scan(first)
    assert not [f for f in rescanned if f.kind in CREDENTIAL_KINDS or f.kind == "high-entropy"]
    # one pass may expose a name-based finding next to a redacted credential; the full
    # sanitization (what downloads use) is a fixed point
    once = sanitize_fully(body)
    assert sanitize(once, scan(once)) == once
    before, after = parse_state(body), parse_state(once)
    assert (after.serial, after.lineage, after.resource_count, after.output_count) == (
        before.serial, before.lineage, before.resource_count, before.output_count
    )  # fmt: skip
    doc = json.loads(once)
    pointers = [f.json_pointer for f in findings]
    for f in findings:
        try:
            value = _resolve(doc, f.json_pointer)
        except (KeyError, IndexError, TypeError):
            # only an enclosing finding (a sensitive output) may have replaced it whole
            assert any(f.json_pointer.startswith(p + "/") for p in pointers)
            continue
        for s in _strings(value):
            assert is_marker(s) or (f.embedded and "REDACTED(" in s), (f, s)


@settings(max_examples=100, deadline=None)
@given(doc=_JSON)
def test_any_json_is_scanned_without_error(doc: Any) -> None:
    body = json.dumps(doc).encode()
    findings = scan(body)
    assert all(f.kind in KINDS for f in findings)
    if isinstance(doc, dict | list):
        sanitize(body, findings)


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=200))
def test_any_bytes_are_scanned_without_error(body: bytes) -> None:
    assert isinstance(scan(body), list)


def test_rule_ids_and_kinds_are_short_identifiers() -> None:
    body = b"".join((STATES / n).read_bytes() for n in STATE_FILES[:1])
    for f in scan(body):
        assert re.fullmatch(r"[a-z0-9+-]{2,40}", f.rule) and re.fullmatch(r"[a-z0-9-]+", f.kind)
