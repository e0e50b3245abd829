"""glibc malloc settings for the served process, which holds and copies multi-MiB values.

glibc maps an allocation above its mmap threshold (128 KiB at start) on its own and unmaps
it when freed. But the threshold is dynamic: each time such a mapped block is freed, the
threshold rises to that block's size (up to 32 MiB), so after the first 4 MiB value has
gone, every later value up to 4 MiB (its request body, its JSON, its L2 frame, the L1 copy)
is carved from the brk heap and the per-thread arenas instead. Freed in random order and
at random sizes, that heap fragments and is never given back: with random values up to
4 MiB, RSS reached 3.4x ``max_size_mb`` and stayed there while L1 accounted for less than
1x (issue 13, item 16).

Setting the thresholds explicitly turns the dynamic adjustment off: every large buffer is
mapped and unmapped whole, and the heap only holds small objects. The price: each large
buffer is a mmap/munmap pair and fresh pages to fault in, about one more pass over its
bytes (decoding and re-encoding a 1 MiB value alone took 2x as long; a whole HTTP write of
one, with its L2 round trip, no measurable difference).

Only the ``serve`` command calls this: a library must not change its host process's
allocator. An operator's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` or
``GLIBC_TUNABLES`` setting wins.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

from cache_core import serialization
from cache_core.serialization import EXACT_COPY_BELOW

MMAP_THRESHOLD = 128 * 1024
"""Bytes from which an allocation gets a mapping of its own (glibc's starting value)."""
TRIM_THRESHOLD = 256 * 1024
"""Free bytes at the top of the heap above which glibc gives them back (what its dynamic
rule would pair with the threshold above)."""

# From glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_SETTINGS = (
    ("mmap_threshold", _M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
    ("trim_threshold", _M_TRIM_THRESHOLD, TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_"),
)


def _is_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not a POSIX confstr, or not glibc
        return False


def tune_allocator(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Fix glibc malloc's mmap and trim thresholds in this process; return what was set
    (empty off glibc, or where the operator's environment already sets them)."""
    env = os.environ if env is None else env
    if not _is_glibc():
        return {}
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    tunables = env.get("GLIBC_TUNABLES", "")
    applied: dict[str, int] = {}
    for name, param, value, variable in _SETTINGS:
        if variable in env or f"glibc.malloc.{name}" in tunables:
            continue
        if mallopt(param, value) == 1:  # mallopt answers 1 on success, 0 on error
            applied[name] = value
    # Only a threshold set here is known: an operator's may be anything.
    threshold = applied.get("mmap_threshold")
    serialization.large_buffers_mapped = threshold is not None and threshold < EXACT_COPY_BELOW
    return applied
