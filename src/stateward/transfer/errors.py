"""What can go wrong moving states in and out, as one-line reasons the CLI prints."""

from __future__ import annotations


class TransferError(Exception):
    """A refusal or failure of an import or export (one line, never content or a secret)."""


class SourceError(TransferError):
    """Reading the source failed (one line: operation, object, S3 error code)."""


class TooLargeSource(SourceError):
    """An object (version) is larger than ``max_body_bytes``: skipped, not read."""
