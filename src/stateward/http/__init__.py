"""HTTP transports: the ``http`` backend protocol (``backend``), the JSON API (``api``),
metrics and health (``app``). They parse and format; every request is one gate session."""
