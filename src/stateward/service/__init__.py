"""The service layer: every state operation goes through :class:`StateService`."""
