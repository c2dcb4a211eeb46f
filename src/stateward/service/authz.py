"""Authorization inside operations: every operation asks here first, before it looks anything
up, so a refusal reveals nothing about what exists.

Asking also tells the current audit context which action the operation needs and on which
path (the first ask wins): the record of a refused request names what was refused. The
decision itself is the domain's pure policy (``domain/policy.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from stateward.domain.actions import Action
from stateward.domain.errors import Forbidden
from stateward.domain.paths import StatePath, as_path
from stateward.domain.policy import (
    STORE_WIDE,
    Decision,
    PolicyConfig,
    ReadScope,
    decide,
    read_scope,
)
from stateward.domain.principal import Principal
from stateward.service import context


class Authorizer:
    def __init__(self, policy: PolicyConfig, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.clock = clock

    def decide(self, who: Principal, action: Action, path: str = STORE_WIDE) -> Decision:
        """The policy's decision (no side effects: for filtering listings)."""
        return decide(
            self.policy,
            who.roles,
            action,
            path,
            source=who.source,
            now=dt.datetime.fromtimestamp(self.clock(), dt.UTC),
            path_limits=who.paths,
        )

    def authorize(self, who: Principal, action: Action, path: str) -> StatePath:
        """Refuse unless a rule allows ``action`` on ``path``; the validated path. A malformed
        path is a 400 (input validation reveals nothing), checked first. The reason is one
        line naming roles, action and path only."""
        valid = as_path(path)
        self.mark(who, action, valid)
        decision = self.decide(who, action, valid)
        if not decision.allowed:
            raise Forbidden(decision.reason)
        return valid

    def authorize_store(self, who: Principal, action: Action) -> None:
        """Like :meth:`authorize`, for an operation on the whole store."""
        self.mark(who, action, None)
        decision = self.decide(who, action, STORE_WIDE)
        if not decision.allowed:
            raise Forbidden(decision.reason)

    def read_scope(self, who: Principal, path: str) -> tuple[ReadScope, StatePath]:
        """How much of ``path`` a read may return (refused: Forbidden)."""
        valid = as_path(path)
        self.mark(who, Action.READ, valid)
        scope, decision = read_scope(
            self.policy,
            who.roles,
            valid,
            source=who.source,
            now=dt.datetime.fromtimestamp(self.clock(), dt.UTC),
            path_limits=who.paths,
        )
        if scope is ReadScope.NONE:
            raise Forbidden(decision.reason)
        return scope, valid

    @staticmethod
    def mark(who: Principal, action: Action, path: str | None) -> None:
        """Tell the audit context which action the operation needs (first one wins)."""
        ctx = context.current()
        if ctx is not None and ctx.action is None:
            ctx.who = ctx.who or who
            ctx.action = action.value
            ctx.path = path
