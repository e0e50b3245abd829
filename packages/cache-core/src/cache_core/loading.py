"""Calling loaders: which loader serves a key, the negative cache, and the cross-instance
lock that lets one instance load a key while the others wait for its result in L2.

Within an instance, concurrent lookups of one key share one load (the agent's
single-flight). Across instances sharing L2, the loading instance holds a lock with a lease
(``loading.lock_lease``); the others poll L2 for the value and take the lock themselves
when it is released without a value or its lease runs out, so a dead holder blocks nobody
past the lease. A key a loader finds nothing for is answered as a miss for
``loading.negative_ttl`` seconds without asking again (per instance).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from cache_core.config import LoadingSection
from cache_core.errors import LoaderError
from cache_core.freshness import Freshness
from cache_core.loaders import Loader, NotFound
from cache_core.metrics import NullObserver, OperationObserver
from cache_core.templates import Template
from cache_core.tiers.base import StoredValue
from cache_core.tiers.guarded import GuardedTier

_NEGATIVE_MAX = 100_000
_POLL_MIN = 0.005
_POLL_MAX = 0.05


class LoaderSet:
    """The enabled loaders, their compiled key templates and the negative cache."""

    def __init__(
        self,
        loaders: Sequence[Loader],
        settings: LoadingSection,
        clock: Callable[[], float] = time.monotonic,
        freshness: Sequence[Freshness] = (),
    ) -> None:
        self.loaders = list(loaders)
        self._freshness = {
            id(loader): fresh
            for loader, fresh in zip(self.loaders, freshness, strict=False)
            if fresh.active
        }
        self.judges_freshness = bool(self._freshness)
        """Whether any loader refreshes ahead or serves stale: reads judge L2 hits then."""
        self.settings = settings
        self._clock = clock
        self._templates: list[tuple[Loader, list[Template]]] = [
            (loader, [Template(t) for t in loader.match]) for loader in self.loaders
        ]
        self._negative: OrderedDict[str, float] = OrderedDict()
        self.calls = 0
        self.failures = 0
        self.observer: OperationObserver = NullObserver()

    def __bool__(self) -> bool:
        return bool(self.loaders)

    def find(self, key: str) -> tuple[Loader, dict[str, str]] | None:
        """The first loader whose templates match ``key``, with the ids they captured."""
        for loader, templates in self._templates:
            if not templates:
                return loader, {}
            for template in templates:
                ids = template.ids(key)
                if ids is not None:
                    return loader, ids
        return None

    def freshness_of(self, loader: Loader) -> Freshness | None:
        """``loader``'s refresh-ahead and stale-if-error, None when it has neither."""
        return self._freshness.get(id(loader))

    def pattern_of(self, loader: Loader, key: str) -> str:
        """The template of ``loader`` that matches ``key`` (``*`` when it serves any key):
        a span's ``cache.key_pattern``, which groups calls the way the raw key cannot."""
        for candidate, templates in self._templates:
            if candidate is loader:
                for template in templates:
                    if template.ids(key) is not None:
                        return template.text
        return "*"

    def known_missing(self, key: str) -> bool:
        expires = self._negative.get(key)
        if expires is None:
            return False
        if expires <= self._clock():
            del self._negative[key]
            return False
        return True

    def remember_missing(self, key: str) -> None:
        self._negative[key] = self._clock() + self.settings.negative_ttl
        self._negative.move_to_end(key)
        while len(self._negative) > _NEGATIVE_MAX:
            self._negative.popitem(last=False)

    def forget_missing(self, keys: Sequence[str] | set[str]) -> None:
        if self._negative:
            for key in keys:
                self._negative.pop(key, None)

    def clear_missing(self) -> None:
        self._negative.clear()

    async def call(self, loader: Loader, key: str, ids: Mapping[str, str]) -> Any:
        """The loader's value for ``key``; :class:`NotFound` or :class:`LoaderError`."""
        self.calls += 1
        name = loader.PLUGIN_NAME
        outcome = "error"
        start = time.perf_counter()
        budget = asyncio.timeout(self.settings.timeout)
        try:
            attributes = {"cache.loader": name, "cache.key_pattern": self.pattern_of(loader, key)}
            with self.observer.span(f"loader.{name}", attributes):
                async with budget:
                    value = await loader.load(key, ids)
            if value is None:
                raise NotFound(key)
            outcome = "ok"
            return value
        except NotFound:
            outcome = "not_found"
            raise
        except TimeoutError as exc:
            self.failures += 1
            if budget.expired():
                raise LoaderError(
                    f"loader {name!r} took longer than loading.timeout "
                    f"({self.settings.timeout} s) for {key!r}"
                ) from None
            # The loader's own timeout (an HTTP loader's `timeout`), not loading.timeout.
            raise LoaderError(
                f"loader {name!r} timed out for {key!r}: {exc or 'its own timeout'}"
            ) from exc
        except Exception as exc:
            self.failures += 1
            raise LoaderError(f"loader {name!r} failed for {key!r}: {exc}") from exc
        finally:
            self.observer.loader_call(name, time.perf_counter() - start, outcome)

    async def start(self) -> None:
        for loader in self.loaders:
            await loader.start()

    async def close(self) -> None:
        for loader in self.loaders:
            await loader.close()


async def with_instance_lock(
    l2: GuardedTier,
    key: str,
    lease: float,
    load: Callable[[], Awaitable[Any]],
    found_in_l2: Callable[[StoredValue], Any],
    current: Callable[[StoredValue], bool] = lambda _: True,
) -> Any:
    """Run ``load`` holding ``key``'s cross-instance lock; while another instance holds
    it, wait for its value to land in L2 and return ``found_in_l2(value)`` instead. A
    value in L2 that is not ``current`` (one a refresh or a reload is replacing) does not
    count as landed."""
    name = "load:" + key
    poll = min(max(lease / 100, _POLL_MIN), _POLL_MAX)
    while True:
        token = await l2.try_lock(name, lease)
        if token is not None:
            try:
                # Another instance may have loaded, stored and released since this one last
                # looked: checked again under the lock, or the key is loaded twice.
                stored = await l2.get(key)
                if stored is not None and current(stored):
                    return found_in_l2(stored)
                return await load()
            finally:
                await l2.unlock(name, token)
        await asyncio.sleep(poll)
        stored = await l2.get(key)
        if stored is not None and current(stored):
            return found_in_l2(stored)
