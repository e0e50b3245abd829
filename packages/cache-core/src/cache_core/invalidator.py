"""Removing keys and what depends on them: deletes, patterns, tags, events.

Every removal cascades: to the keys that depend on a removed one (declared on write or
registered), transitively and cycle-safe, and by category rules. Each way of
invalidating counts the distinct keys it actually removed from any tier.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from cache_core.categories import CategoryRules
from cache_core.errors import InvalidValueError, UnknownEventError
from cache_core.globs import is_literal
from cache_core.invalidation import TAG_PREFIX, InvalidationIndex, fill
from cache_core.key_rules import KeyRules
from cache_core.l1_coherence import sweep
from cache_core.loading import LoaderSet
from cache_core.registrations import InvalidationManager
from cache_core.stats import Stats
from cache_core.strategies import WriteBuffer
from cache_core.templates import PLACEHOLDER
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
        index: InvalidationIndex,
        registrations: InvalidationManager,
        categories: CategoryRules,
        event_triggers: Mapping[str, Sequence[str]],
        loading: LoaderSet,
        stats: Stats,
        rules: KeyRules,
    ) -> None:
        self.l1 = l1
        self.buffering = list(buffering)
        self.l2 = l2
        self.index = index
        self.registrations = registrations
        self.categories = categories
        self.event_triggers = event_triggers
        self.loading = loading
        self.stats = stats
        self.rules = rules

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (and, transitively, its dependents); True if ``key`` was cached."""
        start = _perf()
        self.rules.check_key(key)
        removed = await self.remove({key}, cascade=True)
        self.stats.deletes += 1
        self.stats.count_invalidated("delete", len(removed))
        self.stats.latency.observe(_perf() - start)
        return key in removed

    async def remove(
        self,
        keys: KeySet,
        *,
        cascade: bool,
        visited: KeySet | None = None,
        spare: frozenset[str] = frozenset(),
    ) -> KeySet:
        """Remove ``keys`` from every tier and buffer; with ``cascade``, their dependents too
        (by key and by category), except ``spare``. Returns the keys that were actually
        held somewhere."""
        if cascade:
            keys = keys | await self._dependents(keys)
        keys -= spare
        self.loading.forget_missing(keys)
        removed = {key for key in keys if self.l1.delete(key)}
        for strategy in self.buffering:
            removed.update(await strategy.discard(keys))
        if self.l2 is not None and keys:
            removed.update(await self.l2.delete(sorted(keys)))
        await self.index.forget(keys)
        if cascade and self.categories:
            tags = sorted(self.categories.targets(keys))
            removed |= await self.invalidate_tags(tags, visited, spare)
        return removed

    async def _dependents(self, keys: KeySet) -> KeySet:
        if self.registrations.pending:
            await self.registrations.land()  # a registration may name these keys
        return await self.index.dependents(keys)

    async def _invalidate_pattern(self, pattern: str, visited: KeySet | None = None) -> KeySet:
        self.rules.check_pattern(pattern)
        if is_literal(pattern):
            return await self.remove({pattern}, cascade=True, visited=visited)
        self.loading.clear_missing()
        removed = set(await sweep(self.l1, pattern))
        for strategy in self.buffering:
            removed.update(await strategy.discard_matching(pattern))
        if self.l2 is not None:
            removed.update(await self.l2.delete_matching(pattern))
        dependents = await self._dependents(removed)
        await self.index.forget(removed)
        if dependents:
            removed |= await self.remove(dependents, cascade=True, visited=visited)
        if self.categories:
            tags = sorted(self.categories.targets(removed))
            removed |= await self.invalidate_tags(tags, visited)
        return removed

    async def invalidate_tags(
        self,
        tags: Sequence[str],
        visited: KeySet | None = None,
        spare: frozenset[str] = frozenset(),
    ) -> KeySet:
        """Remove every key carrying any of ``tags``, each tag once per request (``visited``),
        so category rules that loop end."""
        visited = set() if visited is None else visited
        fresh = [tag for tag in tags if tag not in visited]
        if not fresh:
            return set()
        visited.update(fresh)
        keys = await self.index.keys_for_tags(fresh)
        if not keys:
            return set()
        return await self.remove(keys, cascade=True, visited=visited, spare=spare)

    async def _event_targets(
        self, event: str, context: Mapping[str, Any] | None, scope: str = ""
    ) -> list[str]:
        """The event's targets with placeholders filled, ``scope`` (a caller's namespace)
        put before each key glob and tag; raises before anything is removed."""
        configured = self.event_triggers
        if self.registrations.pending:
            await self.registrations.land()
        subscribed = await self.index.subscriptions(event)
        if event not in configured and not subscribed:
            known = sorted(set(configured) | set(await self.index.events()))
            raise UnknownEventError(
                f"unknown event {event!r} (known: {', '.join(known) or 'none'})"
            )
        templates = [*configured.get(event, []), *subscribed]
        context = _checked_context(context, event, templates)
        targets = []
        for target in templates:
            filled = fill(target, context, event)
            if filled.startswith(TAG_PREFIX):
                tag = scope + filled.removeprefix(TAG_PREFIX)
                self.rules.check_names([tag], "tag")
                targets.append(TAG_PREFIX + tag)
            else:
                targets.append(self.rules.check_pattern(scope + filled))
        return targets

    async def _invalidate_targets(self, targets: Sequence[str]) -> KeySet:
        removed: KeySet = KeySet()
        tags = [t.removeprefix(TAG_PREFIX) for t in targets if t.startswith(TAG_PREFIX)]
        if tags:
            removed |= await self.invalidate_tags(tags)
        for target in targets:
            if not target.startswith(TAG_PREFIX):
                removed |= await self._invalidate_pattern(target)
        return removed

    async def invalidate_pattern(self, pattern: str) -> int:
        """Remove every key matching a Redis glob (``user:*:profile``); returns how many."""
        removed = await self._invalidate_pattern(self.rules.check_caller_pattern(pattern))
        self.stats.count_invalidated("pattern", len(removed))
        return len(removed)

    async def invalidate_by_tags(self, tags: Sequence[str]) -> int:
        """Remove every key carrying ANY of ``tags``; returns how many."""
        self.rules.check_names(tags, "tag")
        removed = await self.invalidate_tags(tags)
        self.stats.count_invalidated("tags", len(removed))
        return len(removed)

    async def invalidate_by_event(
        self, event: str, context: Mapping[str, Any] | None = None
    ) -> int:
        """Remove what ``event`` reaches (config targets and subscriptions, placeholders
        filled from ``context``); returns how many keys."""
        targets = await self._event_targets(str(event), context)
        removed = await self._invalidate_targets(targets)
        self.stats.count_invalidated("event", len(removed))
        return len(removed)

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
        targets = [] if event is None else await self._event_targets(str(event), context, scope)
        removed: KeySet = KeySet()
        if pattern is not None:
            removed |= self._tally("pattern", await self._invalidate_pattern(pattern), removed)
        if tags:
            removed |= self._tally("tags", await self.invalidate_tags(tags), removed)
        if targets:
            removed |= self._tally("event", await self._invalidate_targets(targets), removed)
        return len(removed)

    def _tally(self, kind: str, found: KeySet, already: KeySet) -> KeySet:
        """Count the keys ``kind`` removed that no earlier part of the request did."""
        fresh = found - already
        self.stats.count_invalidated(kind, len(fresh))
        return fresh


def _checked_context(context: object, event: str, templates: Sequence[str]) -> Mapping[str, Any]:
    """``context`` as a mapping of field names every one of which some target uses: a
    field none uses (a typo) would otherwise leave its placeholder to match everything."""
    if context is None:
        return {}
    if not isinstance(context, Mapping) or not all(isinstance(k, str) for k in context):
        raise InvalidValueError("context must be a mapping of field names to values")
    fields = {name for template in templates for name in PLACEHOLDER.findall(template)}
    unused = sorted(set(context) - fields)
    if unused:
        raise InvalidValueError(
            f"context.{unused[0]}: no target of event {event!r} uses it "
            f"(its fields: {', '.join(sorted(fields)) or 'none'})"
        )
    return context
