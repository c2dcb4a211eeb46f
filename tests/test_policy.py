"""Authorization policy (not enforced yet): decisions, configuration, outputs-only reads, the
action table and ``stateward policy check``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import stateward.domain.policy as policy_mod
from stateward.cli.main import cli
from stateward.config import ConfigError, load_settings
from stateward.domain import statefile
from stateward.domain.policy import (
    ACTION_TABLE,
    BUILTIN_ROLES,
    EVALUATION_FAILED,
    STORE_WIDE,
    Action,
    PolicyConfig,
    ReadScope,
    Role,
    Rule,
    TimeWindow,
    decide,
    outputs_only,
    read_scope,
)
from stateward.domain.policy_lint import Finding, TokenSummary, lint
from stateward.gate import build_gate
from stateward.http.api import build_api
from stateward.http.backend import LOCK_URL_METHODS, STATE_METHODS
from stateward.service.core import StateService
from tests.harness.pg import Store
from tests.harness.support import make_state

UTC = dt.UTC
NOW = dt.datetime(2025, 6, 4, 12, 0, tzinfo=UTC)  # a Wednesday
INSIDE_NET, OUTSIDE_NET = "10.1.2.3", "192.0.2.1"
PATH = "prod/db"

CI_PROD = Role(
    description="deploys prod from CI, destructive actions only in the change window",
    rules=(
        Rule(actions=("read", "write", "lock", "unlock", "history"), paths=("prod/**",),
             cidrs=("10.0.0.0/8",)),
        Rule(actions=("force-unlock", "delete"), paths=("prod/**",),
             windows=(TimeWindow(days=("wed",), start="10:00", end="14:00"),)),
    ),
)
POLICY = PolicyConfig(roles={"ci-prod": CI_PROD})
BUILTIN_GRANTS = {
    "admin": set(Action),
    "writer": {"read-outputs", "read-sensitive-outputs", "read", "write", "lock", "unlock",
               "history"},
    "reader": {"read-outputs", "read-sensitive-outputs", "read", "history"},
    "outputs-reader": {"read-outputs"},
    "ci-prod": {"read-outputs", "read-sensitive-outputs", "read", "write", "lock", "unlock",
                "history", "force-unlock", "delete"},
}


def check(roles: list[str], action: str, path: str = PATH, *, policy: PolicyConfig = POLICY,
          source: str | None = INSIDE_NET, now: dt.datetime = NOW,
          limits: list[str] | None = None) -> policy_mod.Decision:
    return decide(policy, roles, Action(action), path, source=source, now=now,
                  path_limits=limits)


# -- the permission matrix ---------------------------------------------------------------------

@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", list(BUILTIN_GRANTS))
def test_permission_matrix(role: str, action: Action) -> None:
    d = check([role], action)
    assert d.allowed is (action in BUILTIN_GRANTS[role]), d.reason
    verb = "grants" if d.allowed else "does not grant"
    assert d.reason == f"role {role} {verb} {action} on {PATH}"


@pytest.mark.parametrize("action", ["read-outputs", "read", "write", "lock", "unlock", "history"])
@pytest.mark.parametrize("source", [OUTSIDE_NET, None, "", "cli", "not-an-ip", "2001:db8::1"])
def test_network_condition_not_met(action: str, source: str | None) -> None:
    d = check(["ci-prod"], action, source=source)
    assert not d.allowed
    assert d.reason == f"role ci-prod grants {action} on {PATH} only from its allowed networks"


@pytest.mark.parametrize("action", ["force-unlock", "delete"])
@pytest.mark.parametrize("now", [NOW.replace(hour=9, minute=59), NOW.replace(hour=14),
                                 NOW + dt.timedelta(days=1), NOW - dt.timedelta(days=7, hours=3)])
def test_window_condition_not_met(action: str, now: dt.datetime) -> None:
    d = check(["ci-prod"], action, now=now)
    assert not d.allowed
    assert d.reason == f"role ci-prod grants {action} on {PATH} only inside its time windows"
    assert check(["ci-prod"], action, now=NOW - dt.timedelta(days=7)).allowed


def test_custom_role_paths_and_ipv4_mapped_source() -> None:
    assert not check(["ci-prod"], "read", "dev/db").allowed
    assert check(["ci-prod"], "write", source="::ffff:10.9.9.9").allowed
    assert check(["ci-prod", "outputs-reader"], "read-outputs", "dev/db").allowed
    d = check(["ci-prod", "outputs-reader"], "write", "dev/db")
    assert d.reason == "roles ci-prod, outputs-reader do not grant write on dev/db"


# -- deny rules, limits, unknown roles, failure --------------------------------------------------

FREEZE = Role(rules=(Rule(actions=("write", "delete"), paths=("prod/**",), effect="deny"),))


def test_deny_wins_across_roles() -> None:
    p = PolicyConfig(roles={"freeze": FREEZE})
    d = check(["admin", "freeze"], "write", policy=p)
    assert (d.allowed, d.reason) == (False, f"role freeze denies write on {PATH}")
    assert check(["freeze", "admin"], "delete", policy=p).reason.startswith("role freeze denies")
    assert check(["admin", "freeze"], "write", "dev/db", policy=p).allowed
    assert check(["admin", "freeze"], "lock", policy=p).allowed


def test_deny_of_outputs_covers_full_read_but_not_the_reverse() -> None:
    no_outputs = Role(rules=(Rule(actions=("read-outputs",), paths=("**",), effect="deny"),))
    no_read = Role(rules=(Rule(actions=("read",), paths=("**",), effect="deny"),))
    p = PolicyConfig(roles={"no-outputs": no_outputs, "no-read": no_read})
    for action in ("read", "read-sensitive-outputs", "read-outputs"):
        assert not check(["reader", "no-outputs"], action, policy=p).allowed
    assert not check(["reader", "no-read"], "read", policy=p).allowed
    assert check(["reader", "no-read"], "read-outputs", policy=p).allowed
    scope, _ = read_scope(p, ["reader", "no-read"], PATH, source=None, now=NOW)
    assert scope is ReadScope.OUTPUTS_WITH_SENSITIVE


def test_deny_conditions_fail_closed_on_unknown_source() -> None:
    rules = (Rule(actions=("write",), paths=("**",), effect="deny", cidrs=("10.0.0.0/8",)),
             Rule(actions=("delete",), paths=("**",), effect="deny",
                  windows=(TimeWindow(start="11:00", end="13:00"),)))
    p = PolicyConfig(roles={"guard": Role(rules=rules)})
    assert not check(["admin", "guard"], "write", policy=p, source=INSIDE_NET).allowed
    assert not check(["admin", "guard"], "write", policy=p, source="cli").allowed
    assert not check(["admin", "guard"], "write", policy=p, source=None).allowed
    assert check(["admin", "guard"], "write", policy=p, source=OUTSIDE_NET).allowed
    assert not check(["admin", "guard"], "delete", policy=p).allowed
    assert check(["admin", "guard"], "delete", policy=p, now=NOW.replace(hour=13)).allowed


def test_path_limits() -> None:
    d = check(["writer"], "write", limits=["dev/**", "shared/*"])
    assert (d.allowed, d.reason) == (False, f"this credential is restricted to paths other "
                                            f"than {PATH}")
    assert check(["writer"], "write", "shared/net", limits=["dev/**", "shared/*"]).allowed
    assert check(["writer"], "write", limits=["prod/*"]).allowed
    assert not check(["writer"], "read", limits=[]).allowed
    assert not check(["reader"], "write", limits=["**"]).allowed  # limits never grant


def test_store_wide_operations() -> None:
    assert check(["admin"], "admin", STORE_WIDE).allowed
    assert check(["admin"], "audit", STORE_WIDE).reason == "role admin grants audit on the " \
                                                           "whole store"
    prod_admin = Role(rules=(Rule(actions=("audit",), paths=("prod/**",),
                                  windows=(TimeWindow(start="00:00", end="24:00"),)),))
    p = PolicyConfig(roles={"prod-audit": prod_admin, "freeze": FREEZE})
    assert check(["prod-audit"], "audit", policy=p).allowed
    assert not check(["prod-audit"], "audit", STORE_WIDE, policy=p).allowed
    assert not check(["admin"], "admin", STORE_WIDE, limits=["prod/**"]).allowed
    assert not check(["admin", "freeze"], "write", STORE_WIDE, policy=p).allowed


def test_unknown_or_missing_roles_deny() -> None:
    d = check(["reader", "ghost"], "read-outputs")
    assert (d.allowed, d.reason) == (False, "unknown role 'ghost': the server configuration "
                                            "must define it")
    assert check(["Evil\nName"], "read").reason == ("unknown role (invalid name): the server "
                                                    "configuration must define it")
    assert check([], "read").reason == f"no role grants read on {PATH} (the credential has none)"


def test_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: Any) -> None:
        raise RuntimeError("secret-token-value")

    monkeypatch.setattr(policy_mod, "_unmet_condition", boom)
    d = check(["admin"], "write")
    assert (d.allowed, d.reason) == (False, EVALUATION_FAILED)
    monkeypatch.undo()
    assert check(["admin"], "write").allowed
    naive = dt.datetime(2025, 6, 4, 12, 0)  # no tzinfo: the point of the test
    assert check(["admin"], "write", now=naive).reason == EVALUATION_FAILED
    bad = decide(POLICY, ["admin"], "fly", PATH, source=None, now=NOW)  # type: ignore[arg-type]
    assert bad.reason == EVALUATION_FAILED
    for path in ("prod/../x", "prod//db", "a/lock", "x\ny", ""):
        d = check(["admin"], "read", path)
        assert (d.allowed, d.reason) == (False, "read refused: not a valid state path")


# -- time windows ------------------------------------------------------------------------------

def at(tz: str, *args: int) -> dt.datetime:
    from zoneinfo import ZoneInfo

    return dt.datetime(*args, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def test_window_crossing_midnight_in_local_time() -> None:
    w = TimeWindow(days=("fri",), start="22:00", end="02:00", tz="Europe/Paris")
    paris = "Europe/Paris"
    assert w.contains(at(paris, 2025, 6, 6, 22, 0))  # Friday
    assert w.contains(at(paris, 2025, 6, 7, 1, 59))  # early Saturday
    assert not w.contains(at(paris, 2025, 6, 7, 2, 0))
    assert not w.contains(at(paris, 2025, 6, 6, 21, 59))
    assert not w.contains(at(paris, 2025, 6, 7, 23, 0))  # Saturday night: not a start day
    assert not w.contains(at(paris, 2025, 6, 6, 1, 0))  # Friday early: Thursday's window
    assert w.contains(dt.datetime(2025, 6, 6, 20, 30, tzinfo=UTC))  # 22:30 in Paris (CEST)
    assert not w.contains(dt.datetime(2025, 6, 7, 0, 30, tzinfo=UTC))  # 02:30 in Paris


def test_window_in_a_non_utc_zone_follows_dst() -> None:
    w = TimeWindow(days=("mon", "tue", "wed", "thu", "fri"), start="09:00", end="17:00",
                   tz="America/New_York")
    assert w.contains(dt.datetime(2025, 6, 2, 13, 0, tzinfo=UTC))  # 09:00 EDT
    assert not w.contains(dt.datetime(2025, 6, 2, 12, 59, tzinfo=UTC))
    assert not w.contains(dt.datetime(2025, 1, 6, 13, 30, tzinfo=UTC))  # 08:30 EST
    assert w.contains(dt.datetime(2025, 1, 6, 14, 0, tzinfo=UTC))  # 09:00 EST
    assert not w.contains(dt.datetime(2025, 6, 7, 14, 0, tzinfo=UTC))  # Saturday


# -- configuration -----------------------------------------------------------------------------

GOOD_TOML = """
[roles.ci-prod]
description = "GitHub Actions, main branch of acme/infra"

[[roles.ci-prod.rules]]
actions = ["read", "write", "lock", "unlock"]
paths = ["prod/**"]
cidrs = ["10.20.0.0/16", "2001:db8::/32"]

[[roles.ci-prod.rules.windows]]
days = ["mon", "tue", "wed", "thu"]
start = "09:00"
end = "17:00"
tz = "Europe/Paris"

[[roles.ci-prod.rules]]
actions = ["delete"]
paths = ["prod/legacy/*"]
effect = "deny"

[roles.remote-state]
[[roles.remote-state.rules]]
actions = ["read-outputs"]
paths = ["shared/*", "*/network"]
"""


def test_roles_load_from_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD_TOML)
    roles = load_settings(cfg, {}, env={}).roles
    assert set(roles) == {"ci-prod", "remote-state"}
    first = roles["ci-prod"].rules[0]
    assert first.actions == (Action.READ, Action.WRITE, Action.LOCK, Action.UNLOCK)
    assert [str(n) for n in first.cidrs] == ["10.20.0.0/16", "2001:db8::/32"]
    assert first.windows[0].tz == "Europe/Paris"
    assert roles["ci-prod"].rules[1].effect == "deny"
    p = PolicyConfig(roles=roles)
    assert decide(p, ["remote-state"], Action.READ_OUTPUTS, "team/network", source=None,
                  now=NOW).allowed
    assert load_settings(None, {}, env={}).roles == {}


RULE = "[[roles.r.rules]]\nactions = ['read']\npaths = ['a/*']\n"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[roles.admin]", r"roles\.admin.*built-in"),
        ("[roles.outputs-reader]", "built-in"),
        ("[roles.Bad_Name]", r"roles\.Bad_Name.*a-z 0-9"),
        ("[[roles.r.rules]]\nactions = ['wrte']\npaths = ['a']", r"roles\.r\.rules\.0\.actions"),
        ("[[roles.r.rules]]\nactions = []\npaths = ['a']", r"roles\.r\.rules\.0\.actions"),
        ("[[roles.r.rules]]\nactions = ['read']\npaths = []", r"roles\.r\.rules\.0\.paths"),
        ("[[roles.r.rules]]\nactions = ['read']", r"roles\.r\.rules\.0\.paths"),
        ("[[roles.r.rules]]\nactions = ['read']\npaths = ['a//b']", "empty segment"),
        ("[[roles.r.rules]]\nactions = ['read']\npaths = ['/a']", "empty segment"),
        ("[[roles.r.rules]]\nactions = ['read']\npaths = ['a/**b']", "whole segment"),
        ("[[roles.r.rules]]\nactions = ['read']\npaths = ['a/b?']", "may only contain"),
        ("[[roles.r.rules]]\nactions = ['read']\npaths = ['a/../b']", r"'\.\.'"),
        ("[[roles.r.rules]]\nactions = ['read']\npaths = ['a']\neffect = 'permit'", "effect"),
        (RULE + "cidrs = ['10.0.0.1/8']", r"cidrs\.0.*host bits"),
        (RULE + "cidrs = ['10.0.0.0/33']", r"cidrs\.0"),
        (RULE + "cidrs = ['everywhere']", r"cidrs\.0"),
        (RULE + "[[roles.r.rules.windows]]\nstart = '9:00'\nend = '17:00'", r"windows\.0\.start"),
        (RULE + "[[roles.r.rules.windows]]\nstart = '09:00'\nend = '24:01'", r"windows\.0\.end"),
        (RULE + "[[roles.r.rules.windows]]\nstart = '09:00'\nend = '09:00'", "empty window"),
        (RULE + "[[roles.r.rules.windows]]\nstart = '09:00'\nend = '10:00'\ntz = 'Mars/Base'",
         r"windows\.0\.tz.*time zone"),
        (RULE + "[[roles.r.rules.windows]]\ndays = ['funday']\nstart = '09:00'\nend = '10:00'",
         r"windows\.0\.days"),
        (RULE + "condition = 'x'", r"roles\.r\.rules\.0\.condition"),
        ("[roles.r]\nrulez = []", r"roles\.r\.rulez"),
    ],
)
def test_invalid_roles_refused(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_settings(cfg, {}, env={})


def test_roles_not_settable_from_env() -> None:
    with pytest.raises(ConfigError, match="STATEWARD_ROLES"):
        load_settings(None, {}, env={"STATEWARD_ROLES": "x"})


def test_builtin_names_reserved_and_builtins_immutable() -> None:
    for name in BUILTIN_ROLES:
        with pytest.raises(ValidationError, match="built-in"):
            PolicyConfig(roles={name: Role()})
    with pytest.raises(ValidationError):
        BUILTIN_ROLES["admin"].rules = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        BUILTIN_ROLES["reader"] = BUILTIN_ROLES["admin"]  # type: ignore[index]
    assert PolicyConfig(roles={"evil": BUILTIN_ROLES["admin"]}).role("reader") is \
        BUILTIN_ROLES["reader"]


# -- outputs-only reads ------------------------------------------------------------------------

@pytest.mark.parametrize("include_sensitive", [False, True])
def test_outputs_only(include_sensitive: bool) -> None:
    doc = json.loads(make_state(serial=7, resources=3))
    original = json.dumps(doc, sort_keys=True)
    out = outputs_only(doc, include_sensitive)
    assert json.dumps(doc, sort_keys=True) == original  # input untouched
    assert {k: out[k] for k in ("version", "terraform_version", "serial", "lineage")} == \
        {k: doc[k] for k in ("version", "terraform_version", "serial", "lineage")}
    assert out["resources"] == [] and out["check_results"] is None
    expected = {"name", "secret"} if include_sensitive else {"name"}
    assert set(out["outputs"]) == expected
    assert out["outputs"]["name"] == doc["outputs"]["name"]
    summary = statefile.parse_state(json.dumps(out).encode())
    assert (summary.serial, summary.resource_count, summary.output_count) == (7, 0,
                                                                              len(expected))
    assert "id-0" not in json.dumps(out)


HEADER = {"version": 4, "serial": 1, "lineage": "l", "terraform_version": "1.9.0"}


def test_outputs_only_refuses_what_it_cannot_filter() -> None:
    for doc in ({"encryption_version": "v0", "encrypted_data": "x", "meta": {}},
                {"version": 3, "outputs": {}}, {"version": True},
                {**HEADER, "outputs": []}, {**HEADER, "outputs": {"a": "x"}},
                {"version": 4, "outputs": {}}):
        with pytest.raises(ValueError, match=r"state|version"):
            outputs_only(doc, False)
    odd = {**HEADER, "outputs": {"a": {"value": 1, "sensitive": "yes"}}}
    assert outputs_only(odd, False)["outputs"] == {}
    assert outputs_only({**HEADER}, True)["outputs"] == {}


def test_read_scope() -> None:
    sens = Role(rules=(Rule(actions=("read-sensitive-outputs",), paths=("**",)),))
    p = PolicyConfig(roles={"sens": sens})
    kw: dict[str, Any] = {"source": None, "now": NOW}
    assert read_scope(p, ["reader"], PATH, **kw)[0] is ReadScope.FULL
    assert read_scope(p, ["sens"], PATH, **kw)[0] is ReadScope.OUTPUTS_WITH_SENSITIVE
    scope, d = read_scope(p, ["outputs-reader"], PATH, **kw)
    assert (scope, d.reason) == (ReadScope.OUTPUTS, f"role outputs-reader grants read-outputs "
                                                    f"on {PATH}")
    scope, d = read_scope(p, ["reader"], PATH, path_limits=["dev/**"], **kw)
    assert scope is ReadScope.NONE and "restricted" in d.reason


# -- the action table --------------------------------------------------------------------------

def test_action_table_is_one_action_per_operation() -> None:
    requests = [(op.surface, op.request) for op in ACTION_TABLE]
    assert len(requests) == len(set(requests))
    assert {op.action for op in ACTION_TABLE} >= set(Action) - {Action.READ_SENSITIVE_OUTPUTS}


def test_action_table_covers_every_protocol_method() -> None:
    rows = [op.request.split(" ") for op in ACTION_TABLE if op.surface == "protocol"]
    for url, methods in (("/state/<path>", STATE_METHODS),
                         ("/state/<path>/lock", LOCK_URL_METHODS)):
        covered = {m for row in rows if row[1] == url for m in row[0].split("/")}
        assert covered == set(methods), url


def test_action_table_covers_every_api_route(service: StateService) -> None:
    requests = [op.request for op in ACTION_TABLE if op.surface == "api"]
    for route in build_api(build_gate(service)).routes:
        for method in route.methods:  # type: ignore[attr-defined]
            key = f"{method} {route.path}"  # type: ignore[attr-defined]
            assert any(r == key or r.startswith(key + "?") for r in requests), key


def test_action_table_covers_every_cli_command() -> None:
    from stateward.domain.actions import NOT_STATE_OPERATIONS

    known = {op.request for op in ACTION_TABLE if op.surface == "cli"} | NOT_STATE_OPERATIONS
    for name, command in cli.commands.items():
        subs = getattr(command, "commands", None)
        for full in ([f"stateward {name} {s}" for s in subs] if subs else [f"stateward {name}"]):
            assert full in known or f"stateward {name} *" in known, full


DOC = Path(__file__).resolve().parent.parent / "docs" / "access-control.md"


def test_docs_action_table_matches_the_code() -> None:
    text = DOC.read_text()
    for op in ACTION_TABLE:
        assert f"| `{op.request}` | `{op.action}` |" in text, op.request


def test_docs_examples_load_and_lint_clean(tmp_path: Path) -> None:
    blocks = DOC.read_text().split("```toml\n")[1:]
    assert len(blocks) >= 3
    cfg = tmp_path / "c.toml"
    cfg.write_text("\n".join(b.split("```")[0] for b in blocks))
    roles = load_settings(cfg, {}, env={}).roles
    assert {"ci-prod", "network-consumer", "prod-freeze"} <= set(roles)
    assert lint(PolicyConfig(roles=roles)) == []


# -- the linter --------------------------------------------------------------------------------

def findings_for(text: str, tokens: list[TokenSummary] | None = None) -> list[Finding]:
    import tomllib

    return lint(PolicyConfig(**tomllib.loads(text)), tokens or [])


@pytest.mark.parametrize(
    ("rule", "severity", "what"),
    [
        ("actions = ['write', 'lock']\npaths = ['**']", "danger", "grants write on '**'"),
        ("actions = ['read']\npaths = ['team/x', '*/**']", "danger", "grants read on '*/**'"),
        ("actions = ['*']\npaths = ['**']", "danger", "grants read, write on '**'"),
        ("actions = ['history']\npaths = ['**']", "warning", "no path restriction"),
        ("actions = ['audit']\npaths = ['**']", "danger", "no path restriction"),
        ("actions = ['write']\npaths = ['app/*']\ncidrs = ['0.0.0.0/0']", "danger",
         "allows write from 0.0.0.0/0"),
        ("actions = ['write', 'read']\npaths = ['app/*']\ncidrs = ['::/0']", "danger",
         "allows write from ::/0"),
        ("actions = ['read']\npaths = ['app/*']\ncidrs = ['0.0.0.0/0']", "warning",
         "allows read-outputs, read-sensitive-outputs, read from 0.0.0.0/0"),
        ("actions = ['force-unlock']\npaths = ['app/*']", "danger", "force-unlock at any time"),
        ("actions = ['delete', 'lock']\npaths = ['app/*']", "danger", "delete at any time"),
        ("actions = ['admin']\npaths = ['app/*']", "danger", "grants admin to a custom role"),
    ],
)
def test_lint_findings(rule: str, severity: str, what: str) -> None:
    found = findings_for(f"[[roles.r.rules]]\n{rule}\n")
    match = [f for f in found if what in f.what]
    assert match, found
    f = match[0]
    assert (f.severity, f.role, f.rule, f.where) == (severity, "r", 0, "roles.r.rules[0]")
    assert f.why and f.fix


def test_lint_clean_policies() -> None:
    assert findings_for(GOOD_TOML) == []
    windowed = ("[[roles.r.rules]]\nactions = ['force-unlock', 'delete']\npaths = ['app/*']\n"
                "[[roles.r.rules.windows]]\nstart = '10:00'\nend = '12:00'\n"
                "[[roles.r.rules]]\nactions = ['write', 'delete']\npaths = ['**']\n"
                "effect = 'deny'\n")
    assert findings_for(windowed) == []
    assert [f.what for f in findings_for("[roles.empty]")] == ["has no rules, so it grants nothing"]


def test_lint_tokens() -> None:
    text = "[[roles.ops.rules]]\nactions = ['admin']\npaths = ['app/*']\n"
    tokens = [TokenSummary("root", ["admin"], None), TokenSummary("ops", ["ops"], None),
              TokenSummary("tmp", ["admin"], 1.9e9), TokenSummary("ci", ["writer"], None),
              TokenSummary("old", ["gone"], None)]
    got = {(f.where, f.severity) for f in findings_for(text, tokens) if f.token}
    assert got == {("token root", "danger"), ("token ops", "danger"), ("token old", "warning")}


def test_policy_check_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD_TOML)
    r = runner.invoke(cli, ["--config", str(cfg), "policy", "check"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "2 custom role(s), 0 danger(s), 0 warning(s)" in r.output
    cfg.write_text("[[roles.ci.rules]]\nactions = ['write', 'history']\npaths = ['**']\n"
                   "cidrs = ['0.0.0.0/0']\n[[roles.docs.rules]]\nactions = ['history']\n"
                   "paths = ['**']\n")
    r = runner.invoke(cli, ["--config", str(cfg), "policy", "check"], catch_exceptions=False)
    assert r.exit_code == 1
    assert "DANGER  roles.ci.rules[0]: grants write on '**' (every state)" in r.output
    assert "WARNING roles.docs.rules[0]" in r.output and "why: " in r.output
    assert "fix: " in r.output and "2 danger(s), 1 warning(s)" in r.output
    r = runner.invoke(cli, ["--config", str(cfg), "policy", "check", "--json"],
                      catch_exceptions=False)
    assert r.exit_code == 1
    assert [f["severity"] for f in json.loads(r.output)] == ["danger", "danger", "warning"]
    cfg.write_text("[roles.reader]\n")
    r = runner.invoke(cli, ["--config", str(cfg), "policy", "check"])
    assert r.exit_code == 1 and "roles.reader" in r.output and "built-in" in r.output


# -- properties --------------------------------------------------------------------------------

GLOBS = ["**", "prod/**", "*/db", "dev/*", "prod/db"]
REQUEST_PATHS = ["prod/db", "dev/db", "dev/x/y", "shared/net", STORE_WIDE]
SOURCES = [INSIDE_NET, OUTSIDE_NET, None, "cli"]
TIMES = [NOW, NOW.replace(hour=3), NOW + dt.timedelta(days=3)]
rules = st.builds(
    Rule,
    actions=st.lists(st.sampled_from([*Action, "*"]), min_size=1, max_size=3).map(tuple),
    paths=st.lists(st.sampled_from(GLOBS), min_size=1, max_size=2).map(tuple),
    effect=st.sampled_from(["allow", "deny"]),
    cidrs=st.sampled_from([(), ("10.0.0.0/8",), ("0.0.0.0/0", "::/0")]),
    windows=st.sampled_from([(), (TimeWindow(start="10:00", end="14:00"),),
                             (TimeWindow(days=("sat",), start="22:00", end="04:00"),)]),
)
policies = st.lists(st.lists(rules, max_size=3), min_size=1, max_size=3).map(
    lambda roles: PolicyConfig(roles={f"r{i}": Role(rules=tuple(rs)) for i, rs in
                                      enumerate(roles)}))
requests = st.tuples(st.sampled_from(list(Action)), st.sampled_from(REQUEST_PATHS),
                     st.sampled_from(SOURCES), st.sampled_from(TIMES))


@settings(max_examples=150, deadline=None)
@given(p=policies, extra=rules, builtin=st.sampled_from([[], ["writer"], ["admin"]]),
       req=requests)
def test_adding_a_deny_rule_never_allows_more(p: PolicyConfig, extra: Rule,
                                              builtin: list[str],
                                              req: tuple[Action, str, str | None, dt.datetime]
                                              ) -> None:
    action, path, source, now = req
    roles = [*p.roles, *builtin]
    before = decide(p, roles, action, path, source=source, now=now)
    deny = extra.model_copy(update={"effect": "deny"})
    first = next(iter(p.roles))
    changed = {**p.roles, first: Role(rules=(*p.roles[first].rules, deny))}
    after = decide(PolicyConfig(roles=changed), roles, action, path, source=source, now=now)
    assert after.allowed <= before.allowed
    limited = decide(p, roles, action, path, source=source, now=now, path_limits=["prod/**"])
    assert limited.allowed <= before.allowed
    assert before.reason != EVALUATION_FAILED


def test_policy_check_flags_admin_tokens_without_expiry(tmp_path: Path, store: Store) -> None:
    data = tmp_path / "d"
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        res = runner.invoke(cli, [*store.cli_args(data), *args], catch_exceptions=False)
        return res.exit_code, res.output

    assert run("policy", "check")[0] == 0
    assert not data.exists()  # linting never creates a data dir
    assert run("token", "create", "ops", "--role", "admin", "--expires", "30d")[0] == 0
    assert run("policy", "check")[0] == 0
    assert run("token", "create", "forever", "--role", "admin")[0] == 0
    code, out = run("policy", "check")
    assert code == 1 and "forever" in out
    assert run("token", "revoke", "forever")[0] == 0
    assert run("policy", "check")[0] == 0
