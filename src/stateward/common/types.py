"""Type aliases shared across layers."""

from __future__ import annotations

from typing import TypeAlias

#: A request or state body. Large uploads are received into a preallocated ``bytearray`` and
#: passed down without copying (hashing, parsing and compression all accept buffers).
Body: TypeAlias = bytes | bytearray
