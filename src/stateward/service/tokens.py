"""API tokens: create, list, revoke, and verify a presented secret.

Secrets are returned once by :meth:`TokenOps.create_token` and never stored, logged, recorded
or put into an exception; the database holds only their keyed hash (``crypto/tokens.py``).
Every request presenting a token is verified through :meth:`TokenOps.authenticate_token`
(the authenticator, ``auth/authenticator.py``, holds this class as its token verifier).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from stateward.crypto import tokens as crypto
from stateward.domain import globs
from stateward.domain.actions import Action
from stateward.domain.errors import BadRequest, Conflict, NotFound, Unavailable
from stateward.domain.policy_model import ROLE_NAME_RE
from stateward.domain.principal import Principal
from stateward.service.deps import Operations
from stateward.storage import tokens_repo
from stateward.storage.errors import DuplicateRow
from stateward.storage.records import TokenRecord
from stateward.storage.transactions import Connection

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_ROLES = 32
MAX_PATHS = 64
#: ``last_used_at`` is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = 60.0
INITIAL_ADMIN = "initial-admin"


@dataclass(frozen=True, slots=True)
class TokenView:
    """A token's metadata. Holds neither the secret nor its hash."""

    name: str
    roles: tuple[str, ...]
    paths: tuple[str, ...]  # empty: unrestricted (the roles' own grants apply)
    created_at: float
    created_by: str
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(roles=list(self.roles), paths=list(self.paths))
        return d


def validate_token_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise BadRequest("token name must be 1-64 characters of A-Z a-z 0-9 . _ -")
    if name.startswith(crypto.PREFIX):
        # Someone pasting a secret where a name goes must not get it stored or echoed.
        raise BadRequest(f"token names may not start with {crypto.PREFIX!r} (that is a secret)")
    return name


def validate_roles(roles: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    if not roles:
        raise BadRequest("a token needs at least one role (--role)")
    if len(roles) > MAX_ROLES:
        raise BadRequest(f"a token may have at most {MAX_ROLES} roles")
    for role in roles:
        if not ROLE_NAME_RE.fullmatch(role):
            raise BadRequest(f"invalid role {role[:64]!r}: use 1-64 characters of a-z 0-9 -")
    return tuple(dict.fromkeys(roles))


def validate_glob(glob: str) -> str:
    """A token's path restriction: the same glob rules as policy grants."""
    try:
        return globs.validate_glob(glob)
    except ValueError as exc:
        raise BadRequest(f"invalid path glob: {exc}") from None


def token_view(r: TokenRecord) -> TokenView:
    return TokenView(
        name=r.name,
        roles=tuple(json.loads(r.roles)),
        paths=tuple(json.loads(r.paths)),
        created_at=r.created_at,
        created_by=r.created_by,
        expires_at=r.expires_at,
        revoked_at=r.revoked_at,
        last_used_at=r.last_used_at,
    )


def _describe(view: TokenView) -> str:
    paths = ",".join(view.paths) or "*unrestricted*"
    expires = "never"
    if view.expires_at is not None:
        expires = dt.datetime.fromtimestamp(view.expires_at, dt.UTC).isoformat(timespec="seconds")
    return f"name={view.name} roles={','.join(view.roles)} paths={paths} expires={expires}"


class TokenOps(Operations):
    _token_key: crypto.TokenKey | None = None

    @property
    def token_key_path(self) -> Path:
        return self.settings.token_key_file or self.settings.data_dir / "token.key"

    def load_token_key(self) -> crypto.TokenKey:
        """The server's token key, created on first need. ``serve`` should call this at start
        so that a damaged or exposed key file stops it before it accepts requests."""
        if self._token_key is None:
            if self.settings.token_key_file is None:  # the default lives in the data dir,
                self.settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # made here
            try:
                self._token_key = crypto.load_or_create_key(self.token_key_path)
            except crypto.TokenKeyError as exc:
                raise Unavailable(str(exc)) from exc
        return self._token_key

    def create_token(
        self,
        who: Principal,
        name: str,
        roles: list[str] | tuple[str, ...],
        paths: list[str] | tuple[str, ...] = (),
        expires_at: float | None = None,
    ) -> tuple[TokenView, crypto.TokenSecret]:
        """Create a token; the secret is returned here and never again."""
        self.authz.authorize_store(who, Action.ADMIN)
        validate_token_name(name)
        role_list = validate_roles(roles)
        if len(paths) > MAX_PATHS:
            raise BadRequest(f"a token may be restricted to at most {MAX_PATHS} path globs")
        path_list = tuple(dict.fromkeys(validate_glob(p) for p in paths))
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise BadRequest("token expiry is not in the future")
        key = self.load_token_key()
        secret = crypto.new_token()
        view = TokenView(name, role_list, path_list, now, who.name, expires_at, None, None)
        try:
            with self.uow.write() as conn:
                _refuse_existing(tokens_repo.get_by_name(conn, name))
                self._insert_token(conn, who, view, key.digest(secret))
        except DuplicateRow:
            # A concurrent create of the same name (the row check raced) — never the secret.
            raise Conflict(f"a token named {name} already exists") from None
        return view, secret

    def _insert_token(
        self, conn: Connection, who: Principal, view: TokenView, digest: str, note: str = ""
    ) -> None:
        """Store a new token row (only the keyed hash of its secret) and record its creation."""
        tokens_repo.insert_token(
            conn,
            name=view.name,
            hash=digest,
            roles=json.dumps(list(view.roles)),
            paths=json.dumps(list(view.paths)),
            created_at=view.created_at,
            created_by=view.created_by,
            expires_at=view.expires_at,
        )
        self.event(conn, who, "token-create", None, _describe(view) + note)

    def list_tokens(self, who: Principal) -> list[TokenView]:
        self.authz.authorize_store(who, Action.ADMIN)
        with self.uow.read() as conn:
            return [token_view(r) for r in tokens_repo.list_tokens(conn)]

    def revoke_token(self, who: Principal, name: str) -> TokenView:
        """Revoke ``name`` (effective on its next use). Revoking twice changes nothing."""
        self.authz.authorize_store(who, Action.ADMIN)
        validate_token_name(name)
        with self.uow.write() as conn:
            if tokens_repo.get_by_name(conn, name) is None:
                raise NotFound(f"no token named {name}")
            if tokens_repo.revoke(conn, name, self.clock()):
                self.event(conn, who, "token-revoke", None, f"name={name}")
            row = tokens_repo.get_by_name(conn, name)
        assert row is not None
        return token_view(row)

    def authenticate_token(self, secret: str, now: float | None = None) -> TokenView | None:
        """The token a presented secret belongs to, or None if unknown, revoked or expired.

        Malformed input is refused before the key or the database is touched. The lookup is
        by keyed hash, and the stored hash is compared again in constant time.
        """
        if not crypto.is_well_formed(secret):
            return None
        now = self.clock() if now is None else now
        digest = self.load_token_key().digest(secret)
        with self.uow.read() as conn:
            row = tokens_repo.get_by_hash(conn, digest)
        if row is None or not hmac.compare_digest(str(row.hash), digest):
            return None
        view = token_view(row)
        if view.status(now) != "active":
            return None
        last = view.last_used_at
        if last is None or now - last >= LAST_USED_RESOLUTION:
            with self.uow.write() as conn:
                tokens_repo.touch(conn, row.id, now, LAST_USED_RESOLUTION)
            view = replace(view, last_used_at=now)
        return view

    def record_auth_block(self, source: str, key: str, seconds: float, strike: int) -> None:
        """Record that the throttle blocked an address or token name (no principal: the
        requester is not authenticated). ``key`` holds no secret: names only."""
        who = Principal(name="unauthenticated", source=source, kind="anonymous")
        detail = f"blocked {key[:160]} for {seconds:.0f}s (strike {strike}) from {source[:64]}"
        with self.uow.write() as conn:
            self.event(conn, who, "auth-throttled", None, detail)

    def ensure_initial_admin_token(self, who: Principal) -> crypto.TokenSecret | None:
        """On a data dir without any token, create ``initial-admin`` and return its secret.

        Returns None if any token exists or ever existed (revoked ones count), so the secret is
        shown on the very first start only.
        """
        with self.uow.read() as conn:
            if tokens_repo.count_tokens(conn):
                return None
        key = self.load_token_key()
        secret = crypto.new_token()
        now = self.clock()
        view = TokenView(INITIAL_ADMIN, ("admin",), (), now, who.name, None, None, None)
        try:
            with self.uow.write() as conn:
                if tokens_repo.count_tokens(conn):  # re-checked under the write lock
                    return None
                self._insert_token(conn, who, view, key.digest(secret), " (initial)")
        except DuplicateRow:
            return None  # another replica created it first
        return secret


def _refuse_existing(row: TokenRecord | None) -> None:
    if row is None:
        return
    if row.revoked_at is not None:
        raise Conflict(
            f"a revoked token named {row.name} exists; names are never reused, pick another"
        )
    raise Conflict(f"a token named {row.name} already exists; revoke it or pick another name")
