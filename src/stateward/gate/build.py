"""Assembling the gate for a store (the composition root of every transport): the service,
and the authenticators of the credentials the transports accept (tokens, CI OIDC tokens and
client certificates, as ``RequestFacts``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stateward.auth.authenticator import Authenticator, RequestFacts
from stateward.config import Settings
from stateward.crypto.providers.base import KeyProviderError
from stateward.crypto.tokens import TokenSecret
from stateward.domain.errors import Unavailable
from stateward.domain.principal import cli_principal
from stateward.gate.gate import Gate
from stateward.service.core import StateService
from stateward.service.factory import build_service, key_beside_data
from stateward.service.startup import check_before_serving
from stateward.storage.engine import MetadataStoreError


def build_gate(service: StateService, authenticator: Authenticator | None = None) -> Gate:
    """The gate over ``service``; ``authenticator`` defaults to one from its settings."""
    auth = authenticator or Authenticator(service.tokens, service.settings)
    return Gate(service, {RequestFacts: auth.authenticate})


def open_gate(settings: Settings) -> Gate:
    """Open (creating if needed) the store of ``settings`` and return its gate. A store or a
    key that cannot be opened is refused as Unavailable, with the reason."""
    try:
        service = build_service(settings)
    except (KeyProviderError, MetadataStoreError) as exc:
        raise Unavailable(str(exc), retry=False) from exc
    return build_gate(service)


@dataclass(frozen=True, slots=True)
class ServeStart:
    """What ``serve`` tells the operator before it accepts requests."""

    #: Key providers keeping their key file inside the data directory.
    keys_inside_data_dir: list[str] = field(default_factory=list)
    #: The secret of ``initial-admin`` on a store's very first start (shown once), else None.
    initial_admin: TokenSecret | None = None


def prepare_to_serve(gate: Gate) -> ServeStart:
    """The checks before the first request (keys, token key, blob store: raise StartupError
    or Unavailable), and the initial admin token of a new store."""
    service = gate.ops
    inside = key_beside_data(service.settings, service.barrier.keys.providers)
    check_before_serving(service)  # loads the token key, after checking where it is
    secret = service.tokens.ensure_initial_admin_token(cli_principal())
    return ServeStart(inside, secret)
