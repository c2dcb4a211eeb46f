"""One audit record: who did what to which state, from where, and how it ended.

Records never hold a state value, a token, a key or a request body: only names, numbers and
one-line reasons. They are hash-chained (``chain.py``): each record's hash covers its canonical
JSON and the previous record's hash, so editing, deleting, inserting or reordering records is
detected by ``stateward audit verify``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["ok", "denied", "failed"]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: float  # unix time
    request_id: str
    principal: str  # e.g. token:ci-prod, oidc:<issuer host>:<sub>, cert:<cn>, cli:root
    principal_kind: str  # token | oidc | cert | cli | system | anonymous
    source: str  # client address, "cli", "internal"
    user_agent: str
    #: The policy action (``read``, ``write``, ``force-unlock`` ...) or, for requests that
    #: never reached one (bad credentials), ``authenticate``.
    action: str
    #: What was called: ``GET /state``, ``POST /api/v1/rollback``, ``cli rollback`` ...
    operation: str
    path: str | None
    outcome: Outcome
    status: int  # the HTTP status (CLI: the same mapping)
    reason: str = ""  # one line for refusals and failures
    lock_id: str | None = None
    serial: int | None = None
    version: int | None = None  # stateward version (seq) read or written
    bytes_in: int = 0
    bytes_out: int = 0
    #: Managed resources in the state written, and in the version it replaced (writes only):
    #: what a mass-destroy alert compares.
    resources: int | None = None
    prev_resources: int | None = None
    #: Non-secret CI claims (repository, ref, workflow ...) for OIDC principals.
    claims: dict[str, str] = field(default_factory=dict)
    # Filled in when stored:
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""

    def canonical(self) -> bytes:
        """The bytes the chain hashes: every field but ``hash``, sorted keys, compact JSON."""
        doc = asdict(self)
        doc.pop("hash")
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
