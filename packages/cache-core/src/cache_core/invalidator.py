"""Removing keys: deletes and patterns, and through the Links plugin tags and events.

Core removes keys from every tier and buffer (:meth:`Invalidator.purge`); with a
:class:`~cache_core.links.Links` plugin every removal cascades to what depends on the
removed keys, and tags and events work. Without one, tags and events are refused naming
the extra. Each way of invalidating counts the distinct keys it actually removed from any
tier.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from cache_core.globs import is_literal, matcher
from cache_core.key_rules import KeyRules
from cache_core.l1_coherence import sweep
from cache_core.links import EventTargets, Links, not_installed
from cache_core.loading import LoaderSet
from cache_core.progress import long_operation
from cache_core.stats import Stats
from cache_core.strategies import WriteBuffer
from cache_core.tiers.base import LocalTier
from cache_core.tiers.guarded import GuardedTier

_perf = time.perf_counter_ns

KeySet = set[str]


class Invalidator:
    """Removes keys from every tier and buffer, with what depends on them."""

    def __init__(
        self,
        *,
        l1: LocalTier,
        buffering: Sequence[WriteBuffer],
        l2: GuardedTier | None,
        loading: LoaderSet,
        stats: Stats,
        rules: KeyRules,
    ) -> None:
        self.l1 = l1
        self.buffering = list(buffering)
        self.l2 = l2
        self.links: Links | None = None
        """Set once the Links plugin is built (it is handed :meth:`purge`)."""
        self.loading = loading
        self.stats = stats
        self.rules = rules

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (and, transitively, its dependents); True if ``key`` was cached."""
        start = _perf()
        self.rules.check_key(key)
        removed = await self._remove({key})
        self.stats.deletes += 1
        self.stats.count_invalidated("delete", len(removed))
        self.stats.latency.observe(_perf() - start)
        return key in removed

    async def purge(self, keys: KeySet) -> KeySet:
        """Remove exactly ``keys`` from every tier and buffer; returns the keys that were
        actually held somewhere."""
        self.loading.forget_missing(keys)
        held = self._held(keys.__contains__)
        removed = {key for key in keys if self.l1.delete(key)}
        for strategy in self.buffering:
            removed.update(await strategy.discard(keys))
        if self.l2 is not None and keys:
            with self._put_back_on_failure(held):
                removed.update(await self.l2.delete(sorted(keys)))
        return removed

    def _held(self, match: Callable[[str], object]) -> list[tuple[Callable[[Any], None], Any]]:
        """The buffered writes a removal is about to drop, from buffers that can put them
        back (``held``/``put_back``, optional members of a WriteBuffer)."""
        if self.l2 is None:
            return []
        found: list[tuple[Callable[[Any], None], Any]] = []
        for buffer in self.buffering:
            held, put_back = getattr(buffer, "held", None), getattr(buffer, "put_back", None)
            if held is not None and put_back is not None:
                found.append((put_back, held(match)))
        return found

    @contextlib.contextmanager
    def _put_back_on_failure(self, held: list[tuple[Callable[[Any], None], Any]]) -> Iterator[None]:
        """Should the removal fail to reach L2, the buffered writes it dropped are buffered
        again: L2 still holds what came before them, and an acknowledged write must not give
        way to an older value because a delete did not happen."""
        try:
            yield
        except Exception:
            for put_back, writes in held:
                if writes:
                    put_back(writes)
            raise

    def buffered(self, keys: KeySet) -> KeySet:
        """Those of ``keys`` a write buffer holds a write of."""
        return {key for key in keys for s in self.buffering if s.pending(key) is not None}

    async def drop_local(self, keys: KeySet) -> KeySet:
        """Remove exactly ``keys`` from L1 and the write buffers (L2 saw to itself)."""
        self.loading.forget_missing(keys)
        removed = {key for key in keys if self.l1.delete(key)}
        for strategy in self.buffering:
            removed.update(await strategy.discard(keys))
        return removed

    async def _tags(
        self, links: Links, tags: Sequence[str], listed: bool = False
    ) -> tuple[KeySet, int]:
        """Invalidate ``tags``: the keys removed, as a set where they were found, or as a
        count where the index retired the tags without finding them (tag versions), unless
        ``listed`` (the request removes more, and counts each key once)."""
        retired = await links.retire_tags(tags, listed=listed)
        if isinstance(retired, int):
            return KeySet(), retired
        if retired is not None:
            return retired, 0
        return await links.invalidate_tags(tags), 0

    async def _remove(self, keys: KeySet) -> KeySet:
        if self.links is None:
            return await self.purge(keys)
        return await self.links.remove(keys)

    def _links(self, what: str) -> Links:
        """The Links plugin, or the refusal of ``what`` naming the extra."""
        if self.links is None:
            raise not_installed(what)
        return self.links

    async def _invalidate_pattern(self, pattern: str) -> KeySet:
        self.rules.check_pattern(pattern)
        if is_literal(pattern):
            return await self._remove({pattern})
        # Counted (progress.advance) by what L2 unlinks: it holds every cached key.
        with long_operation("pattern_invalidation", pattern=pattern):
            self.loading.clear_missing()
            removed = set(await sweep(self.l1, pattern))
            held = self._held(matcher(pattern))
            for strategy in self.buffering:
                removed.update(await strategy.discard_matching(pattern))
            if self.l2 is not None:
                with self._put_back_on_failure(held):
                    removed.update(await self.l2.delete_matching(pattern))
            if self.links is not None:
                removed = await self.links.cascade(removed)
            return removed

    async def _invalidate_targets(
        self, links: Links, targets: EventTargets, listed: bool = False
    ) -> tuple[KeySet, int]:
        removed: KeySet = KeySet()
        counted = 0
        if targets.tags:
            listed = listed or bool(targets.patterns)
            removed, counted = await self._tags(links, targets.tags, listed)
        for pattern in targets.patterns:
            removed |= await self._invalidate_pattern(pattern)
        return removed, counted

    async def invalidate_pattern(self, pattern: str) -> int:
        """Remove every key matching a Redis glob (``user:*:profile``); returns how many."""
        removed = await self._invalidate_pattern(self.rules.check_caller_pattern(pattern))
        self.stats.count_invalidated("pattern", len(removed))
        return len(removed)

    async def invalidate_by_tags(self, tags: Sequence[str]) -> int:
        """Remove every key carrying ANY of ``tags``; returns how many."""
        self.rules.check_names(tags, "tag")
        links = self._links("tags")
        removed, counted = await self._tags(links, tags) if tags else (KeySet(), 0)
        self.stats.count_invalidated("tags", len(removed) + counted)
        return len(removed) + counted

    async def invalidate_by_event(
        self, event: str, context: Mapping[str, Any] | None = None
    ) -> int:
        """Remove what ``event`` reaches (config targets and subscriptions, placeholders
        filled from ``context``); returns how many keys."""
        links = self._links("event")
        targets = await links.event_targets(str(event), context, "")
        removed, counted = await self._invalidate_targets(links, targets)
        self.stats.count_invalidated("event", len(removed) + counted)
        return len(removed) + counted

    async def invalidate(
        self,
        *,
        pattern: str | None = None,
        tags: Sequence[str] = (),
        event: str | None = None,
        context: Mapping[str, Any] | None = None,
        scope: str = "",
    ) -> int:
        """Any combination of the three; each removed key counted once. ``scope`` is put
        before every key glob and tag the event reaches (a caller's namespace)."""
        if pattern is not None:
            self.rules.check_caller_pattern(pattern)
        self.rules.check_names(tags, "tag")
        # Every part is validated before anything is removed: bad input changes nothing.
        links = None
        if tags or event is not None:
            links = self._links("tags" if tags else "event")
        targets = EventTargets(tags=[], patterns=[])
        if links is not None and event is not None:
            targets = await links.event_targets(str(event), context, scope)
        removed: KeySet = KeySet()
        counted = 0
        if pattern is not None:
            found = await self._invalidate_pattern(pattern)
            removed |= self._tally("pattern", found, 0, removed)
        if links is not None and tags:
            others = pattern is not None or bool(targets.tags or targets.patterns)
            found, more = await self._tags(links, tags, others)
            removed |= self._tally("tags", found, more, removed)
            counted += more
        if links is not None and (targets.tags or targets.patterns):
            found, more = await self._invalidate_targets(
                links, targets, pattern is not None or bool(tags)
            )
            removed |= self._tally("event", found, more, removed)
            counted += more
        return len(removed) + counted

    def _tally(self, kind: str, found: KeySet, counted: int, already: KeySet) -> KeySet:
        """Count the keys ``kind`` removed that no earlier part of the request did (and
        those it retired by tag, which are counted, not known: they may overlap)."""
        fresh = found - already
        self.stats.count_invalidated(kind, len(fresh) + counted)
        return fresh
