"""The served process's cyclic garbage collector: what startup built is frozen out of it,
and the young generation is collected less often.

A full collection walks every object the collector tracks, and in a started service most
of them are what startup made and keeps for good (modules, the agent and its plugins, the
aiohttp app, OpenTelemetry). Under write load the objects of requests in flight outlive
the young collections, so full collections come often: with ``POST /cache`` write_through
over 32 connections, 8 in 4 s, 58 ms each on average and 108 ms at worst, 12% of the
process's time and the POSTs' p99 (91 ms; issue 16). Frozen (``gc.freeze``), the startup
objects are never walked again: the same load had its full collections take 0.5 ms at
worst, and its p99 was 11 ms.

The price: a reference cycle among frozen objects that becomes garbage later is never
collected. Startup's own garbage is collected just before freezing, so what stays is what
the service keeps anyway.

The young generation is collected once tracked objects made exceed those freed by
:data:`YOUNG_THRESHOLD`. At CPython's 700, the objects of the requests in flight alone
(32 connections' worth) kept crossing it: under the same write_through load, 300 young
collections a second (plus their middle-generation ones), 6% of the process's time, each
promoting what was in flight. At 10,000 that load ran none in 4 s, and write_through and
write_back served 13-18% more requests a second in paired runs. Garbage in cycles is
still collected, once 10,000 such objects have piled up rather than 700.

Only the ``serve`` command calls this: a library must not change its host process's
collector.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
"""Net tracked allocations between young collections (CPython's default: 700)."""


def freeze_startup_heap() -> int:
    """Collect what startup left behind, freeze every object still tracked, and collect
    the young generation at :data:`YOUNG_THRESHOLD`; return how many objects are frozen."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return gc.get_freeze_count()
