"""Where tags, key dependencies and event subscriptions are indexed, and how events expand.

The orchestrator records every write's tags and dependencies in an
:class:`InvalidationIndex` and asks it which keys a tag, a deleted key or an event reaches.
cache-core ships :class:`LocalIndex` (in-process: right for one instance); the
invalidation plugin adds an index kept in Redis so every instance shares it.

An event's targets are key globs, literal keys or ``tag:NAME``, each may hold
``{placeholders}`` filled from the event's context (``user:{user_id}:*``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from attrs import define

from cache_core.errors import InvalidValueError, MissingContextError
from cache_core.templates import PLACEHOLDER

if TYPE_CHECKING:
    from cache_core.config import Config
    from cache_core.tiers.base import RemoteTier

TAG_PREFIX = "tag:"


class EventTrigger(StrEnum):
    """The seed's events; any name configured under ``invalidation.event_triggers`` works."""

    USER_PROFILE_UPDATE = "user_profile_update"
    CONTENT_MODIFICATION = "content_modification"
    MASTERY_UPDATE = "mastery_update"


@define(frozen=True)
class IndexContext:
    """What an index is built with: the config, the clock and the L2 tier (None: L1 only)."""

    config: Config
    clock: Callable[[], float]
    l2: RemoteTier | None


@runtime_checkable
class InvalidationIndex(Protocol):
    """Tags, dependencies and runtime event subscriptions, queried at invalidation time."""

    PLUGIN_NAME: ClassVar[str]

    # A property so a wrapper (GuardedIndex) answers for the index it wraps; an index
    # itself sets a class attribute.
    @property
    def shared(self) -> bool:
        """Whether every instance using the same L2 sees this index (a tag set through one
        is known to all): ``serve --workers N`` refuses an index that is not."""
        ...

    # Optional, so not declared here: ``lives_in(l2) -> bool``, a classmethod saying
    # whether the index can keep its sets in that L2 tier; ``invalidation.backend: auto``
    # picks the first installed index that can, else ``local``.

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def record(
        self,
        entries: Sequence[tuple[str, float | None, Sequence[str]]],
        dependencies: Sequence[str],
    ) -> set[str]:
        """Before a write of ``entries`` (key, TTL, tags): each key carries its tags and
        depends on ``dependencies`` as well as what it carried before, until :meth:`settle`
        (should the write fail, the old value is still reached through its old links).
        Returns the keys that depend directly on any of them (a changed key invalidates its
        dependents)."""
        ...

    def settle(
        self,
        entries: Sequence[tuple[str, float | None, Sequence[str]]],
        dependencies: Sequence[str],
    ) -> Awaitable[None] | None:
        """Once the write :meth:`record` announced has landed (never after a failed one):
        each key carries exactly its tags and depends on exactly ``dependencies``, with its
        TTL. Returns None when that is done already (nothing changed: the common case costs
        no I/O), else an awaitable doing the rest. Skipped or failed, it leaves the links of
        both values: a superset, which invalidates too much, never too little."""
        ...

    async def forget(self, keys: Iterable[str]) -> None:
        """After ``keys`` left the cache: drop them from every index."""
        ...

    async def keys_for_tags(self, tags: Iterable[str]) -> set[str]:
        """Every key carrying ANY of ``tags``."""
        ...

    async def dependents(self, keys: Iterable[str]) -> set[str]:
        """Every key that depends on ``keys``, transitively (cycle-safe), ``keys`` excluded."""
        ...

    async def add_dependency(self, key: str, dependency: str) -> None:
        """From now on ``key`` depends on ``dependency``, whatever later writes of ``key``
        declare (a registration, kept apart from the links a write carries)."""
        ...

    async def subscribe(self, event: str, target: str) -> None: ...
    async def subscriptions(self, event: str) -> list[str]: ...
    async def events(self) -> list[str]: ...


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


def fill(target: str, context: Mapping[str, Any], event: str) -> str:
    """``target`` with its placeholders replaced from ``context`` (glob characters escaped).

    An event without a field is a statement that something of that kind changed: in a
    key glob a missing placeholder matches any segment (``user:{user_id}:*`` is
    ``user:*:*``). A tag is matched by name only, so a tag target cannot widen that way:
    its fields are required."""
    is_tag = target.startswith(TAG_PREFIX)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in context:
            if is_tag:
                raise MissingContextError(
                    f"event {event!r} needs context field {name!r} for its target {target!r} "
                    "(a tag is matched by name, never by pattern)"
                )
            return "*"
        given = context[name]
        if isinstance(given, bool) or not isinstance(given, str | int | float):
            # Python's spelling of null or true is no key segment anyone wrote.
            raise InvalidValueError(
                f"context.{name}: expected a string or a number, got {type(given).__name__}"
            )
        text = str(given)
        # A context value is data, never a pattern: escape what a glob would read.
        return re.sub(r"([*?\[\]\\])", r"\\\1", text)

    return PLACEHOLDER.sub(value, target)


def widest(target: str) -> str:
    """``target`` as an event without context fills it: each placeholder a ``*``."""
    return PLACEHOLDER.sub("*", target)
