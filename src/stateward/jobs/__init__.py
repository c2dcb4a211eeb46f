"""Background drivers: the maintenance loop, the audit followers and their sinks, the alert
engine and the secret scanner. Like transports they sit above the service and drive it."""
