"""The audit trail: hash-chained records of every request and command (``record``, ``chain``,
``context``), and where they are shipped (``sinks``)."""
