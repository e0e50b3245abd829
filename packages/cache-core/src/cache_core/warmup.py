"""Warm-up: bring keys into the cache before they are asked for, and say what it did."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from attrs import define

from cache_core.errors import (
    CacheError,
    CorruptEntryError,
    InvalidValueError,
    LoaderError,
    NoLoaderError,
    NotLoadedError,
    TierUnavailableError,
    UnknownNameError,
)
from cache_core.key_rules import KeyRules
from cache_core.progress import long_operation
from cache_core.reads import Reads


@define(frozen=True)
class WarmUpReport:
    warmed: int
    requested: int
    failures: dict[str, CacheError]
    """Every key not cached after the warm-up, with why (``no_loader``, ``not_found``,
    ``loader_failed``, ``corrupt_entry``)."""

    @property
    def success(self) -> bool:
        """Whether every key asked for is cached after the warm-up."""
        return self.warmed == self.requested


class WarmUp:
    """Keys promoted from L2 or computed by a loader, at most ``concurrency`` at once."""

    def __init__(self, reads: Reads, rules: KeyRules, concurrency: int) -> None:
        self.reads = reads
        self.rules = rules
        self.concurrency = concurrency

    async def report(self, keys: Sequence[str], compute_strategy: str = "parallel") -> WarmUpReport:
        """Warm ``keys`` (``parallel``: ``loading.warm_concurrency`` loader calls at once, or
        ``sequential``); each key that could not be warmed is in ``failures`` with why.
        Lookups made here do not count as hits or misses."""
        if len(keys) > self.rules.limits.max_warmup_keys:
            raise InvalidValueError(
                f"{len(keys)} keys to warm; the limit is {self.rules.limits.max_warmup_keys}"
            )
        if compute_strategy not in ("parallel", "sequential"):
            raise UnknownNameError(
                f"unknown compute_strategy {compute_strategy!r} (known: parallel, sequential)"
            )
        for key in keys:
            self.rules.check_key(key)
        unique = list(dict.fromkeys(keys))
        failures: dict[str, CacheError] = {}

        async def warm(key: str) -> bool:
            if key in self.reads.view:
                return True
            try:
                if await self.reads.below_l1(key) is not None:
                    return True
            except (LoaderError, CorruptEntryError, InvalidValueError, TierUnavailableError) as exc:
                # One key's trouble (a loaded value too large, L2 away) is that key's failure.
                failures[key] = exc
                return False
            if self.reads.loading.find(key) is None:
                failures[key] = NoLoaderError("not in the cache, and no loader serves this key")
            else:
                failures[key] = NotLoadedError("the loader found no value for this key")
            return False

        with long_operation("warm_up", total=len(unique), strategy=compute_strategy) as progress:
            if compute_strategy == "sequential":
                warmed = 0
                for key in unique:
                    warmed += await warm(key)
                    progress.done += 1
            else:
                limit = asyncio.Semaphore(self.concurrency)

                async def bounded(key: str) -> bool:
                    async with limit:
                        warmed = await warm(key)
                    progress.done += 1
                    return warmed

                warmed = sum(await asyncio.gather(*(bounded(key) for key in unique)))
        return WarmUpReport(warmed=warmed, requested=len(unique), failures=failures)
