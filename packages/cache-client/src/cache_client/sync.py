"""The blocking client: :class:`~cache_client.AsyncCacheClient` run on an event loop of its
own, in a thread of its own.

Every call is the async client's, so the two cannot differ in encoding, retries, timeouts
or errors, and no second HTTP library is needed. The price is a thread per client (idle
but for the calls) and a hand-off of some tens of microseconds per call, small beside a
round trip. Calls may come from any thread, several at once: they share the pool as
concurrent tasks do. A client must not be used across ``fork()``.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import threading
from collections.abc import Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from cache_client.aio import DEFAULT_URL, AsyncCacheClient
from cache_client.models import Hit
from cache_client.retry import RetryPolicy
from cache_client.settings import Pool, Timeouts
from cache_core.errors import CacheError
from cache_core.warmup import WarmUpReport

__all__ = ["CacheClient"]

T = TypeVar("T")


class CacheClient:
    """The HTTP API with the agent's method names, blocking; see
    :class:`~cache_client.AsyncCacheClient` for the arguments. Use as
    ``with CacheClient(url) as cache:`` or call :meth:`close`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        pool: Pool | None = None,
        ssl_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        # Built here, in the caller's thread, so a bad argument raises here; its session
        # is opened by the first call, in the loop's thread.
        self._client = AsyncCacheClient(
            url,
            token=token,
            timeouts=timeouts,
            retry=retry,
            pool=pool,
            ssl_context=ssl_context,
            rng=rng,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"cache-client {self._client.url}", daemon=True
        )
        self._thread.start()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        return self._client.url

    @property
    def closed(self) -> bool:
        return self._closed

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            call.close()
            raise RuntimeError("the client is closed")
        future = asyncio.run_coroutine_threadsafe(call, self._loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C (or any error of the wait itself) while the call runs: it is cancelled
            # rather than left running on the loop with nobody to answer.
            future.cancel()
            raise

    def close(self) -> None:
        """Close the pooled connections and stop the client's thread."""
        with self._lock:
            if self._closed:
                return
            try:
                asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result()
            finally:
                self._closed = True
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
                self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the API, as AsyncCacheClient's -----------------------------------------------------

    def lookup(self, key: str) -> Hit | None:
        """The value of ``key`` and the tier that answered, or None on a miss."""
        return self._run(self._client.lookup(key))

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` on a miss."""
        return self._run(self._client.get(key, default))

    def get_many(
        self, keys: Sequence[str], failures: dict[str, CacheError] | None = None
    ) -> dict[str, Any]:
        """Each key's value (None for a miss); see :meth:`AsyncCacheClient.get_many`."""
        return self._run(self._client.get_many(keys, failures))

    def set(
        self,
        key: str,
        value: Any,
        ttl: float | str | None = None,
        strategy: str | None = None,
        tags: Sequence[str] = (),
        dependencies: Sequence[str] = (),
    ) -> str:
        """Store ``value`` under ``key``; returns the name of the strategy that wrote it."""
        return self._run(self._client.set(key, value, ttl, strategy, tags, dependencies))

    def set_many(
        self,
        items: Mapping[str, Any],
        ttl: float | str | None = None,
        strategy: str | None = None,
        tags: Sequence[str] = (),
    ) -> int:
        """Store every item in one request; returns the count."""
        return self._run(self._client.set_many(items, ttl, strategy, tags))

    def delete(self, key: str) -> bool:
        """Remove ``key`` (and its dependents); True if ``key`` was cached."""
        return self._run(self._client.delete(key))

    def invalidate(
        self,
        *,
        pattern: str | None = None,
        tags: Sequence[str] = (),
        event: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> int:
        """Any combination of a glob, tags and an event; each removed key counted once."""
        return self._run(
            self._client.invalidate(pattern=pattern, tags=tags, event=event, context=context)
        )

    def invalidate_pattern(self, pattern: str) -> int:
        """Remove every key matching a Redis glob; returns how many."""
        return self._run(self._client.invalidate_pattern(pattern))

    def invalidate_by_tags(self, tags: Sequence[str]) -> int:
        """Remove every key carrying ANY of ``tags``; returns how many."""
        return self._run(self._client.invalidate_by_tags(tags))

    def invalidate_by_event(self, event: str, context: Mapping[str, Any] | None = None) -> int:
        """Remove what ``event`` reaches, placeholders filled from ``context``."""
        return self._run(self._client.invalidate_by_event(event, context))

    def warm_up_report(
        self, keys: Sequence[str], compute_strategy: str = "parallel"
    ) -> WarmUpReport:
        """Warm ``keys``; each key not cached after it is in ``failures`` with its error."""
        return self._run(self._client.warm_up_report(keys, compute_strategy))

    def warm_up(self, keys: Sequence[str], compute_strategy: str = "parallel") -> int:
        """Warm ``keys``; how many are cached after the call."""
        return self._run(self._client.warm_up(keys, compute_strategy))

    def fetch_stats(self) -> dict[str, Any]:
        """``GET /stats`` (an admin token's call)."""
        return self._run(self._client.fetch_stats())

    def health(self) -> dict[str, Any]:
        """``GET /health``; needs no token."""
        return self._run(self._client.health())
