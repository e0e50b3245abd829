"""Opening the agent's parts in order, and closing what opened when one fails.

A start that fails part-way leaves no agent to close (the caller's ``async with`` never
entered, the app's cleanup context never yielded): whatever it had opened (an L2 pool, the
write-back flusher, a recorder's exporter) must close before the error goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

Step = Callable[[], Awaitable[object]]

log = logging.getLogger("cache_core.agent")


async def open_in_order(parts: Sequence[tuple[Step, Step]], *, undo_first: Step) -> None:
    """Run each part's start in order; should one raise, run the closes of those that
    started in reverse (each whatever the others do), then ``undo_first``, and re-raise."""
    opened: list[Step] = [undo_first]
    try:
        for start, close in parts:
            await start()
            opened.append(close)
    except BaseException:
        for close in reversed(opened):
            try:
                await close()
            except Exception as exc:  # the start's own error is the one to report
                log.warning("close_after_failed_start", extra={"error": repr(exc)})
        raise
