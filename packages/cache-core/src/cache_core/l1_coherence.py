"""Whether L1 may answer, and other instances' changes applied to it.

With an L2 that several instances share, L1 may serve only while L2's change notices
flow (else another instance's write could leave a stale copy here): :class:`L1Coherence`
is the listener L2 reports to, and :attr:`L1Coherence.view` is what reads are served
from: L1 itself, or a tier that holds nothing while L1 may be stale. While L2 is out of
reach (the breaker open) L1 serves anyway: nobody can change L2 through it, and L1
answering is the point of having it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from cache_core.globs import is_literal, matcher
from cache_core.tiers.base import LocalTier
from cache_core.tiers.memory import BypassTier

log = logging.getLogger("cache_core.agent")

SWEEP_CHUNK = 4096
"""Keys of L1 a pattern sweep matches between two yields to the event loop."""


async def sweep(l1: LocalTier, pattern: str) -> list[str]:
    """``l1.delete_matching(pattern)``, but over a large L1 in steps of :data:`SWEEP_CHUNK`
    keys, yielding to the loop between them: one invalidation must not stop every other
    request while it walks a million keys."""
    keys = getattr(l1, "keys", None)
    if len(l1) <= SWEEP_CHUNK or keys is None or is_literal(pattern):
        return l1.delete_matching(pattern)
    match = matcher(pattern)
    delete = l1.delete
    removed: list[str] = []
    snapshot: list[str] = keys()
    for start in range(0, len(snapshot), SWEEP_CHUNK):
        if start:
            await asyncio.sleep(0)
        removed += [
            key for key in snapshot[start : start + SWEEP_CHUNK] if match(key) and delete(key)
        ]
    return removed


class L1Coherence:
    """The coherence listener an L2 tier reports other instances' changes to."""

    def __init__(self, l1: LocalTier, l2_open: Callable[[], bool]) -> None:
        """``l2_open``: whether L2's breaker stands open. L1 is coherent until
        :meth:`shared` says L2 is shared (an L2 no other instance shares cannot make L1
        stale behind this one's back)."""
        self.l1 = l1
        self._l2_open = l2_open
        self.coherent = True
        self.seq = 0
        """Bumped by every notice: a read that saw it move must not promote what it read."""
        self.view: LocalTier = l1
        self.sweeps: set[asyncio.Task[list[str]]] = set()
        """Sweeps of L1 started by other instances' pattern notices, still running."""
        self.on_view_change: Callable[[LocalTier], None] = lambda _: None
        self.on_keys_changed: Callable[[Sequence[str]], None] = lambda _: None
        """Told the keys of each keys notice (the write buffers contest their own writes)."""
        self.on_restored: Callable[[], None] = lambda: None
        """Told when notices flow again after a stop (the buffers contest every write:
        the notices missed meanwhile may have named any)."""
        self.refresh()

    def shared(self) -> None:
        """L2 reports other instances' changes: L1 waits for its notices to flow."""
        self.coherent = False
        self.refresh()

    def refresh(self) -> None:
        """Serve L1 while it is coherent or while L2 is out of reach; else bypass it."""
        serve = self.coherent or self._l2_open()
        if serve and self.view is not self.l1:
            self.view = self.l1
        elif not serve and self.view is self.l1:
            self.view = BypassTier(self.l1)
        else:
            return
        self.on_view_change(self.view)

    def keys_changed(self, keys: Sequence[str]) -> None:
        self.seq += 1
        for key in keys:
            self.l1.delete(key)
        if keys:
            self.on_keys_changed(keys)

    def pattern_changed(self, pattern: str) -> None:
        self.seq += 1
        if len(self.l1) <= SWEEP_CHUNK:
            self.l1.delete_matching(pattern)
            return
        # A large L1 is swept in steps, between which the loop serves others.
        task = asyncio.get_running_loop().create_task(sweep(self.l1, pattern))
        self.sweeps.add(task)
        task.add_done_callback(self.sweeps.discard)

    def lost(self) -> None:
        self.seq += 1
        self.coherent = False
        self.refresh()
        log.warning("l1_bypassed", extra={"detail": "coherence notices stopped: reads go to L2"})

    def restored(self) -> None:
        self.seq += 1
        # Whatever L1 took in while notices were not flowing may be stale: start empty.
        self.l1.clear()
        self.on_restored()
        self.coherent = True
        self.refresh()
        log.info("l1_serving", extra={"detail": "coherence notices flowing"})

    async def close(self) -> None:
        for task in list(self.sweeps):
            task.cancel()  # nothing to finish: L1 goes with the agent
            with contextlib.suppress(asyncio.CancelledError):
                await task
