"""``stateward policy check``: find the grants that turn a leaked credential into a breach.

The most common real-world state leaks are not exploits but configurations: a CI role with
write on everything, a network condition that admits the whole internet, an admin credential
that never expires. Each finding says what it is, why it matters and how to fix it; "danger"
findings make the check fail so it can gate a config change in CI. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from stateward.domain.actions import Action
from stateward.domain.policy import PolicyConfig, Role, Rule
from stateward.domain.policy_model import is_everything

Severity = Literal["danger", "warning"]

#: Actions that change or destroy state, or take control of it: never from anywhere.
SENSITIVE = frozenset(
    {Action.WRITE, Action.DELETE, Action.FORCE_UNLOCK, Action.ROLLBACK, Action.ADMIN}
)
#: Actions that disclose secrets (resource attributes, sensitive outputs, who did what).
DISCLOSING = frozenset({Action.READ, Action.READ_SENSITIVE_OUTPUTS, Action.AUDIT})
_WINDOWED = frozenset({Action.FORCE_UNLOCK, Action.DELETE})


@dataclass(frozen=True, slots=True)
class TokenSummary:
    """What the linter needs to know about a token (never its secret or hash)."""

    name: str
    roles: list[str]
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    role: str
    rule: int | None  # index in roles.<role>.rules, 0-based like config error locations
    what: str
    why: str
    fix: str
    token: str | None = None

    @property
    def where(self) -> str:
        if self.token is not None:
            return f"token {self.token}"
        if self.rule is None:
            return f"roles.{self.role}"
        return f"roles.{self.role}.rules[{self.rule}]"


def _names(actions: Iterable[Action]) -> str:
    wanted = set(actions)
    return ", ".join(a.value for a in Action if a in wanted)


def lint(policy: PolicyConfig, tokens: Sequence[TokenSummary] = ()) -> list[Finding]:
    """Every finding for the custom roles of ``policy`` and the given tokens, in config order.

    Built-in roles are not linted: they are fixed and documented, and assigning them is a
    decision about people, which token findings cover.
    """
    findings: list[Finding] = []
    for name, role in policy.roles.items():
        findings.extend(_lint_role(name, role))
    for token in tokens:
        findings.extend(_lint_token(policy, token))
    return findings


def _lint_role(name: str, role: Role) -> list[Finding]:
    if not role.rules:
        return [
            Finding(
                "warning",
                name,
                None,
                "has no rules, so it grants nothing",
                "a credential with only this role is refused everything, which is rarely meant",
                f"add [[roles.{name}.rules]] or remove the role",
            )
        ]
    out: list[Finding] = []
    for index, rule in enumerate(role.rules):
        if rule.effect == "allow":
            out.extend(_lint_rule(name, index, rule))
    return out


def _lint_rule(name: str, index: int, rule: Rule) -> list[Finding]:
    out: list[Finding] = []
    granted = rule.granted

    def add(severity: Severity, what: str, why: str, fix: str) -> None:
        out.append(Finding(severity, name, index, what, why, fix))

    everything = [g for g in rule.paths if is_everything(g)]
    broad = granted & {Action.READ, Action.WRITE}
    if everything and broad:
        add(
            "danger",
            f"grants {_names(broad)} on '{everything[0]}' (every state)",
            "a leaked credential with this role can read or overwrite every state, including "
            "production and the secrets stored in it",
            "list only the paths this role needs (e.g. 'team/app/**' or 'prod/network'); "
            "give the built-in reader or writer role only to people who need every path",
        )
    elif len(everything) == len(rule.paths):
        risky = granted & (SENSITIVE | DISCLOSING)
        add(
            "danger" if risky else "warning",
            f"grants {_names(granted)} with no path restriction ('{everything[0]}')",
            "the rule applies to every state that exists now and every state created later",
            "replace '**' with the path globs this role is for (e.g. 'team/app/*')",
        )
    for net in rule.cidrs:
        if net.prefixlen == 0:
            sensitive = granted & SENSITIVE
            add(
                "danger" if sensitive else "warning",
                f"allows {_names(sensitive or granted)} from {net} (any address)",
                "a network condition that admits every address protects nothing, and it reads "
                "as if it did",
                "list the networks of your CI runners, VPN or office (e.g. 10.20.0.0/16), or "
                "drop the condition if the rule is meant to apply from anywhere",
            )
    windowless = granted & _WINDOWED
    if windowless and not rule.windows:
        add(
            "danger",
            f"allows {_names(windowless)} at any time (no time window)",
            "force-unlock and delete are the actions that corrupt or lose state when run by "
            "mistake or by a compromised job; a change window keeps them to hours when someone "
            "is watching",
            f"add [[roles.{name}.rules.windows]] with your change window (days, start, end, tz), "
            "or move these actions to a rule that has one",
        )
    if Action.ADMIN in granted:
        add(
            "danger",
            "grants admin to a custom role",
            "admin breaks locks, restores and purges states and overrides the lineage/serial "
            "guards; custom roles are meant to be least privilege",
            "grant the specific actions this role needs; give admin only through the built-in "
            "'admin' role, to named people, with expiring credentials",
        )
    return out


def _grants_admin(role: Role | None) -> bool:
    return role is not None and any(
        r.effect == "allow" and Action.ADMIN in r.granted for r in role.rules
    )


def _lint_token(policy: PolicyConfig, token: TokenSummary) -> list[Finding]:
    out: list[Finding] = []
    for role_name in token.roles:
        role = policy.role(role_name)
        if role is None:
            out.append(
                Finding(
                    "warning",
                    role_name,
                    None,
                    f"refers to role '{role_name}', which the configuration does not define",
                    "every request with this token is refused (unknown roles fail closed)",
                    "define the role, or revoke the token and create one with an existing role",
                    token=token.name,
                )
            )
        elif token.expires_at is None and _grants_admin(role):
            out.append(
                Finding(
                    "danger",
                    role_name,
                    None,
                    f"has admin rights through role '{role_name}' and never expires",
                    "a leaked admin token without expiry is a permanent key to every state",
                    "create a replacement with an expiry (stateward token create ... --expires "
                    "90d) and revoke this one",
                    token=token.name,
                )
            )
    return out
