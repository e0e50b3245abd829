"""What ``serve --workers N`` shares besides a port: an L2 engine its parent starts once.

An L2 tier whose settings ask for a server the process runs itself (the Redis plugin's
``redis.url: embedded``) would, in N workers, start N servers on one data directory. A
plugin offers the one engine they share through the ``cache_shared_engine`` hook
(:mod:`cache_core.hookspecs`) as a :class:`SharedEngine`; the server knows no plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable


@runtime_checkable
class SharedEngine(Protocol):
    """An engine one process runs for others. The parent of ``serve --workers N`` calls
    :meth:`start` once before starting any worker, starts each worker with
    :meth:`worker_env` added to its environment, and calls :meth:`stop` once every worker
    has exited (also when a start failed part-way)."""

    async def start(self) -> None:
        """Start the engine and return once it answers. Raise a
        :class:`~cache_core.errors.CacheError` whose message says in one line why it
        cannot (the parent prints it and exits)."""
        ...

    async def stop(self) -> None:
        """Stop the engine, letting it save what it keeps; nothing when it never started."""
        ...

    def worker_env(self) -> Mapping[str, str]:
        """After :meth:`start`: the environment variables that make a worker's L2 tier
        connect to this engine rather than start one of its own (they override the config
        file, as any environment override does)."""
        ...
