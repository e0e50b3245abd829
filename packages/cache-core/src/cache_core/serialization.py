"""Values are JSON, encoded once on write and kept as bytes in every tier; never pickled."""

from __future__ import annotations

from typing import Any

import orjson

from cache_core.errors import InvalidValueError

decode = orjson.loads


EXACT_COPY_BELOW = 256 * 1024
"""JSON longer than this is kept as orjson returned it, not copied."""


def encode(value: Any) -> bytes:
    """The compact JSON bytes of ``value``; :class:`InvalidValueError` if it is not JSON."""
    try:
        data = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidValueError(f"value is not JSON-serialisable: {exc}") from None
    if len(data) >= EXACT_COPY_BELOW:
        # A large allocation is a mapping of its own (``serve`` fixes glibc's mmap
        # threshold at 128 KiB): its slack is pages never touched, so never resident, and
        # a copy would be one more value-sized buffer per write in flight.
        return data
    # A copy of exactly its length: orjson returns bytes whose allocation is rounded up to
    # a power of two (4-16 KB for a few hundred bytes of JSON) and never shrunk, so an L1
    # full of them would hold many times what it accounts for.
    return bytes(memoryview(data))
