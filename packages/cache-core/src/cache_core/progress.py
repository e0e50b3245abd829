"""Long operations in the log: a pattern invalidation of 100,000 keys or a large warm-up
takes seconds, and an operator watching the log must see it running, not silence.

An operation runs inside :func:`long_operation`; it, and anything it calls (a tier's sweep,
in a plugin), counts what it has done with :func:`advance`. Once the operation has run
:data:`LOG_AFTER` seconds it logs ``long_operation_started``, then
``long_operation_progress`` every :data:`LOG_EVERY` seconds, and ``long_operation_finished``
when it ends (with ``outcome``). A quick operation logs nothing: an event-triggered
invalidation runs on every profile update, and a line each would drown the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("cache_core.progress")

LOG_AFTER = 1.0
"""Seconds an operation runs before it is logged as started."""
LOG_EVERY = 5.0
"""Seconds between its progress lines."""

_CURRENT: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "long_operation", default=None
)


class Progress:
    """One running operation: what it is, how far it has got, whether it was logged."""

    def __init__(self, operation: str, total: int | None, fields: dict[str, Any]) -> None:
        self.operation = operation
        self.total = total
        self.fields = fields
        self.done = 0
        self.started = time.monotonic()
        self.logged = False
        self._timer: asyncio.TimerHandle | None = None

    def _line(self, event: str, **more: Any) -> None:
        extra: dict[str, Any] = {"operation": self.operation, **self.fields, "done": self.done}
        if self.total is not None:
            extra["total"] = self.total
        extra["elapsed_s"] = round(time.monotonic() - self.started, 3)
        log.info(event, extra={**extra, **more})

    def _tick(self, loop: asyncio.AbstractEventLoop, context: contextvars.Context) -> None:
        self._line("long_operation_progress" if self.logged else "long_operation_started")
        self.logged = True
        self._timer = loop.call_later(LOG_EVERY, self._tick, loop, context, context=context)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        # The lines are logged in the operation's context: its request id and trace ids.
        context = contextvars.copy_context()
        self._timer = loop.call_later(LOG_AFTER, self._tick, loop, context, context=context)

    def _end(self, outcome: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.logged:
            self._line("long_operation_finished", outcome=outcome)


@contextlib.contextmanager
def long_operation(operation: str, total: int | None = None, **fields: Any) -> Iterator[Progress]:
    """Run the ``with`` body as ``operation`` (``pattern_invalidation``, ``warm_up``);
    ``total``: how much there is to do, when known; ``fields``: what names it (a pattern,
    never a key). Inside an operation already running, the outer one goes on counting."""
    outer = _CURRENT.get()
    if outer is not None:
        yield outer
        return
    progress = Progress(operation, total, fields)
    progress._arm()
    token = _CURRENT.set(progress)
    outcome = "failed"
    try:
        yield progress
        outcome = "ok"
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        _CURRENT.reset(token)
        progress._end(outcome)


def advance(done: int = 1) -> None:
    """Count ``done`` more units of the running operation (nothing when none runs)."""
    progress = _CURRENT.get()
    if progress is not None:
        progress.done += done
