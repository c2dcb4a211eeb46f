"""StateService: the one place where a state operation is checked, stored and recorded.

Transports (HTTP protocol, JSON API, CLI) call only this class. Its operations live in small
modules by concern (``writes``, ``locking``, ``admin``, ``tokens``, ``keys``) over shared
plumbing (``base``).
"""

from __future__ import annotations

from stateward.service.admin import AdminOps
from stateward.service.alerts import AlertOps
from stateward.service.audit import AuditOps
from stateward.service.keys import KeyOps
from stateward.service.locking import LockOps
from stateward.service.secrets import SecretOps
from stateward.service.tokens import TokenOps
from stateward.service.writes import WriteOps


class StateService(WriteOps, LockOps, AdminOps, TokenOps, KeyOps, AuditOps, AlertOps, SecretOps):
    """Every state operation, each taking the calling :class:`~stateward.principal.Principal`."""


__all__ = ["StateService"]
