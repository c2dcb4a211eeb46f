"""StateService: the one place where a state operation is checked, stored and recorded.

Transports (HTTP protocol, JSON API, CLI) call only this class. Its operations live in small
modules by concern (``writes``, ``locking``, ``admin``, ``tokens``, ``keys``, ``imports``) over
shared plumbing (``base``).
"""

from __future__ import annotations

from stateward.service.admin import AdminOps
from stateward.service.alerts import AlertOps
from stateward.service.audit import AuditOps
from stateward.service.imports import ImportOps
from stateward.service.keys import KeyOps
from stateward.service.locking import LockOps
from stateward.service.secrets import SecretOps
from stateward.service.tokens import TokenOps
from stateward.service.writes import WriteOps


# ImportOps builds on WriteOps and AuditOps, so it comes before them (method resolution order).
class StateService(
    ImportOps, WriteOps, LockOps, AdminOps, TokenOps, KeyOps, AuditOps, AlertOps, SecretOps
):
    """Every state operation, each taking the calling :class:`~stateward.principal.Principal`."""


__all__ = ["StateService"]
