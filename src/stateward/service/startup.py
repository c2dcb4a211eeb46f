"""Checks ``serve`` makes before accepting a request: that this replica's keys are the store's.

Replicas sharing one store (PostgreSQL + a bucket) must share every key: a replica that made
itself a fresh key file would encrypt states no other replica can read — and lose them with
its disk — and a replica with another token key would refuse every token the others accept.
Both are easy mistakes (the defaults create keys in the data directory on first start), so
they stop the server, with the fix in the message, instead of surfacing as sporadic failures
behind a load balancer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stateward.crypto.barrier import BlobCorrupt, parse_header
from stateward.crypto.keyring import context_for
from stateward.crypto.providers.base import KeyDenied, KeyInvalid
from stateward.crypto.providers.local import KeyfileProvider, PassphraseProvider
from stateward.domain.errors import ServiceError
from stateward.service.versions import store_errors
from stateward.storage import info_repo, keys_repo
from stateward.storage.s3 import S3BlobStore

if TYPE_CHECKING:
    from stateward.service.core import StateService

#: ``schema_info`` row holding HMAC(token key, this label): tells keys apart, reveals nothing.
TOKEN_KEY_CHECK = "token_key_check"  # noqa: S105 - a row name
_LABEL = "stateward token key check"
#: Stored data keys tried per key version (one that unwraps is enough).
SAMPLES = 5
log = logging.getLogger("stateward")


class StartupError(ServiceError):
    """This replica must not serve (the message says what to fix)."""

    status = 503


def check_before_serving(service: StateService) -> None:
    """Raise :class:`StartupError` (or the store's :class:`Unavailable`) if this replica's
    keys or blob store are not the ones the shared store needs."""
    if service.settings.database_url is not None:
        _keys_outside_data_dir(service)
    _token_key_matches(service)
    with store_errors():
        _local_keys_open_stored_states(service)
        blobs = service.barrier.blobs
        if isinstance(blobs, S3BlobStore):
            blobs.check()


def _keys_outside_data_dir(service: StateService) -> None:
    settings = service.settings
    data = settings.data_dir.resolve()
    if settings.token_key_file is None or settings.token_key_file.resolve().is_relative_to(data):
        raise StartupError(
            "with database_url, every replica must use the same token key: set token_key_file "
            "to a file outside the data directory, the same on every replica "
            "(docs/replicas.md)"
        )
    for p in service.barrier.keys.providers.values():
        if isinstance(p, KeyfileProvider) and p.path.resolve().is_relative_to(data):
            raise StartupError(
                f"with database_url, every replica must use the same keys: key provider "
                f"{p.name!r} keeps its key file in the data directory; set its path to a file "
                "outside it (the same on every replica) or use a KMS (docs/replicas.md)"
            )


def _token_key_matches(service: StateService) -> None:
    check = service.tokens.load_token_key().digest(_LABEL)
    with service.uow.write() as conn:
        stored = info_repo.get(conn, TOKEN_KEY_CHECK)
        if stored is None:
            info_repo.put_new(conn, TOKEN_KEY_CHECK, check)
            return
    if stored != check:  # a fingerprint of a key, not a secret: == is fine
        raise StartupError(
            f"the token key file {service.tokens.token_key_path} is not the key this store's "
            "tokens were created with (another replica's key file?): copy the key file from a "
            "replica that works. Replacing the key on purpose invalidates every token "
            "(docs/replicas.md says how)."
        )


def _local_keys_open_stored_states(service: StateService) -> None:
    """A key file or passphrase of this replica must unwrap what the store holds: a stored
    data key of each provider and key version is unwrapped (blob headers read, no state is
    decrypted). Key files number their versions 1, 2, … so a fresh file would pass any check
    by version name alone."""
    local = {
        name: p
        for name, p in service.barrier.keys.providers.items()
        if isinstance(p, KeyfileProvider | PassphraseProvider)
    }
    if not local:
        return
    with service.uow.read() as conn:
        samples = keys_repo.samples(conn, list(local), SAMPLES)
    for (name, version), rows in samples.items():
        provider = local[name]
        verdict = _try_unwrap(service, provider, rows)
        if verdict is False:
            where = f" in {provider.path}" if isinstance(provider, KeyfileProvider) else ""
            raise StartupError(
                f"key provider {name!r}: key version {version}{where} does not open the "
                "data keys stored under it (a different or new key than the other "
                "replicas'?); restore the key the store was encrypted with"
            )
        if verdict is None:
            log.warning(
                "key provider %r: no readable blob under key version %s to check the key "
                "against (%d missing or damaged)",
                name,
                version,
                len(rows),
            )


def _try_unwrap(
    service: StateService,
    provider: KeyfileProvider | PassphraseProvider,
    rows: Sequence[tuple[str, str]],
) -> bool | None:
    """True once one sample's data key unwraps; False if samples were readable and none
    unwrapped; None if none could be read (missing or damaged blobs are not the key's fault:
    reading those versions fails on its own)."""
    readable = False
    for blob_key, path in rows:
        try:
            _ref, wrapped, _ = parse_header(service.barrier.blobs.get(blob_key))
        except (FileNotFoundError, BlobCorrupt):
            continue
        readable = True
        try:
            provider.unwrap(wrapped, context_for(path))
        except (KeyDenied, KeyInvalid):
            continue
        return True
    return False if readable else None
