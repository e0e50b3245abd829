"""Runtime registrations: event subscriptions and key dependencies added while serving.

The description calls them without ``await``
(``agent.invalidation_manager.register_dependency("content:rec:123", "user:123:profile")``),
so a registration is queued at once and returned as a :class:`Registration`, which is not
a coroutine: left alone it warns about nothing and is still applied. The queue goes to the
index in order, in the background, and the agent waits for it before any operation that
could depend on it (a write, a delete, an invalidation), so on this instance a
registration holds from the moment it returns. ``await`` it to wait until the index
(shared by every instance when it lives in Redis) holds it, or to see its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from cache_core.errors import CacheError, InvalidKeyError, UnknownNameError
from cache_core.invalidation import TAG_PREFIX, InvalidationIndex

log = logging.getLogger("cache_core.registrations")

RETRY_AFTER = 0.5
"""Seconds between two tries to apply the queue while the index cannot be reached."""

Step = Callable[[], Awaitable[None]]


class Registration:
    """One queued registration; ``await`` it to wait until the index holds it."""

    __slots__ = ("_manager", "_seq")

    def __init__(self, manager: InvalidationManager, seq: int) -> None:
        self._manager = manager
        self._seq = seq

    @property
    def done(self) -> bool:
        """Whether the index holds it."""
        return self._manager.landed_through >= self._seq

    def __await__(self) -> Generator[Any, None, None]:
        return self._manager.until(self._seq).__await__()


class InvalidationManager:
    """Runtime registrations the description names: event subscriptions and dependencies."""

    def __init__(
        self,
        index: InvalidationIndex,
        *,
        check_key: Callable[[object], str],
        check_pattern: Callable[[object], str],
    ) -> None:
        self._index = index
        self._check_key = check_key
        self._check_pattern = check_pattern
        self._queue: deque[tuple[int, Step]] = deque()
        self._issued = 0
        self.landed_through = 0
        """The sequence number of the last registration the index holds."""
        self._lock = asyncio.Lock()
        self._open = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Registrations queued and not yet in the index."""
        return len(self._queue)

    def register_event_subscription(self, event: str, key_or_pattern: str) -> Registration:
        """From now on, ``event`` also invalidates ``key_or_pattern`` (glob, key or ``tag:X``).
        Bad input raises here, before anything is queued."""
        if not isinstance(event, str) or not event:
            raise UnknownNameError("event must be a non-empty name")
        if not isinstance(key_or_pattern, str) or not key_or_pattern.removeprefix(TAG_PREFIX):
            raise InvalidKeyError("subscription target must be a non-empty string")
        if not key_or_pattern.startswith(TAG_PREFIX):
            self._check_pattern(key_or_pattern)
        name, target, index = str(event), key_or_pattern, self._index
        return self._enqueue(lambda: index.subscribe(name, target))

    def register_dependency(self, dependent: str, source: str) -> Registration:
        """Invalidating ``source`` from now on invalidates ``dependent`` too."""
        self._check_key(dependent)
        self._check_key(source)
        index = self._index
        return self._enqueue(lambda: index.add_dependency(dependent, source))

    def _enqueue(self, step: Step) -> Registration:
        self._issued += 1
        self._queue.append((self._issued, step))
        self._kick()
        return Registration(self, self._issued)

    def _kick(self) -> None:
        """Apply the queue in the background (without a running loop, or before the agent
        starts, it waits for :meth:`start` or the next operation)."""
        if not self._open or (self._task is not None and not self._task.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self._apply_until_landed(), name="registrations")

    async def _apply_until_landed(self) -> None:
        while self._queue and self._open:
            try:
                await self.land()
            except Exception as exc:  # retried: never lost to a dead task
                log.warning(
                    "registration_deferred",
                    extra={"pending": len(self._queue), "error": str(exc)},
                )
                await asyncio.sleep(RETRY_AFTER)

    async def land(self) -> None:
        """Apply every queued registration, in order; raises (the rest still queued) when
        the index refuses one. Each is idempotent, so one interrupted is applied again."""
        if not self._queue:
            return
        async with self._lock:
            while self._queue:
                seq, step = self._queue[0]
                await step()
                self._queue.popleft()
                self.landed_through = seq

    async def until(self, seq: int) -> None:
        while self.landed_through < seq:
            await self.land()

    async def start(self) -> None:
        """Once the index is open: apply what was registered before."""
        self._open = True
        self._kick()

    async def close(self, timeout: float) -> None:
        """Before the index closes: apply what is queued, within ``timeout``; what the
        index could not take is logged as lost."""
        self._open = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self._queue:
            return
        try:
            await asyncio.wait_for(self.land(), timeout)
        except (CacheError, TimeoutError) as exc:
            log.error("registrations_lost", extra={"count": len(self._queue), "error": str(exc)})
