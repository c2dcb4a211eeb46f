"""A small IAM policy evaluator for the question the audit asks: *can this role reach that
object?* (pure, no I/O).

AWS's own simulator (iam:SimulatePrincipalPolicy) is not always granted to auditors nor
implemented by every endpoint, so the role's documents are evaluated here, leaning towards
"reachable" wherever a document cannot be decided statically:

- an explicit Deny wins, but a Deny with a Condition is assumed not to apply;
- an Allow with a Condition is assumed to apply (reported as conditional);
- policy variables (``${aws:username}``) match anything;
- NotAction / NotResource are evaluated as written (an Allow with them is also a finding:
  it grants everything not listed);
- a permissions boundary, when set, must allow too.

Not modelled (the answer can only be broader than the truth): resource-based policies
granting the role, SCPs and session policies (which can only narrow further).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from stateward.s3audit.policydoc import Statement


class Decision(enum.Enum):
    ALLOWED = "allowed"
    DENIED = "explicitly denied"
    NOT_ALLOWED = "not allowed"


@dataclass(frozen=True, slots=True)
class Answer:
    decision: Decision
    #: True when the Allow that decided depends on a Condition.
    conditional: bool = False

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOWED


def _applies(st: Statement, action: str, resource: str) -> bool:
    return st.matches_action(action) and st.matches_resource(resource)


def _one(stmts: Sequence[Statement], action: str, resource: str) -> Answer:
    allow: Answer | None = None
    for st in stmts:
        if not _applies(st, action, resource):
            continue
        if st.effect == "Deny" and not st.condition:
            return Answer(Decision.DENIED)
        if st.effect == "Allow":
            candidate = Answer(Decision.ALLOWED, bool(st.condition))
            if allow is None or (allow.conditional and not candidate.conditional):
                allow = candidate
    return allow or Answer(Decision.NOT_ALLOWED)


def evaluate(
    identity: Sequence[Statement],
    action: str,
    resource: str,
    boundary: Sequence[Statement] | None = None,
) -> Answer:
    """Whether ``identity`` (all the role's statements) allows ``action`` on ``resource``."""
    answer = _one(identity, action, resource)
    if not answer.allowed or boundary is None:
        return answer
    bound = _one(boundary, action, resource)
    if not bound.allowed:
        return bound
    return Answer(Decision.ALLOWED, answer.conditional or bound.conditional)


def broad_allows(stmts: Sequence[Statement]) -> list[str]:
    """Allow statements using NotAction or NotResource (Sid or position)."""
    return [
        st.sid or f"#{i}"
        for i, st in enumerate(stmts)
        if st.effect == "Allow" and (st.not_action or st.not_resource)
    ]
