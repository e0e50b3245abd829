"""Writes: validated, resolved to a TTL and a strategy, indexed, written, then settled.

A write is indexed before it is written (should it fail half-way, its tags still reach
what it cached) and settled after (only then may the index drop the old value's links).
Overwriting a key invalidates its dependents; writing a key of a dependent category
invalidates by category first.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from cache_core.categories import CategoryRules
from cache_core.errors import InvalidValueError, TierUnavailableError, UnknownNameError
from cache_core.invalidation import InvalidationIndex
from cache_core.key_rules import KeyRules
from cache_core.loading import LoaderSet
from cache_core.policies import Policy, PolicyTable
from cache_core.registrations import InvalidationManager
from cache_core.stats import Stats
from cache_core.strategies import CacheStrategy, Strategy, Write, WriteBuffer
from cache_core.tiers.base import LocalTier

_perf = time.perf_counter_ns

KeySet = set[str]  # spelled once here: inside the class, `set` is Writes.set

RemoveFn = Callable[..., Awaitable[KeySet]]


class Writes:
    """Every write of the agent, through the strategy each resolves to."""

    def __init__(
        self,
        *,
        l1: LocalTier,
        has_l2: bool,
        default_ttl: float | None,
        policies: PolicyTable,
        strategies: Mapping[str, Strategy],
        default_strategy: Strategy,
        buffers: Sequence[WriteBuffer],
        index: InvalidationIndex,
        registrations: InvalidationManager,
        categories: CategoryRules,
        loading: LoaderSet,
        stats: Stats,
        rules: KeyRules,
        remove: RemoveFn,
        invalidate_tags: RemoveFn,
    ) -> None:
        self.l1 = l1
        self.has_l2 = has_l2
        self.default_ttl = default_ttl
        """The backing tier's (L2's, else L1's) TTL of a write without one."""
        self.policies = policies
        self.strategies = strategies
        self.default_strategy = default_strategy
        self.buffering = list(buffers)
        self._buffer_of = {id(b): b for b in buffers}
        """A strategy's :class:`WriteBuffer` side, by identity (a dict lookup per write,
        not a protocol check)."""
        self.index = index
        self.registrations = registrations
        self.categories = categories
        self.loading = loading
        self.stats = stats
        self.rules = rules
        self.remove = remove
        self.invalidate_tags = invalidate_tags

    def resolve(
        self, key: str, ttl: float | str | None, strategy: str | None
    ) -> tuple[float | None, Strategy, bool]:
        """The write's TTL, strategy and whether L2 may compress it: from the request,
        else the key's first matching policy (matched here, once), else the defaults."""
        policy: Policy | None = self.policies.match(key)
        compress = policy.compress if policy is not None else True
        if ttl is not None:
            seconds: float | None = self.policies.ttl_seconds(ttl)
        elif policy is not None and policy.ttl is not None:
            seconds = policy.ttl
        else:
            seconds = self.default_ttl
        name = strategy or (policy.strategy if policy is not None else None)
        if name is None:
            return seconds, self.default_strategy, compress
        chosen = self.strategies.get(str(name))
        if chosen is None:
            known = ", ".join(sorted(self.strategies))
            raise UnknownNameError(f"unknown strategy {name!r} (known: {known})")
        return seconds, chosen, compress

    async def set(
        self,
        key: str,
        value: Any,
        ttl: float | str | None = None,
        strategy: str | CacheStrategy | None = None,
        tags: Sequence[str] = (),
        dependencies: Sequence[str] = (),
    ) -> str:
        """Store ``value`` under ``key``; returns the name of the strategy that wrote it.

        ``ttl`` is seconds or a ``ttl_presets`` name; without one, the first matching
        policy's, else the backing tier's default. Overwriting a key invalidates its
        dependents.
        """
        start = _perf()
        self.rules.check_key(key)
        self.rules.check_tags(tags)
        self.rules.check_dependencies(dependencies)
        data = self.rules.encode(value)
        # Encoded, the value is not needed again: a multi-MiB one must not wait out the L2
        # round trip beside its bytes (when the caller lets go of it too).
        del value
        seconds, chosen, compress = self.resolve(key, ttl, strategy)
        await self.write(chosen, [(key, data, seconds, compress)], tags, dependencies)
        self.stats.latency.observe(_perf() - start)
        return chosen.PLUGIN_NAME

    async def set_many(
        self,
        items: Mapping[str, Any],
        ttl: float | str | None = None,
        strategy: str | CacheStrategy | None = None,
        tags: Sequence[str] = (),
    ) -> int:
        """Store every item (all validated before anything is written); returns the count."""
        self.rules.check_batch(len(items), "items")
        self.rules.check_tags(tags)
        start = _perf()
        groups: dict[str, tuple[Strategy, list[Write]]] = {}
        for key, value in items.items():
            self.rules.check_key(key)
            data = self.rules.encode(value)
            seconds, chosen, compress = self.resolve(key, ttl, strategy)
            write = (key, data, seconds, compress)
            groups.setdefault(chosen.PLUGIN_NAME, (chosen, []))[1].append(write)
        for chosen, writes in groups.values():
            await self.write(chosen, writes, tags, ())
        self.stats.latency.observe(_perf() - start)
        return len(items)

    async def write(
        self,
        strategy: Strategy,
        writes: list[Write],
        tags: Sequence[str],
        dependencies: Sequence[str],
    ) -> None:
        keys = [write[0] for write in writes]
        buffer = self._buffer_of.get(id(strategy))
        if buffer is not None:
            await buffer.admit(writes)  # a write the buffer refuses must change nothing
        self.loading.forget_missing(keys)
        if not self.has_l2:
            # L1 is the store: a value it can never hold is refused, not silently dropped.
            for key, data, _, _ in writes:
                if not self.l1.fits(key, data):
                    raise InvalidValueError(
                        f"value for {key!r} is larger than the whole L1 "
                        f"({self.l1.max_bytes} bytes) and there is no L2"
                    )
        if self.categories:
            # Before the write: the written keys may be of a dependent category too.
            await self.invalidate_tags(sorted(self.categories.targets(set(keys))), set())
        # A buffered (or in-flight) older write from another strategy must not land after
        # this one.
        for other in self.buffering:
            if other is not buffer and any(other.pending(k) is not None for k in keys):
                await other.discard(keys)
        # Indexed first: should the write fail half-way, its tags still reach what it cached.
        categorize = self.categories.tags_for if self.categories else None
        entries = [
            (key, ttl, [*tags, *categorize(key)] if categorize else tags)
            for key, _, ttl, _ in writes
        ]
        try:
            if self.registrations.pending:
                await self.registrations.land()  # a registration may name these keys
            dependents = await self.index.record(entries, dependencies)
        except TierUnavailableError:
            # With L2 away, write-back still takes plain writes (the point of buffering);
            # one carrying tags or dependencies is refused: its invalidation could not work.
            if buffer is None or dependencies or any(tags for _, _, tags in entries):
                raise
            dependents = set()
        await strategy.write(writes)
        # Landed: only now may the index drop the links the old value needed. Should that
        # fail, both values' links stay, which invalidates too much, never too little.
        settling = self.index.settle(entries, dependencies)
        if settling is not None:
            with contextlib.suppress(TierUnavailableError):
                await settling
        self.stats.sets += len(writes)
        by_strategy = self.stats.sets_by_strategy
        by_strategy[strategy.PLUGIN_NAME] = by_strategy.get(strategy.PLUGIN_NAME, 0) + len(writes)
        if dependents:
            # The written keys stay, even where a dependency cycle leads back to them.
            await self.remove(dependents, cascade=True, spare=frozenset(keys))
