"""``agent.lock(name)``: a lock across every instance sharing L2 (cashews' ``cache.lock``,
aiocache's RedLock), with a lease that frees it from a dead holder and a fencing token.

The lease bounds how long a holder that died (or stalled) keeps others out; it also means
a holder that outlives its lease no longer holds the lock. The fencing token (an integer,
larger for every acquisition of the name than for any before it) is what makes that safe:
the holder passes it to what it writes to, which refuses a token smaller than one it has
seen. On leaving the ``async with`` the lock is released; if the lease had run out by then,
:class:`LockLostError` says so (unless the block raised: its error is the one that counts).

With L2 the lock lives there (the tier's :class:`~cache_core.tiers.base.FencedLocks`,
through the circuit breaker: L2 away is :class:`TierUnavailableError`, never a local lock
that would exclude nobody else). An agent with L1 alone locks within its process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from cache_core.errors import (
    InvalidValueError,
    LockLostError,
    LockTimeoutError,
    NotInstalledError,
)
from cache_core.key_rules import KeyRules
from cache_core.tiers.base import FencedLocks
from cache_core.tiers.guarded import GuardedTier

MAX_WAIT = 3600.0
"""Seconds ``timeout`` may be at most."""
_POLL_FIRST = 0.005
_POLL_MAX = 0.1


class LocalLocks:
    """:class:`FencedLocks` within one process: what an agent without L2 locks with."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[str, tuple[int, float]] = {}  # name -> (token, lease end)
        self._last = 0

    def _holder(self, name: str) -> int | None:
        held = self._held.get(name)
        if held is None:
            return None
        if held[1] <= self._clock():
            del self._held[name]  # a holder that never released: its lease has ended
            return None
        return held[0]

    async def acquire_lock(self, name: str, lease: float) -> int | None:
        if self._holder(name) is not None:
            return None
        self._last += 1
        self._held[name] = (self._last, self._clock() + lease)
        return self._last

    async def extend_lock(self, name: str, token: int, lease: float) -> bool:
        if self._holder(name) != token:
            return False
        self._held[name] = (token, self._clock() + lease)
        return True

    async def release_lock(self, name: str, token: int) -> bool:
        if self._holder(name) != token:
            return False
        del self._held[name]
        return True


class Locks:
    """Where an agent's locks live, and the checks every lock request goes through."""

    def __init__(self, l2: GuardedTier | None, rules: KeyRules) -> None:
        self._l2 = l2
        self._rules = rules
        self._local = LocalLocks()

    def lock(self, name: str, lease: float, timeout: float) -> Lock:
        self._rules.check_key(name)
        max_lease = self._rules.limits.max_ttl
        if not (isinstance(lease, int | float) and 0 < lease <= max_lease):
            raise InvalidValueError(
                f"lease must be more than 0 and at most limits.max_ttl ({max_lease:g}) "
                f"seconds, got {lease!r}"
            )
        if not (isinstance(timeout, int | float) and 0 <= timeout <= MAX_WAIT):
            raise InvalidValueError(f"timeout must be 0 to {MAX_WAIT:g} seconds, got {timeout!r}")
        return Lock(self._backend(), name, float(lease), float(timeout))

    def _backend(self) -> _Backend:
        l2 = self._l2
        if l2 is None:
            return _Backend(self._local, None)
        inner = l2.inner
        if not isinstance(inner, FencedLocks):
            raise NotInstalledError(
                f"the L2 tier ({type(inner).__name__}) has no fenced locks: agent.lock "
                "needs one that implements cache_core.tiers.base.FencedLocks"
            )
        return _Backend(inner, l2)


class _Backend:
    """A :class:`FencedLocks`, its calls through L2's breaker and timeout when it is L2."""

    __slots__ = ("_guard", "_locks")

    def __init__(self, locks: FencedLocks, guard: GuardedTier | None) -> None:
        self._locks = locks
        self._guard = guard

    async def _call(self, op: str, call: Awaitable[Any]) -> Any:
        return await (call if self._guard is None else self._guard.guarded(op, {}, call))

    async def acquire(self, name: str, lease: float) -> int | None:
        token: int | None = await self._call("lock", self._locks.acquire_lock(name, lease))
        return token

    async def extend(self, name: str, token: int, lease: float) -> bool:
        return bool(await self._call("lock", self._locks.extend_lock(name, token, lease)))

    async def release(self, name: str, token: int) -> bool:
        return bool(await self._call("unlock", self._locks.release_lock(name, token)))


class Lock:
    """One lock request: ``async with agent.lock("name", lease=5) as lock:``; inside,
    ``lock.token`` is the fencing token."""

    def __init__(self, backend: _Backend, name: str, lease: float, timeout: float) -> None:
        self.name = name
        self.lease = lease
        self.timeout = timeout
        self._backend = backend
        self._token: int | None = None

    @property
    def token(self) -> int:
        """The fencing token of this holder (only while it holds the lock)."""
        if self._token is None:
            raise RuntimeError(f"lock {self.name!r} is not held")
        return self._token

    @property
    def held(self) -> bool:
        return self._token is not None

    async def acquire(self) -> int:
        """Wait up to ``timeout`` seconds for the lock; its fencing token, or
        :class:`LockTimeoutError`."""
        if self._token is not None:
            raise RuntimeError(f"lock {self.name!r} is already held by this holder")
        deadline = time.monotonic() + self.timeout
        pause = _POLL_FIRST
        while True:
            token = await self._backend.acquire(self.name, self.lease)
            if token is not None:
                self._token = token
                return token
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeoutError(
                    f"lock {self.name!r} not acquired within {self.timeout:g} s: another "
                    "holder has it"
                )
            # Jittered: waiters polling in step would all ask at once.
            await asyncio.sleep(min(left, pause * random.uniform(0.5, 1.0)))
            pause = min(pause * 2, _POLL_MAX)

    async def extend(self, lease: float | None = None) -> None:
        """Give the holder ``lease`` seconds from now (the lock's own lease by default);
        :class:`LockLostError` when its lease had already run out."""
        lease = self.lease if lease is None else lease
        if not (isinstance(lease, int | float) and lease > 0 and math.isfinite(lease)):
            raise InvalidValueError(f"lease must be more than 0 seconds, got {lease!r}")
        if not await self._backend.extend(self.name, self.token, float(lease)):
            self._token = None
            raise LockLostError(f"lock {self.name!r}: the lease ran out before it was extended")

    async def release(self) -> None:
        """Release the lock; :class:`LockLostError` when its lease had run out (another
        holder may have had it meanwhile)."""
        token = self.token
        self._token = None
        if not await self._backend.release(self.name, token):
            raise LockLostError(
                f"lock {self.name!r}: the lease ({self.lease:g} s) ran out while held"
            )

    async def __aenter__(self) -> Self:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is None:  # lost in extend(), which said so
            return
        if exc_type is None:
            await self.release()
            return
        with contextlib.suppress(Exception):  # the block's own error is the one to see
            await self.release()
