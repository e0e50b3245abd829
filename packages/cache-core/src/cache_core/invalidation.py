"""The invalidation index: where tags, key dependencies and event subscriptions are kept.

The :class:`~cache_core.links.Links` plugin (tag, event and dependency invalidation)
records every write's tags and dependencies in an :class:`InvalidationIndex` and asks it
which keys a tag, a deleted key or an event reaches. The protocol is core's, beside the
tier protocols: cache-plugins-invalidation ships an in-process index (``local``: right for
one instance), cache-plugins-redis one kept in Redis that every instance shares. Without a
Links plugin no index is built: there is nothing to index.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

from attrs import define

if TYPE_CHECKING:
    from cache_core.config import Config
    from cache_core.tiers.base import RemoteTier


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
    # picks the first installed index that can, else ``local``. An index that is shared is
    # called through L2's guard (breaker, timeout), as L2 is.

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
