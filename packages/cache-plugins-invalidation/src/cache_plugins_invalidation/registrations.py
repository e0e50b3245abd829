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
import itertools
import logging
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Any

from cache_core.errors import InvalidKeyError, InvalidValueError, TierUnavailableError
from cache_core.invalidation import InvalidationIndex
from cache_plugins_invalidation.events import TAG_PREFIX, widest

log = logging.getLogger("cache_plugins_invalidation.registrations")

RETRY_AFTER = 0.5
"""Seconds between two tries to apply the queue while the index cannot be reached."""

MAX_PENDING = 10_000
"""Registrations queued at most (while L2 is away they wait): one more is refused."""

MAX_REFUSALS_KEPT = 1024
"""Refused registrations whose error is kept for an ``await`` that has not come yet."""

BATCH = 1000
"""Queued registrations sent to the index in one call (one round trip to Redis) at most."""

DEPENDENCY, SUBSCRIPTION = "dependency", "subscription"
Queued = tuple[int, str, str, str]
"""(sequence number, kind, key or event, dependency or target)."""


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
        check_names: Callable[[Sequence[str], str], None],
    ) -> None:
        self._index = index
        self._check_key = check_key
        self._check_pattern = check_pattern
        self._check_names = check_names
        self._queue: deque[Queued] = deque()
        self._issued = 0
        self.landed_through = 0
        """The sequence number of the last registration the index took or refused."""
        self._refused: dict[int, Exception] = {}
        self._lock = asyncio.Lock()
        self._open = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Registrations queued and not yet in the index."""
        return len(self._queue)

    def register_event_subscription(self, event: str, key_or_pattern: str) -> Registration:
        """From now on, ``event`` also invalidates ``key_or_pattern`` (glob, key or ``tag:X``).
        Bad input raises here, before anything is queued."""
        self._check_names([event], "event")
        if not isinstance(key_or_pattern, str) or not key_or_pattern.removeprefix(TAG_PREFIX):
            raise InvalidKeyError("subscription target must be a non-empty string")
        if key_or_pattern.startswith(TAG_PREFIX):
            self._check_names([key_or_pattern.removeprefix(TAG_PREFIX)], "tag")
        else:
            # Fired without context each placeholder is a `*`: the caller's limits hold then.
            self._check_pattern(widest(key_or_pattern))
        return self._enqueue(SUBSCRIPTION, str(event), key_or_pattern)

    def register_dependency(self, dependent: str, source: str) -> Registration:
        """Invalidating ``source`` from now on invalidates ``dependent`` too."""
        self._check_key(dependent)
        self._check_key(source)
        return self._enqueue(DEPENDENCY, dependent, source)

    def _enqueue(self, kind: str, first: str, second: str) -> Registration:
        if self._closed:
            raise RuntimeError("the agent is closed: a registration would never be applied")
        if len(self._queue) >= MAX_PENDING:
            raise InvalidValueError(
                f"{MAX_PENDING} registrations are queued and not yet applied (is L2 away?); "
                "await some before adding more"
            )
        self._issued += 1
        self._queue.append((self._issued, kind, first, second))
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
        deferred = False
        while self._queue and self._open:
            try:
                await self.land()
            except TierUnavailableError as exc:
                if not deferred:  # once per outage, not twice a second
                    log.warning(
                        "registrations_deferred",
                        extra={"pending": len(self._queue), "error": str(exc)},
                    )
                deferred = True
                await asyncio.sleep(RETRY_AFTER)
        if deferred:
            log.info("registrations_applied", extra={"pending": len(self._queue)})

    async def land(self) -> None:
        """Apply every queued registration, up to :data:`BATCH` in one call of the index.
        Raises TierUnavailableError when the index cannot be reached (the rest stays
        queued: each is idempotent, so one interrupted is applied again); one the index
        refuses for any other reason is dropped and logged, its error kept for whoever
        awaits it, so it never blocks the operations behind it (a batch refused is applied
        again one by one, to find which)."""
        if not self._queue:
            return
        queue = self._queue
        async with self._lock:
            while queue:
                batch = list(itertools.islice(queue, BATCH))
                try:
                    await self._apply(batch)
                except TierUnavailableError:
                    raise
                except Exception:  # (never for one alone: _apply_one keeps its refusal)
                    for item in batch:
                        await self._apply_one(item)
                        queue.popleft()
                        self.landed_through = item[0]
                    continue
                for _ in batch:
                    queue.popleft()
                self.landed_through = batch[-1][0]

    async def _apply(self, batch: list[Queued]) -> None:
        """``batch`` to the index: in one call where it takes many at once (``register``),
        else one by one; one alone, refused for what it holds, is recorded as refused."""
        register = getattr(self._index, "register", None)
        if register is None or len(batch) == 1:
            for item in batch:
                await self._apply_one(item)
            return
        dependencies = [(a, b) for _, kind, a, b in batch if kind == DEPENDENCY]
        subscriptions = [(a, b) for _, kind, a, b in batch if kind == SUBSCRIPTION]
        await register(dependencies, subscriptions)

    async def _apply_one(self, item: Queued) -> None:
        seq, kind, first, second = item
        try:
            if kind == DEPENDENCY:
                await self._index.add_dependency(first, second)
            else:
                await self._index.subscribe(first, second)
        except TierUnavailableError:
            raise
        except Exception as exc:
            log.error("registration_refused", extra={"error": str(exc)})
            if len(self._refused) >= MAX_REFUSALS_KEPT:
                del self._refused[next(iter(self._refused))]
            self._refused[seq] = exc

    async def until(self, seq: int) -> None:
        if not self._open and self.landed_through < seq:
            raise RuntimeError(
                "the agent is not started" if not self._closed else "the agent is closed"
            )
        while self.landed_through < seq:
            await self.land()
        refused = self._refused.pop(seq, None)
        if refused is not None:
            raise refused

    async def start(self) -> None:
        """Once the index is open: apply what was registered before."""
        self._open = True
        self._kick()

    async def close(self, timeout: float) -> None:
        """Before the index closes: apply what is queued, within ``timeout`` per thousand
        registrations (at least ``timeout``); what the index could not take is logged."""
        self._open, self._closed = False, True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self._queue:
            return
        budget = timeout * max(1.0, len(self._queue) / 1000)
        try:
            await asyncio.wait_for(self.land(), budget)
        except (TierUnavailableError, TimeoutError) as exc:
            log.error(
                "registrations_lost",
                extra={"count": len(self._queue), "error": str(exc) or type(exc).__name__},
            )
