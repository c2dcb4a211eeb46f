"""The service layer: plain operation classes over one unit of work, behind the
:class:`~stateward.service.core.StateService` façade. Transports and jobs reach it through the
gate (docs/architecture.md)."""
