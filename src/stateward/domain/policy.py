"""Authorization policy: which roles may perform which action on which state paths.

Pure domain code (no I/O), so every decision can be tested exhaustively. The model is small on
purpose, because it has to survive a security review:

- a principal holds role *names*; a role is a list of rules; a rule allows or denies some
  actions on some path globs, optionally only from some networks and inside some time windows;
- a matching deny rule wins over every allow rule, across all of the principal's roles;
- otherwise the request is allowed only if an allow rule matches with its conditions met;
- anything unexpected (an unknown role, an invalid path, an exception) denies: fail closed.

Reasons are one line, name roles, actions and the (validated) path only, and are meant to be
shown to the client: Terraform prints them, and a clear refusal saves a support ticket.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stateward.domain.actions import ACTION_TABLE, Action, Operation
from stateward.domain.errors import BadRequest
from stateward.domain.globs import glob_match
from stateward.domain.paths import validate_path
from stateward.domain.policy_model import (
    ROLE_NAME_RE,
    IPAddress,
    Role,
    RoleName,
    Rule,
    TimeWindow,
    is_everything,
    parse_source,
)

__all__ = [
    "ACTION_TABLE",
    "BUILTIN_ROLES",
    "EVALUATION_FAILED",
    "STORE_WIDE",
    "Action",
    "Decision",
    "Operation",
    "PolicyConfig",
    "ReadScope",
    "Role",
    "RoleName",
    "Rule",
    "TimeWindow",
    "decide",
    "outputs_only",
    "read_scope",
]

#: The "path" of operations on the whole store (maintenance, events without a path, credential
#: management). It is never a valid state path; only globs covering every path (``**``) match it.
STORE_WIDE = "**"
EVALUATION_FAILED = "policy evaluation failed"


def _builtin(description: str, *actions: Action) -> Role:
    return Role(description=description, rules=(Rule(actions=actions, paths=("**",)),))


A = Action
#: Fixed roles every deployment has. Custom roles may not reuse these names, so a config file
#: can never quietly redefine what ``reader`` means.
BUILTIN_ROLES: Mapping[str, Role] = MappingProxyType(
    {
        "admin": _builtin("every action on every path", *Action),
        "writer": _builtin(
            "terraform plan and apply on every path",
            A.READ_OUTPUTS,
            A.READ,
            A.WRITE,
            A.LOCK,
            A.UNLOCK,
            A.HISTORY,
        ),
        "reader": _builtin(
            "read states and their history on every path", A.READ_OUTPUTS, A.READ, A.HISTORY
        ),
        "outputs-reader": _builtin(
            "non-sensitive outputs on every path (terraform_remote_state)", A.READ_OUTPUTS
        ),
    }
)


class PolicyConfig(BaseModel):
    """The custom roles of a deployment (``[roles.<name>]`` in the config file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    roles: dict[RoleName, Role] = Field(default_factory=dict)

    def role(self, name: str) -> Role | None:
        builtin = BUILTIN_ROLES.get(name)
        return builtin if builtin is not None else self.roles.get(name)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str  # one line, safe to show to the client


def decide(
    policy: PolicyConfig,
    roles: Sequence[str],
    action: Action,
    path: str,
    *,
    source: str | None,
    now: dt.datetime,
    path_limits: Sequence[str] | None = None,
) -> Decision:
    """May a principal holding ``roles`` do ``action`` on ``path``?

    ``source`` is the client address (conditions on networks fail without one); ``now`` must be
    timezone-aware; ``path_limits`` are globs a credential is restricted to (None: no limit,
    empty: nothing). Use :data:`STORE_WIDE` as ``path`` for operations without one.
    """
    try:
        return _evaluate(policy, roles, Action(action), path, source, now, path_limits)
    except Exception:
        return Decision(False, EVALUATION_FAILED)


def _evaluate(
    policy: PolicyConfig,
    roles: Sequence[str],
    action: Action,
    path: str,
    source: str | None,
    now: dt.datetime,
    path_limits: Sequence[str] | None,
) -> Decision:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("policy decisions need a timezone-aware time")
    if path != STORE_WIDE:
        try:
            validate_path(path)
        except BadRequest:
            return Decision(False, f"{action} refused: not a valid state path")
    where = "the whole store" if path == STORE_WIDE else path
    if not roles:
        return Decision(False, f"no role grants {action} on {where} (the credential has none)")
    resolved: list[tuple[str, Role]] = []
    for name in roles:
        role = policy.role(name)
        if role is None:
            shown = repr(name) if ROLE_NAME_RE.match(name) else "(invalid name)"
            return Decision(False, f"unknown role {shown}: the server configuration must define it")
        resolved.append((name, role))
    if path_limits is not None and not any(_path_matches(g, path) for g in path_limits):
        return Decision(False, f"this credential is restricted to paths other than {where}")
    addr = parse_source(source)
    for name, role in resolved:
        for rule in role.rules:
            if (
                rule.effect == "deny"
                and rule.denies(action)
                and _deny_reaches(rule, path)
                and _deny_conditions_met(rule, addr, now)
            ):
                return Decision(False, f"role {name} denies {action} on {where}")
    unmet: tuple[str, str] | None = None
    for name, role in resolved:
        for rule in role.rules:
            if rule.effect != "allow" or action not in rule.granted:
                continue
            if not _rule_applies(rule, path):
                continue
            why = _unmet_condition(rule, addr, now)
            if why is None:
                return Decision(True, f"role {name} grants {action} on {where}")
            unmet = unmet or (name, why)
    if unmet is not None:
        return Decision(False, f"role {unmet[0]} grants {action} on {where} only {unmet[1]}")
    names = ", ".join(name for name, _ in resolved)
    verb = "does" if len(resolved) == 1 else "do"
    noun = "role" if len(resolved) == 1 else "roles"
    return Decision(False, f"{noun} {names} {verb} not grant {action} on {where}")


def _path_matches(glob: str, path: str) -> bool:
    return is_everything(glob) if path == STORE_WIDE else glob_match(glob, path)


def _rule_applies(rule: Rule, path: str) -> bool:
    return any(_path_matches(glob, path) for glob in rule.paths)


def _deny_reaches(rule: Rule, path: str) -> bool:
    """A store-wide operation touches every path, so a deny on any path reaches it."""
    return path == STORE_WIDE or _rule_applies(rule, path)


def _unmet_condition(rule: Rule, addr: IPAddress | None, now: dt.datetime) -> str | None:
    """Which condition of an allow rule fails (None: all are met). A missing or unparseable
    source address fails a network condition."""
    if rule.cidrs and not rule.source_in_cidrs(addr):
        return "from its allowed networks"
    if rule.windows and not rule.in_windows(now):
        return "inside its time windows"
    return None


def _deny_conditions_met(rule: Rule, addr: IPAddress | None, now: dt.datetime) -> bool:
    """A deny applies unless a condition is *known* to be unmet: a deny rule for some networks
    also applies to a request whose source address is unknown (fail closed)."""
    if rule.cidrs and addr is not None and not rule.source_in_cidrs(addr):
        return False
    return not (rule.windows and not rule.in_windows(now))


class ReadScope(StrEnum):
    """How much of a state a GET may return."""

    FULL = "full"
    OUTPUTS_WITH_SENSITIVE = "outputs-with-sensitive"
    OUTPUTS = "outputs"
    NONE = "none"


def read_scope(
    policy: PolicyConfig,
    roles: Sequence[str],
    path: str,
    *,
    source: str | None,
    now: dt.datetime,
    path_limits: Sequence[str] | None = None,
) -> tuple[ReadScope, Decision]:
    """The widest view of ``path`` the principal may read, for ``GET /state/<path>``.

    Returns the scope and the decision that granted it, or ``NONE`` with the refusal of the
    full ``read`` (the clearest reason to show a client that asked for the state)."""
    first: Decision | None = None
    for scope, action in (
        (ReadScope.FULL, Action.READ),
        (ReadScope.OUTPUTS_WITH_SENSITIVE, Action.READ_SENSITIVE_OUTPUTS),
        (ReadScope.OUTPUTS, Action.READ_OUTPUTS),
    ):
        decision = decide(
            policy, roles, action, path, source=source, now=now, path_limits=path_limits
        )
        if decision.allowed:
            return scope, decision
        first = first or decision
    assert first is not None
    return ReadScope.NONE, first


def outputs_only(state_doc: dict[str, Any], include_sensitive: bool) -> dict[str, Any]:
    """A valid v4 state with the outputs of ``state_doc`` and no resources.

    This is what ``terraform_remote_state`` needs, without any resource attributes (where
    secrets live even when not marked sensitive). Outputs marked sensitive are dropped unless
    ``include_sensitive``; any truthy ``sensitive`` counts, so an odd value errs on hiding.
    Raises ValueError for documents that cannot be filtered (client-encrypted states, other
    versions): the caller must then refuse the read rather than return the whole body.
    """
    if state_doc.get("version") != 4 or isinstance(state_doc.get("version"), bool):
        raise ValueError("only version 4 states can be filtered to their outputs")
    header = {k: state_doc.get(k) for k in ("terraform_version", "serial", "lineage")}
    if not isinstance(header["serial"], int) or not all(
        isinstance(header[k], str) for k in ("terraform_version", "lineage")
    ):
        raise ValueError("state has no valid serial, lineage or terraform_version")
    outputs = state_doc.get("outputs")
    outputs = {} if outputs is None else outputs
    if not isinstance(outputs, dict):
        raise ValueError("state 'outputs' is not an object")
    kept: dict[str, Any] = {}
    for name, output in outputs.items():
        if not isinstance(output, dict):
            raise ValueError("state output is not an object")
        if include_sensitive or not output.get("sensitive"):
            kept[name] = copy.deepcopy(output)
    return {
        "version": 4,
        **header,
        "outputs": kept,
        "resources": [],
        "check_results": None,
    }
