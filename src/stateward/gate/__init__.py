"""The gate: the one door into the service for every transport and job (``gate/gate.py``)."""

from stateward.gate.build import build_gate
from stateward.gate.gate import AsyncSession, Authenticate, Caller, Gate, Session

__all__ = ["AsyncSession", "Authenticate", "Caller", "Gate", "Session", "build_gate"]
