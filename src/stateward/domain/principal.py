"""Who is asking. Every service call takes one, and the service authorizes every call on it.

A principal is the *result* of authentication (a token, a CI OIDC token, a client certificate,
or the operator's own shell for the offline CLI): its roles and path limits are what the policy
decides on. Nothing here is secret; principals are recorded in events and shown in errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    source: str = ""  # client address for HTTP requests, "cli" for the command line
    user_agent: str = ""
    cert_subject: str = ""  # verified client certificate subject CN (mutual TLS)
    roles: tuple[str, ...] = ()  # no roles: every authorization fails (fail closed)
    #: Globs the credential is restricted to; None means the roles' own grants apply.
    paths: tuple[str, ...] | None = None
    #: How the principal authenticated: token, oidc, cert, cli or system.
    kind: str = "token"
    #: Non-secret CI claims (repository, ref, ...) for events and the audit trail.
    claims: tuple[tuple[str, str], ...] = field(default=())


def cli_principal() -> Principal:
    """The offline CLI. Whoever can run it on the data directory can read the token key and
    the database files directly, so it acts with the built-in ``admin`` role."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal(name=f"cli:{user}", source="cli", roles=("admin",), kind="cli")


#: Background maintenance (retention, purge of expired deletes, orphan collection).
SYSTEM = Principal(name="system:maintenance", source="internal", roles=("admin",), kind="system")
