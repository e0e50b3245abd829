"""Values are JSON, encoded once on write and kept as bytes in every tier; never pickled."""

from __future__ import annotations

from typing import Any

import orjson

from cache_core.errors import InvalidValueError

decode = orjson.loads


EXACT_COPY_BELOW = 256 * 1024
"""With :data:`large_buffers_mapped`, JSON this long or longer is kept as orjson made it."""
large_buffers_mapped = False
"""Set by whoever fixes the C allocator's mmap threshold below :data:`EXACT_COPY_BELOW`
(``caching-agent serve`` does): every large buffer is then a mapping of its own. Left
unset, a library must not assume it: in glibc's heap the slack of orjson's buffers stays
resident (random values up to 4 MiB without the copy: RSS 6x the L1's bound)."""


def encode(value: Any) -> bytes:
    """The compact JSON bytes of ``value``; :class:`InvalidValueError` if it is not JSON."""
    try:
        data = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidValueError(f"value is not JSON-serialisable: {exc}") from None
    if large_buffers_mapped and len(data) >= EXACT_COPY_BELOW:
        # A mapping of its own: its slack is pages never touched, so never resident, and
        # a copy would be one more value-sized buffer per write in flight.
        return data
    # A copy of exactly its length: orjson returns bytes whose allocation is rounded up to
    # a power of two (4-16 KB for a few hundred bytes of JSON) and never shrunk, so an L1
    # full of them would hold many times what it accounts for.
    return bytes(memoryview(data))
