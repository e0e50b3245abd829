"""The in-process invalidation index: right for one instance (``invalidation.backend: local``).

Tags, dependencies and runtime subscriptions are kept in this process's memory; every
entry leaves on delete, overwrite, invalidation and expiry, so it stays bounded by what is
cached. Instances sharing one L2 do not see each other's (the agent says so at start).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar


class LocalIndex:
    """In-process indexes; entries leave them on delete, overwrite, invalidation and expiry."""

    PLUGIN_NAME: ClassVar[str] = "local"
    shared: ClassVar[bool] = False
    _PRUNE_EVERY = 1024
    _MAX_UNSETTLED = 10_000

    def __init__(self, options: object = None, context: Any = None) -> None:
        self._clock: Callable[[], float] = context.clock if context is not None else time.monotonic
        self._tags: dict[str, set[str]] = {}
        self._key_tags: dict[str, set[str]] = {}
        self._dependents: dict[str, set[str]] = {}
        self._key_deps: dict[str, set[str]] = {}
        self._expiry: dict[str, float] = {}
        self._unsettled: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        """Per key, the tags and dependencies of the last write recorded and not settled:
        a settle narrows only to those, so an overlapping later write never loses its
        links to an earlier one's settle (and a write that failed leaves the next to
        settle, its links a superset meanwhile)."""
        self._subscriptions: dict[str, list[str]] = {}
        self._registered: dict[str, set[str]] = {}
        self._writes = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def record(
        self,
        entries: Sequence[tuple[str, float | None, Sequence[str]]],
        dependencies: Sequence[str],
    ) -> set[str]:
        dependents: set[str] = set()
        for key, ttl, tags in entries:
            dependents |= self._dependents.get(key, set()) | self._registered.get(key, set())
            if len(self._unsettled) >= self._MAX_UNSETTLED:
                # Failed writes never settle; forgetting them only leaves the union in place.
                self._unsettled.clear()
            self._unsettled[key] = (frozenset(tags), frozenset(dependencies))
            if not tags and not dependencies:
                continue
            if tags:
                self._key_tags.setdefault(key, set()).update(tags)
                for tag in tags:
                    self._tags.setdefault(tag, set()).add(key)
            if dependencies:
                self._key_deps.setdefault(key, set()).update(dependencies)
                for dep in dependencies:
                    self._dependents.setdefault(dep, set()).add(key)
            expires = math.inf if ttl is None else self._clock() + ttl
            self._expiry[key] = max(expires, self._expiry.get(key, expires))
            self._writes += 1
            if self._writes % self._PRUNE_EVERY == 0:
                self._prune_expired()
        return dependents - {key for key, _, _ in entries}

    def settle(
        self,
        entries: Sequence[tuple[str, float | None, Sequence[str]]],
        dependencies: Sequence[str],
    ) -> None:
        for key, ttl, tags in entries:
            if self._unsettled.get(key) != (frozenset(tags), frozenset(dependencies)):
                continue  # a later write recorded other links: its settle decides
            del self._unsettled[key]
            if key not in self._expiry:
                continue  # never indexed, or forgotten since
            if not tags and not dependencies:
                self._unlink(key)
                continue
            self._narrow(key, self._key_tags, self._tags, set(tags))
            self._narrow(key, self._key_deps, self._dependents, set(dependencies))
            self._expiry[key] = math.inf if ttl is None else self._clock() + ttl

    @staticmethod
    def _narrow(
        key: str, links: dict[str, set[str]], index: dict[str, set[str]], keep: set[str]
    ) -> None:
        """``key`` left in ``index`` under the names of ``keep`` only."""
        held = links.pop(key, set())
        for name in held - keep:
            members = index.get(name)
            if members is not None:
                members.discard(key)
                if not members:
                    del index[name]
        if held & keep:
            links[key] = held & keep

    def _unlink(self, key: str) -> None:
        self._unsettled.pop(key, None)
        for tag in self._key_tags.pop(key, ()):
            members = self._tags.get(tag)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._tags[tag]
        for dep in self._key_deps.pop(key, ()):
            dependents = self._dependents.get(dep)
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._dependents[dep]
        self._expiry.pop(key, None)

    def _prune_expired(self) -> None:
        now = self._clock()
        for key in [k for k, at in self._expiry.items() if at <= now]:
            self._unlink(key)

    async def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._unlink(key)

    async def keys_for_tags(self, tags: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for tag in tags:
            found |= self._tags.get(tag, set())
        return found

    async def dependents(self, keys: Iterable[str]) -> set[str]:
        seen = set(keys)
        frontier = list(seen)
        found: set[str] = set()
        while frontier:
            key = frontier.pop()
            for dependent in (*self._dependents.get(key, ()), *self._registered.get(key, ())):
                if dependent not in seen:
                    seen.add(dependent)
                    found.add(dependent)
                    frontier.append(dependent)
        return found

    async def add_dependency(self, key: str, dependency: str) -> None:
        self._registered.setdefault(dependency, set()).add(key)

    async def subscribe(self, event: str, target: str) -> None:
        targets = self._subscriptions.setdefault(event, [])
        if target not in targets:
            targets.append(target)

    async def subscriptions(self, event: str) -> list[str]:
        return list(self._subscriptions.get(event, []))

    async def events(self) -> list[str]:
        return sorted(self._subscriptions)

    def tracked_keys(self) -> int:
        """How many keys carry a tag or a dependency (to show the index stays bounded)."""
        return len(self._expiry)
