"""cache-plugins-invalidation's :class:`~cache_core.links.Links`: what core calls for tags,
dependencies, categories and events.

It reads ``invalidation.event_triggers``, ``dependency_rules`` and ``categories`` (its own
fields of that section: settings.py), keeps what it learns in the index core built for
it, and removes keys only through core's ``purge``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

from cache_core.errors import TierUnavailableError
from cache_core.links import EventTargets, KeySet, Landing, LinksContext, watching
from cache_plugins_invalidation.cascade import Cascade
from cache_plugins_invalidation.categories import SOURCE_TAG, CategoryRules
from cache_plugins_invalidation.events import Events
from cache_plugins_invalidation.registrations import InvalidationManager
from cache_plugins_invalidation.settings import InvalidationSettings

_NONE = object()


class InvalidationLinks(Cascade):
    """Tags, dependencies, category rules and events, over one index: the cascade (its
    ``remove``, ``cascade`` and ``invalidate_tags`` are core's calls as they stand, one
    coroutine less per removal), plus the links of writes and the events."""

    PLUGIN_NAME: ClassVar[str] = "invalidation"

    def __init__(self, options: object, context: LinksContext) -> None:
        config = context.config
        self._deferred: dict[str, float | None] = {}
        """Write-back writes without links, not indexed yet: settled once their flush lands
        (:meth:`landed`)."""
        self._unsettled: dict[str, float | None] = {}
        """Landed, but L2 went away before the index settled them: the next flush does."""
        self._buffered_links: dict[str, tuple[Sequence[str], tuple[str, ...]]] = {}
        """Write-back writes with links, indexed in their request: the links their flush
        carries, so it records (and checks) its own tags' versions whatever the index holds
        by then (a retired tag's walk may have unlinked the key meanwhile)."""
        registrations = InvalidationManager(
            context.index,
            check_key=context.check_key,
            check_pattern=context.check_caller_pattern,
            check_names=context.check_names,
        )
        self._in_step: bool = bool(getattr(context.index, "in_step", False))
        """The index is kept by L2's own write and delete steps (see :meth:`write`)."""
        self._versions: bool = bool(getattr(context.index, "tag_versions", False))
        """Writes record tag versions in their frames (see :meth:`retire_tags`)."""
        self._buffered = context.buffered
        super().__init__(
            index=context.index,
            purge=context.purge,
            drop_local=context.drop_local,
            registrations=registrations,
            categories=CategoryRules(config),
        )
        self._events = Events(
            config.section(InvalidationSettings).event_triggers,
            context.index,
            self.registrations,
            check_pattern=context.check_pattern,
            check_names=context.check_names,
        )

    async def start(self) -> None:
        await self.registrations.start()

    async def close(self, timeout: float) -> None:
        await self.registrations.close(timeout)

    async def write(
        self,
        entries: Sequence[tuple[str, float | None]],
        tags: Sequence[str],
        dependencies: Sequence[str],
        land: Callable[[], Awaitable[None]],
        *,
        buffered: bool,
        direct: bool = False,
    ) -> None:
        """Where the write reaches L2 in the request (``direct``) and the index lives in
        that L2's own steps (``in_step``: Redis outside Cluster), the write's own script
        keeps the index, exactly, and removes what depended on the old values: one step.
        Elsewhere indexed before it lands (should the write fail half-way, its tags still
        reach what it cached), settled after (only then may the index drop the old value's
        links). Overwriting a key invalidates its dependents; writing a key of a dependent
        category invalidates by category first."""
        keys = [key for key, _ in entries]
        if self.categories:
            # Before the write: the written keys may be of a dependent category too.
            await self.invalidate_tags(sorted(self.categories.targets(set(keys))), set())
        linked = [(key, ttl, self._carried(key, tags)) for key, ttl in entries]
        plain = not dependencies and not any(tags for _, _, tags in linked)
        if self.registrations.pending:
            try:
                await self.registrations.land()  # a registration may name these keys
            except TierUnavailableError:
                # With L2 away, write-back still takes plain writes (the point of buffering).
                if not (buffered and plain):
                    raise
        for key in keys:
            self._buffered_links.pop(key, None)
        if plain and buffered:
            # Nothing on the wire now: the index sees to it when the flush has landed. Due
            # before it is buffered: the write that fills the batch flushes it in its own
            # step, and that flush must settle it too.
            before = {key: self._deferred[key] for key in keys if key in self._deferred}
            self._deferred.update(entries)
            try:
                await land()
            except Exception:
                # Refused before it was buffered (the buffer full, L2 away: a failing
                # flush inside the write is the buffer's, never raised): nothing of it lands.
                for key in keys:
                    self._deferred.pop(key, None)
                self._deferred.update(before)
                raise
            if self._versions:
                # Held with no tags: a bump of the old value's must not drop it.
                self.index.untagged(keys)  # type: ignore[attr-defined]
            return
        if direct and self._in_step:
            deps = tuple(dependencies)
            landing = Landing(links={key: (tags, deps) for key, _, tags in linked})
            await watching(land(), landing)
            for key in keys:
                self._deferred.pop(key, None)
            if landing.indexed:
                await self._tidy(landing, frozenset(keys))
                return
            # The write did not reach L2 after all (a strategy that holds it): index it now.
            dependents = await self.index.record(linked, dependencies)
            settling = self.index.settle(linked, dependencies)
            if settling is not None:
                await settling
            if dependents:
                await self.remove(dependents, spare=frozenset(keys))
            return
        if plain:
            # Landed first: a plain write adds no links, so the index has nothing to record
            # before it, and the tier says (in the write's own atomic step) which keys the
            # index holds anything for; only those are settled after. Should settling fail,
            # the old links stay (too much is invalidated, never too little).
            landing = Landing(plain=keys)
            await watching(land(), landing)
            for key in keys:
                self._deferred.pop(key, None)
            await self._settle(entries, landing.linked)
            return
        # Indexed before the write lands: should it fail half-way, its new tags still reach
        # what it cached, and what depends on its old value is known. (Sent with the write,
        # the lookup could time out on a frozen engine while the SET waits in the socket
        # and applies on resume, leaving those dependents behind.)
        dependents = await self.index.record(linked, dependencies)
        for key in keys:
            # Indexed now, old links and dependents with it; not before: should the record
            # fail, a plain write held before this one is still settled when it lands.
            self._deferred.pop(key, None)
        if buffered:
            deps = tuple(dependencies)
            self._buffered_links.update({key: (tags, deps) for key, _, tags in linked})
        # Watched too: a tier that can removes the dependents in the write's own step, so a
        # write that lands after its caller gave up on it (a frozen engine) takes them along.
        try:
            await watching(land(), Landing())
        except Exception:
            for key in keys:
                self._buffered_links.pop(key, None)
            raise
        # Landed: only now may the index drop the links the old value needed. Should that
        # fail, both values' links stay, which invalidates too much, never too little.
        settling = self.index.settle(linked, dependencies)
        if settling is not None:
            with contextlib.suppress(TierUnavailableError):
                await settling
        if dependents:
            # The written keys stay, even where a dependency cycle leads back to them.
            await self.remove(dependents, spare=frozenset(keys))

    async def _tidy(self, landing: Landing, written: frozenset[str]) -> None:
        """After a step that kept the index itself: this instance's own copies of the
        dependents it removed go (L1, write buffers; the notice reaches L1 a moment later),
        dependents past its bound are removed the index's way, and dependent categories of
        what was removed are invalidated."""
        if landing.reached:
            await self.drop_local(set(landing.reached))  # the step removed them from L2
            if self.categories:
                tags = sorted(self.categories.targets(landing.reached))
                await self.invalidate_tags(tags, spare=written)
        if landing.unfinished:  # remove() sees to the categories of what it removes
            await self.remove(await self.dependents(set(written)), spare=written)

    def _carried(self, key: str, tags: Sequence[str]) -> Sequence[str]:
        """The tags ``key`` is indexed under: its own, its categories', and where it is of a
        source category and tags are retired by version, each of those as a source tag too
        (what :meth:`retire_tags` walks)."""
        if not self.categories:
            return tags
        own = [*tags, *self.categories.tags_for(key)]
        if self._versions and own and self.categories.targets({key}):
            own += [SOURCE_TAG + tag for tag in own]
        return own

    async def retire_tags(self, tags: Sequence[str], *, listed: bool) -> KeySet | int | None:
        """Where writes record tag versions (Redis outside Cluster): one bump of the tags'
        versions makes every entry carrying them, and what depended on those when written,
        a miss on every instance, whatever the index lost to eviction; this instance's
        buffered writes carrying them are dropped. Runtime registrations reach further
        than frames record: with any, or ``listed``, the tags are walked too, as
        :meth:`invalidate_tags` does, and what it removed is the answer. Category rules
        reach further from keys of source categories only: their source tags are walked."""
        if not self._versions:
            return None
        if self.registrations.pending:
            await self.registrations.land()  # a registration may name what the walk finds
        count, registered, held = await self.index.retire_tags(tags)  # type: ignore[attr-defined]
        if held:
            # A held write carrying the tags (its value not in L2 yet) goes with the value
            # L2 still holds of its key, written before and not recording them.
            pending = self._buffered(held)
            if pending:
                await self.purge(pending)
            await self.drop_local(held - pending)
        found: KeySet | int = count
        if listed or registered:
            found = await self.invalidate_tags(tags)
        elif self.categories:
            # Of the keys carrying the tags, only those of source categories reach further:
            # the index lists them under source tags, and those are walked.
            await self.invalidate_tags([SOURCE_TAG + tag for tag in tags])
        self.index.reap_later(tags)  # type: ignore[attr-defined]
        return found

    def flush_landing(self, keys: Sequence[str]) -> Landing:
        # Buffered without links: their old links are settled once the flush has landed.
        plain = {key for key in keys if key in self._deferred}
        carried = {key: self._buffered_links[key] for key in keys if key in self._buffered_links}
        if not carried or not self._in_step:
            return Landing(plain=plain)
        # Exact: every key gets the links given, none for the plain ones.
        return Landing(links=carried, plain=plain)

    async def landed(
        self,
        entries: Sequence[tuple[str, float | None]],
        linked: Collection[str] | None = None,
    ) -> None:
        self._forget_unheld({key for key, _ in entries})
        due = {key: ttl for key, ttl in entries if self._deferred.pop(key, _NONE) is not _NONE}
        if linked is not None:
            due = {key: ttl for key, ttl in due.items() if key in linked}
        due = {**self._unsettled, **due}
        self._unsettled = {}
        if not due:
            return
        try:
            await self._settle(list(due.items()), None)
        except TierUnavailableError:
            # L2 went away after the flush landed: the next flush settles these too.
            self._unsettled = {**due, **self._unsettled}
            raise

    def _forget_unheld(self, landed: set[str]) -> None:
        """After a flush: what was kept for buffered writes no write buffer holds any more
        (landed, refused as older, dropped) goes; a newer write of a landed key, buffered
        since, keeps its own links. Plain writes that landed are settled by the caller."""
        links, deferred = self._buffered_links, self._deferred
        if not links and not deferred:
            return
        held = self._buffered(links.keys() | deferred.keys())
        for key in [key for key in links if key not in held]:
            del links[key]
        for key in [key for key in deferred if key not in held and key not in landed]:
            del deferred[key]

    async def _settle(
        self, entries: Sequence[tuple[str, float | None]], linked: Collection[str] | None
    ) -> None:
        """Plain writes of ``entries`` have landed: drop their keys' old links and remove
        what depended on their old values (the written keys spared). ``linked``: the keys
        the tier said the index holds anything for (None: it could not tell, so all)."""
        due = [(key, ttl, ()) for key, ttl in entries if linked is None or key in linked]
        if not due:
            return
        dependents = await self.index.record(due, ())
        settling = self.index.settle(due, ())
        if settling is not None:
            await settling
        if dependents:
            await self.remove(dependents, spare=frozenset(key for key, _, _ in due))

    async def remove(
        self,
        keys: set[str],
        visited: set[str] | None = None,
        spare: frozenset[str] = frozenset(),
    ) -> set[str]:
        self._forget_deferred(keys)
        return await super().remove(keys, visited, spare)

    async def cascade(self, removed: set[str]) -> set[str]:
        self._forget_deferred(removed)
        return await super().cascade(removed)

    def _forget_deferred(self, keys: set[str]) -> None:
        """Removed keys' buffered writes are dropped: nothing of theirs lands to settle."""
        for key in keys:
            self._buffered_links.pop(key, None)
        if self._deferred:
            for key in keys:
                self._deferred.pop(key, None)

    async def event_targets(
        self, event: str, context: Mapping[str, Any] | None, scope: str
    ) -> EventTargets:
        return await self._events.targets(event, context, scope)
