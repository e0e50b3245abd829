"""An L2 tier as the data path calls it: every call timed and traced through the agent's
:class:`~cache_core.metrics.OperationObserver`, bounded by ``circuit_breaker.operation_timeout``
and guarded by the :class:`~cache_core.breaker.CircuitBreaker`, so a dead or stuck server
costs a request at most the timeout, and nothing at all while the breaker is open. Any
failure leaves as :class:`~cache_core.errors.TierUnavailableError`. Other attributes pass
through to the tier."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

from cache_core.breaker import BreakerState, CircuitBreaker
from cache_core.errors import (
    CacheError,
    CorruptEntryError,
    InvalidValueError,
    TierUnavailableError,
)
from cache_core.invalidation import InvalidationIndex
from cache_core.metrics import NullObserver, OperationObserver
from cache_core.tiers.base import CoherenceListener, HealthNotes, RemoteTier, StoredValue

T = TypeVar("T")


def _no_verdict() -> None:
    return None


class ObservedTier:
    PLUGIN_NAME: ClassVar[str] = "observed"

    def __init__(
        self,
        inner: RemoteTier,
        key_pattern: Callable[[str], str],
        breaker: CircuitBreaker,
        operation_timeout: float,
    ) -> None:
        self.inner = inner
        self.default_ttl = inner.default_ttl
        self.observer: OperationObserver = NullObserver()
        self.breaker = breaker
        self._timeout = operation_timeout
        self._pattern = key_pattern

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # The rest of RemoteTier, passed through untimed (not data calls).
    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def count(self) -> int:
        return await self.guarded("count", {}, self.inner.count(), bounded=False)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def health_notes(self) -> list[str]:
        """The tier's :class:`~cache_core.tiers.base.HealthNotes`, or none: they are optional."""
        return self.inner.health_notes() if isinstance(self.inner, HealthNotes) else []

    def attach(self, listener: CoherenceListener) -> bool:
        return self.inner.attach(listener)

    async def try_lock(self, name: str, lease: float) -> str | None:
        return await self.guarded("try_lock", {}, self.inner.try_lock(name, lease))

    async def unlock(self, name: str, token: str) -> None:
        await self.guarded("unlock", {}, self.inner.unlock(name, token))

    async def guarded(
        self, op: str, attributes: dict[str, Any], call: Awaitable[T], *, bounded: bool = True
    ) -> T:
        breaker = self.breaker
        if not breaker.allow():
            if inspect.iscoroutine(call):
                call.close()  # never awaited: nothing was sent
            raise TierUnavailableError(
                f"L2 is unavailable (circuit open after: {breaker.last_error}); retry shortly"
            )
        # Only the probe may give the probe slot back without a verdict.
        release = breaker.release if breaker.state is BreakerState.HALF_OPEN else _no_verdict
        observer = self.observer
        start = time.perf_counter()
        ok = False
        try:
            with observer.span(f"l2.{op}", {"cache.tier": "l2", "cache.op": op, **attributes}):
                if bounded:
                    async with asyncio.timeout(self._timeout):
                        result = await call
                else:
                    result = await call
            ok = True
        except CorruptEntryError:
            breaker.success()  # the server answered; what it holds is the problem
            raise
        except CacheError:
            release()  # the request's own error: says nothing about L2
            raise
        except UnicodeDecodeError as exc:
            breaker.success()  # the server answered with what we cannot read
            raise CorruptEntryError(f"L2 answered {op} with undecodable text: {exc}") from exc
        except (UnicodeEncodeError, OverflowError) as exc:
            # Raised while the client library built the command from the request's values
            # (text it cannot encode, a PX beyond 64 bits): nothing reached L2, so nothing
            # counts against it.
            release()
            raise InvalidValueError(f"L2 cannot store this request's values: {exc}") from exc
        except TimeoutError:
            breaker.failure(f"{op} took longer than {self._timeout} s")
            raise TierUnavailableError(f"L2 did not answer {op} within {self._timeout} s") from None
        except (OSError, ConnectionError) as exc:
            breaker.failure(f"{op}: {exc}")
            raise TierUnavailableError(f"L2 failed {op}: {exc}") from exc
        except Exception as exc:  # client libraries' own connection/timeout errors
            breaker.failure(f"{op}: {type(exc).__name__}: {exc}")
            raise TierUnavailableError(f"L2 failed {op}: {exc}") from exc
        except BaseException:
            # Cancelled (a caller's own timeout, a shutdown): no verdict on L2, and the
            # probe slot must not stay taken, or the breaker never closes again.
            release()
            raise
        finally:
            observer.l2_call(op, time.perf_counter() - start, ok)
        breaker.success()
        return result

    async def get(self, key: str) -> StoredValue | None:
        return await self.guarded(
            "get", {"cache.key_pattern": self._pattern(key)}, self.inner.get(key)
        )

    async def get_many(self, keys: Sequence[str]) -> list[StoredValue | CorruptEntryError | None]:
        return await self.guarded("get_many", {"cache.batch": len(keys)}, self.inner.get_many(keys))

    async def set(self, key: str, data: bytes, ttl: float | None) -> None:
        attributes = {"cache.key_pattern": self._pattern(key)}
        await self.guarded("set", attributes, self.inner.set(key, data, ttl))

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        await self.guarded("set_many", {"cache.batch": len(items)}, self.inner.set_many(items))

    async def delete(self, keys: Sequence[str]) -> list[str]:
        return await self.guarded("delete", {"cache.batch": len(keys)}, self.inner.delete(keys))

    async def delete_matching(self, pattern: str) -> list[str]:
        # Unbounded: a large invalidation takes many round trips, each under the socket timeout.
        return await self.guarded(
            "delete_matching", {}, self.inner.delete_matching(pattern), bounded=False
        )


class GuardedIndex:
    """An invalidation index kept in L2, called through the same guard as L2 itself: a
    dead server fails these calls fast too, as :class:`TierUnavailableError`."""

    PLUGIN_NAME: ClassVar[str] = "guarded"

    def __init__(self, inner: InvalidationIndex, tier: ObservedTier) -> None:
        self.inner = inner
        self._guarded = tier.guarded

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def record(
        self,
        entries: Sequence[tuple[str, float | None, Sequence[str]]],
        dependencies: Sequence[str],
    ) -> set[str]:
        return await self._guarded("index.record", {}, self.inner.record(entries, dependencies))

    def settle(
        self,
        entries: Sequence[tuple[str, float | None, Sequence[str]]],
        dependencies: Sequence[str],
    ) -> Awaitable[None] | None:
        # Nothing to send, nothing to guard: no span, no breaker check, no I/O.
        work = self.inner.settle(entries, dependencies)
        return None if work is None else self._guarded("index.settle", {}, work)

    # Bulk work spans many round trips: the index bounds each (the Redis index by
    # circuit_breaker.operation_timeout), not the whole.
    async def forget(self, keys: Iterable[str]) -> None:
        await self._guarded("index.forget", {}, self.inner.forget(keys), bounded=False)

    async def keys_for_tags(self, tags: Iterable[str]) -> set[str]:
        call = self.inner.keys_for_tags(tags)
        return await self._guarded("index.keys_for_tags", {}, call, bounded=False)

    async def dependents(self, keys: Iterable[str]) -> set[str]:
        call = self.inner.dependents(keys)
        return await self._guarded("index.dependents", {}, call, bounded=False)

    async def add_dependency(self, key: str, dependency: str) -> None:
        await self._guarded("index.add_dependency", {}, self.inner.add_dependency(key, dependency))

    async def subscribe(self, event: str, target: str) -> None:
        await self._guarded("index.subscribe", {}, self.inner.subscribe(event, target))

    async def subscriptions(self, event: str) -> list[str]:
        return await self._guarded("index.subscriptions", {}, self.inner.subscriptions(event))

    async def events(self) -> list[str]:
        return await self._guarded("index.events", {}, self.inner.events())
