"""The cascade: a removed key takes what depends on it along.

Dependents are the keys that declared a dependency on a removed one when written, or were
registered as depending on it (``register_dependency``), transitively and cycle-safe; and,
by category rules, the keys of each dependent category with the same ids. Every removal
goes through core's ``purge`` (L1, the write buffers, L2), then leaves the index.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from cache_core.links import Landing, watching

if TYPE_CHECKING:
    from cache_core.invalidation import InvalidationIndex
    from cache_plugins_invalidation.categories import CategoryRules
    from cache_plugins_invalidation.registrations import InvalidationManager

KeySet = set[str]


class Cascade:
    """Removes keys with everything they reach."""

    def __init__(
        self,
        *,
        index: InvalidationIndex,
        purge: Callable[[KeySet], Awaitable[KeySet]],
        drop_local: Callable[[KeySet], Awaitable[KeySet]],
        registrations: InvalidationManager,
        categories: CategoryRules,
    ) -> None:
        self.index = index
        self.purge = purge
        self.drop_local = drop_local
        self.registrations = registrations
        self.categories = categories

    async def remove(
        self,
        keys: KeySet,
        visited: KeySet | None = None,
        spare: frozenset[str] = frozenset(),
    ) -> KeySet:
        """Remove ``keys`` and their dependents (by key and by category), except ``spare``.
        Returns the keys that were actually held somewhere."""
        keys = keys - spare
        if self.registrations.pending:
            await self.registrations.land()  # a registration may name these keys
        # Removed first: a tier that keeps the index in its own steps forgets the keys and
        # removes what they reach in the delete's own atomic step; one that can only tell
        # says which keys the index holds anything for, and only those are looked up after
        # (their edges stay in the index until forget, so the order finds the same
        # dependents).
        landing = Landing()
        # Not with keys to spare: the tier's cascade spares only the keys it removes.
        removed = await watching(self.purge(keys), None if spare else landing)
        removed |= landing.removed
        gone = keys | landing.reached
        if landing.reached:
            # This instance's copies (L1, write buffers), a buffered one with no L2 entry
            # too; the step removed what L2 held.
            removed |= await self.drop_local(set(landing.reached))
        # What the step left to the index: everything when the tier could not tell, the
        # dependents past its bound, nothing when it kept the index itself.
        if landing.linked is None:
            linked = keys
        elif landing.indexed and not landing.unfinished:
            linked = set()
        else:
            linked = keys & landing.linked
        if linked:
            more = await self.index.dependents(linked) - spare - keys
            if more:
                removed |= await self.purge(more)
                gone |= more
            await self.index.forget(linked | more)
        if self.categories:
            tags = sorted(self.categories.targets(gone))
            removed |= await self.invalidate_tags(tags, visited, spare)
        return removed

    async def cascade(self, removed: KeySet) -> KeySet:
        """``removed`` left the cache already (a pattern swept them): their dependents go
        too. Returns ``removed`` and what else was removed."""
        removed = set(removed)
        dependents = await self.dependents(removed)
        await self.index.forget(removed)
        if dependents:
            removed |= await self.remove(dependents)
        if self.categories:
            tags = sorted(self.categories.targets(removed))
            removed |= await self.invalidate_tags(tags)
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
        return await self.remove(keys, visited, spare)

    async def dependents(self, keys: KeySet) -> KeySet:
        if self.registrations.pending:
            await self.registrations.land()  # a registration may name these keys
        return await self.index.dependents(keys)
