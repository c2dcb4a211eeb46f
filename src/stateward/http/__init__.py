"""HTTP transports: they parse and format, and call only the service."""
