"""Writes: validated, resolved to a TTL and a strategy, and written through it.

With a :class:`~cache_core.links.Links` plugin each write goes through its ``write``,
which indexes the write's tags and dependencies around it and invalidates what depended on
the old values; without one, a write carrying tags or dependencies is refused naming the
extra, before anything changes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from cache_core.errors import InvalidValueError, UnknownNameError
from cache_core.key_rules import KeyRules
from cache_core.links import Links, not_installed
from cache_core.loading import LoaderSet
from cache_core.policies import Policy, PolicyTable
from cache_core.stats import Stats
from cache_core.strategies import CacheStrategy, Strategy, Write, WriteBuffer
from cache_core.tiers.base import LocalTier

_perf = time.perf_counter_ns


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
        links: Links | None,
        loading: LoaderSet,
        stats: Stats,
        rules: KeyRules,
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
        self.links = links
        self.loading = loading
        self.stats = stats
        self.rules = rules

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
        if tags or dependencies:
            self._check_unlinked_if_sliding(key)
        data = self.rules.encode(value)
        # Encoded, the value is not needed again: a multi-MiB one must not wait out the L2
        # round trip beside its bytes (when the caller lets go of it too).
        del value
        seconds, chosen, compress = self.resolve(key, ttl, strategy)
        await self.write(chosen, [(key, data, seconds, compress)], tags, dependencies)
        self.stats.latency.observe(_perf() - start)
        return chosen.PLUGIN_NAME

    def _check_unlinked_if_sliding(self, key: str) -> None:
        """A sliding key carries no tags or dependencies: their index entries expire with
        the write's TTL, which reads extend for the entry alone (cache_core.sliding)."""
        if self.policies.sliding:
            policy = self.policies.match(key)
            if policy is not None and policy.sliding:
                raise InvalidValueError(
                    f"{key!r} slides (policy {policy.name!r}): it cannot carry tags or "
                    "dependencies, whose index entries would expire while reads keep it"
                )

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
            if tags:
                self._check_unlinked_if_sliding(key)
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
        if self.links is None and (tags or dependencies):
            raise not_installed("tags" if tags else "dependencies")
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
        # A buffered (or in-flight) older write from another strategy must not land after
        # this one. Flushed first where the buffer can, rather than dropped: should this
        # write fail (L2 away), the older one was acknowledged and must still land.
        for other in self.buffering:
            if other is not buffer and any(other.pending(k) is not None for k in keys):
                flush = getattr(other, "flush", None)
                if flush is None:
                    await other.discard(keys)
                else:
                    await flush()

        async def land() -> None:
            await strategy.write(writes)
            self.stats.sets += len(writes)
            by_strategy = self.stats.sets_by_strategy
            name = strategy.PLUGIN_NAME
            by_strategy[name] = by_strategy.get(name, 0) + len(writes)

        if self.links is None:
            await land()
            return
        entries = [(key, ttl) for key, _, ttl, _ in writes]
        # Deferred to the flush only where one comes (L2) and the buffer says it landed.
        buffered = self.has_l2 and getattr(buffer, "on_landed", None) is not None
        direct = self.has_l2 and buffer is None
        await self.links.write(entries, tags, dependencies, land, buffered=buffered, direct=direct)
