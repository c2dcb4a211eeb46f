"""Moving states in and out of stateward: reading an S3 backend's bucket (``s3source``),
planning which key becomes which path (``planner``), and writing exports to a directory or an
S3 prefix (``export``). Adapters to the outside world: they import the domain, never the
service; the commands hand what they read to the service through the gate."""

from stateward.transfer.errors import SourceError, TooLargeSource, TransferError

__all__ = ["SourceError", "TooLargeSource", "TransferError"]
