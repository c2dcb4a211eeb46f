"""The vocabulary of authorization: every action, and which action each operation needs.

Kept apart from :mod:`stateward.policy` (which decides *who* may act) so the table of
operations can be read, reviewed and tested on its own: a new endpoint or command that is not in
:data:`ACTION_TABLE` is a hole in access control, and ``tests/test_policy.py`` fails when one
appears. Both names are re-exported by :mod:`stateward.policy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Action(StrEnum):
    """What a principal wants to do to a state path.

    ``read`` implies ``read-sensitive-outputs`` which implies ``read-outputs``: a full read
    shows every output anyway, so granting ``read`` while withholding outputs would be a lie.
    No other action implies another; in particular ``admin`` is *not* a superset (the built-in
    ``admin`` role simply lists every action).
    """

    READ_OUTPUTS = "read-outputs"
    READ_SENSITIVE_OUTPUTS = "read-sensitive-outputs"
    READ = "read"
    WRITE = "write"
    LOCK = "lock"
    UNLOCK = "unlock"
    FORCE_UNLOCK = "force-unlock"
    DELETE = "delete"
    HISTORY = "history"
    ROLLBACK = "rollback"
    ADMIN = "admin"
    AUDIT = "audit"


#: What holding each action allows (itself plus what it implies).
GRANTS: dict[Action, frozenset[Action]] = {a: frozenset({a}) for a in Action} | {
    Action.READ: frozenset({Action.READ, Action.READ_SENSITIVE_OUTPUTS, Action.READ_OUTPUTS}),
    Action.READ_SENSITIVE_OUTPUTS: frozenset({Action.READ_SENSITIVE_OUTPUTS, Action.READ_OUTPUTS}),
}

Surface = Literal["protocol", "api", "cli"]


@dataclass(frozen=True, slots=True)
class Operation:
    """One request or command and the single action it needs."""

    surface: Surface
    request: str
    action: Action
    note: str = ""


A = Action
_P: Surface = "protocol"
_API: Surface = "api"
_CLI: Surface = "cli"
_OUTPUTS_FALLBACK = (
    "a principal without read but with read-sensitive-outputs or read-outputs gets an "
    "outputs-only state (policy.read_scope, policy.outputs_only)"
)
_STORE_WIDE = "no path: decided on policy.STORE_WIDE (needs a rule on '**')"

#: Every protocol request, JSON API call and CLI command, mapped to exactly one action.
#: Anything that returns state *content* needs ``read``; metadata about versions needs
#: ``history``; listings are filtered per path rather than refused.
ACTION_TABLE: tuple[Operation, ...] = (
    Operation(_P, "GET/HEAD /state/<path>", A.READ, _OUTPUTS_FALLBACK),
    Operation(_P, "POST/PUT /state/<path>", A.WRITE, "with or without ?ID="),
    Operation(_P, "DELETE /state/<path>", A.DELETE, "soft delete"),
    Operation(_P, "LOCK /state/<path>", A.LOCK, "includes taking over an expired lease"),
    Operation(_P, "UNLOCK /state/<path> (LockInfo body)", A.UNLOCK),
    Operation(_P, "UNLOCK /state/<path> (empty body)", A.FORCE_UNLOCK, "terraform force-unlock"),
    Operation(_P, "GET/HEAD /state/<path>/lock", A.READ, "the holder's LockInfo"),
    Operation(_P, "LOCK/POST/PUT /state/<path>/lock", A.LOCK),
    Operation(_P, "UNLOCK/DELETE /state/<path>/lock (LockInfo body)", A.UNLOCK),
    Operation(_P, "UNLOCK/DELETE /state/<path>/lock (empty body)", A.FORCE_UNLOCK),
    Operation(
        _API,
        "GET /api/v1/states",
        A.READ_OUTPUTS,
        "filtered: only paths where the principal holds read-outputs (or more) are listed",
    ),
    Operation(_API, "GET /api/v1/versions", A.HISTORY),
    Operation(_API, "GET /api/v1/version", A.HISTORY, "version metadata"),
    Operation(_API, "GET /api/v1/version?download=true", A.READ, "returns state content"),
    Operation(_API, "GET /api/v1/version?sanitized=true", A.READ, "secrets redacted"),
    Operation(_API, "GET /api/v1/findings", A.HISTORY, "stored secret findings of a version"),
    Operation(_API, "GET /api/v1/diff", A.HISTORY, "names and non-sensitive output values"),
    Operation(_API, "POST /api/v1/rollback", A.ROLLBACK),
    Operation(_API, "GET /api/v1/locks", A.HISTORY, "filtered per path"),
    Operation(_API, "POST /api/v1/locks/break", A.ADMIN),
    Operation(_API, "POST /api/v1/delete", A.DELETE, "soft delete"),
    Operation(_API, "POST /api/v1/restore", A.ADMIN),
    Operation(_API, "POST /api/v1/purge", A.ADMIN),
    Operation(_API, "POST /api/v1/protect", A.ADMIN, "setting and clearing"),
    Operation(_API, "POST /api/v1/allow-next-write", A.ADMIN),
    Operation(_API, "GET /api/v1/events?path=<path>", A.AUDIT),
    Operation(_API, "GET /api/v1/events", A.AUDIT, _STORE_WIDE),
    Operation(_API, "POST /api/v1/maintenance", A.ADMIN, _STORE_WIDE),
    Operation(_API, "GET /api/v1/alerts", A.AUDIT, _STORE_WIDE),
    Operation(_API, "POST /api/v1/alerts/ack", A.AUDIT, "acknowledging alerts; " + _STORE_WIDE),
    Operation(_CLI, "stateward list", A.READ_OUTPUTS, "filtered like GET /api/v1/states"),
    Operation(_CLI, "stateward show", A.HISTORY),
    Operation(_CLI, "stateward pull", A.READ, "current version or --version N"),
    Operation(_CLI, "stateward history", A.HISTORY),
    Operation(_CLI, "stateward diff", A.HISTORY),
    Operation(_CLI, "stateward rollback", A.ROLLBACK),
    Operation(_CLI, "stateward delete", A.DELETE),
    Operation(_CLI, "stateward restore", A.ADMIN),
    Operation(_CLI, "stateward purge", A.ADMIN),
    Operation(_CLI, "stateward protect", A.ADMIN),
    Operation(_CLI, "stateward allow-next-write", A.ADMIN),
    Operation(_CLI, "stateward locks list", A.HISTORY, "filtered per path"),
    Operation(_CLI, "stateward locks break", A.ADMIN),
    Operation(_CLI, "stateward events", A.AUDIT, "with a PATH: that path; without: store-wide"),
    Operation(_CLI, "stateward gc", A.ADMIN, _STORE_WIDE),
    Operation(_CLI, "stateward token *", A.ADMIN, "credential management; " + _STORE_WIDE),
    Operation(_CLI, "stateward audit *", A.AUDIT, "verify, export, tail, report; " + _STORE_WIDE),
    Operation(_CLI, "stateward state scan", A.HISTORY, "locations and kinds, never values"),
    Operation(_CLI, "stateward state sanitize", A.READ, "the state with secrets redacted"),
    Operation(_CLI, "stateward export", A.READ, "per path; paths without read are skipped"),
    Operation(
        _CLI,
        "stateward import *",
        A.ADMIN,
        "s3, file; per target path: writes history without the lineage/serial guards",
    ),
    Operation(
        _CLI,
        "stateward migrate-store",
        A.ADMIN,
        "storage-level copy of the whole store to another; " + _STORE_WIDE,
    ),
    Operation(_CLI, "stateward keys *", A.ADMIN, "key rotation, rewrap, status; " + _STORE_WIDE),
    Operation(_CLI, "stateward alerts *", A.AUDIT, "list, ack; " + _STORE_WIDE),
)

#: Commands that touch no state and need no action: the operator's own process and config.
NOT_STATE_OPERATIONS: frozenset[str] = frozenset(
    {
        "stateward serve",
        "stateward policy check",
        "stateward tofu *",
        "stateward db *",
        # read-only AWS calls against an S3 backend's bucket; no stateward store is opened
        "stateward s3 audit",
        "stateward s3 bootstrap",
    }
)
