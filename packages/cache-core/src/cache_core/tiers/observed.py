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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

from cache_core.breaker import CircuitBreaker
from cache_core.errors import CacheError, TierUnavailableError
from cache_core.metrics import NullObserver, OperationObserver
from cache_core.tiers.base import CoherenceListener, RemoteTier, StoredValue

T = TypeVar("T")


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
        return await self._timed("count", {}, self.inner.count(), bounded=False)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def attach(self, listener: CoherenceListener) -> bool:
        return self.inner.attach(listener)

    async def try_lock(self, name: str, lease: float) -> str | None:
        return await self._timed("try_lock", {}, self.inner.try_lock(name, lease))

    async def unlock(self, name: str, token: str) -> None:
        await self._timed("unlock", {}, self.inner.unlock(name, token))

    async def _timed(
        self, op: str, attributes: dict[str, Any], call: Awaitable[T], *, bounded: bool = True
    ) -> T:
        breaker = self.breaker
        if not breaker.allow():
            if inspect.iscoroutine(call):
                call.close()  # never awaited: nothing was sent
            raise TierUnavailableError(
                f"L2 is unavailable (circuit open after: {breaker.last_error}); retry shortly"
            )
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
        except CacheError:
            breaker.success()  # the server answered; what it holds is the problem
            raise
        except TimeoutError:
            breaker.failure(f"{op} took longer than {self._timeout} s")
            raise TierUnavailableError(f"L2 did not answer {op} within {self._timeout} s") from None
        except (OSError, ConnectionError) as exc:
            breaker.failure(f"{op}: {exc}")
            raise TierUnavailableError(f"L2 failed {op}: {exc}") from exc
        except Exception as exc:  # client libraries' own connection/timeout errors
            breaker.failure(f"{op}: {type(exc).__name__}: {exc}")
            raise TierUnavailableError(f"L2 failed {op}: {exc}") from exc
        finally:
            observer.l2_call(op, time.perf_counter() - start, ok)
        breaker.success()
        return result

    async def get(self, key: str) -> StoredValue | None:
        return await self._timed(
            "get", {"cache.key_pattern": self._pattern(key)}, self.inner.get(key)
        )

    async def get_many(self, keys: Sequence[str]) -> list[StoredValue | None]:
        return await self._timed("get_many", {"cache.batch": len(keys)}, self.inner.get_many(keys))

    async def set(self, key: str, data: bytes, ttl: float | None) -> None:
        attributes = {"cache.key_pattern": self._pattern(key)}
        await self._timed("set", attributes, self.inner.set(key, data, ttl))

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        await self._timed("set_many", {"cache.batch": len(items)}, self.inner.set_many(items))

    async def delete(self, keys: Sequence[str]) -> list[str]:
        return await self._timed("delete", {"cache.batch": len(keys)}, self.inner.delete(keys))

    async def delete_matching(self, pattern: str) -> list[str]:
        # Unbounded: a large invalidation takes many round trips, each under the socket timeout.
        return await self._timed(
            "delete_matching", {}, self.inner.delete_matching(pattern), bounded=False
        )
