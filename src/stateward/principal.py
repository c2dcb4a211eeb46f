"""Who is asking. Every service call takes one; access control (a later issue) fills it in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    source: str = ""  # remote address for HTTP requests, "cli" for the command line
    user_agent: str = ""
    cert_subject: str = ""  # verified client certificate subject CN (mutual TLS)


#: The principal for loopback HTTP clients until authentication exists.
LOCAL = Principal(name="local")


def cli_principal() -> Principal:
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal(name=f"cli:{user}", source="cli")
