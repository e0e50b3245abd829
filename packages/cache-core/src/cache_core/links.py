"""What ties one key to others: tag, event and dependency invalidation, as a plugin supplies it.

cache-core removes keys (deletes, patterns) and expires them (TTL) by itself. Everything
that reaches further, the tags a write carries, the keys it depends on, the category rules,
the configured event triggers and runtime subscriptions, and the cascade from a removed key
to what depends on it, is a :class:`Links` plugin's (cache-plugins-invalidation ships
one, registered through ``cache_register_links``). It keeps what it knows in the
:class:`~cache_core.invalidation.InvalidationIndex` that ``invalidation.backend`` names.

Without one, each call that would need it is refused with :class:`NotInstalledError`
naming the extra to install, before anything changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

from attrs import Factory, define, frozen

from cache_core.errors import NotInstalledError
from cache_core.extras import LINKS_EXTRA, install_hint

if TYPE_CHECKING:
    from cache_core.config import Config
    from cache_core.invalidation import InvalidationIndex

KeySet = set[str]
T = TypeVar("T")


@frozen
class LinksContext:
    """What a :class:`Links` plugin is built with: narrow callables of the agent, never the
    agent itself."""

    config: Config
    index: InvalidationIndex
    """The index ``invalidation.backend`` names, behind L2's guard when it lives in L2."""
    purge: Callable[[KeySet], Awaitable[KeySet]]
    """Remove exactly these keys from L1, the write buffers and L2 (no cascade); returns
    the ones that were held somewhere."""
    drop_local: Callable[[KeySet], Awaitable[KeySet]]
    """Remove exactly these keys from this instance's L1 and write buffers, not from L2
    (which the caller saw to already); returns the ones that were held."""
    buffered: Callable[[KeySet], KeySet]
    """Those of these keys whose write a write buffer of this instance holds."""
    check_key: Callable[[object], str]
    check_pattern: Callable[[object], str]
    """A pattern the agent derived (an event's filled target): a valid glob."""
    check_caller_pattern: Callable[[object], str]
    """A pattern a caller gave: within ``limits.max_pattern_*`` too."""
    check_names: Callable[[Sequence[str], str], None]
    """Tag or event names (``what`` names them in the error)."""


@define
class Landing:
    """What an L2 tier that keeps the invalidation index beside its entries (Redis, outside
    Cluster) does and reports of one write or delete, inside its own atomic step.

    Whoever writes or deletes sets one in :data:`LANDING` around the call. A tier that can
    fills ``linked`` (which keys the index held anything for: links of their own, keys
    depending on them, registrations) and ``removed`` (the dependents of those keys' old
    values it removed in that step); with ``links`` given, it also leaves the index holding
    exactly those links for each key it stored, and says so in ``indexed`` (a delete: the
    deleted keys leave the index). ``linked`` None: the tier could not tell (a third-party
    tier, Cluster, an index kept elsewhere), and did nothing of the index."""

    links: Mapping[str, tuple[Sequence[str], Sequence[str]]] | None = None
    """Set by the writer: each written key's tags and dependencies, all it will carry."""
    plain: Collection[str] = ()
    """Set by the writer: keys it knows carry no links now, though the index may still
    list their old ones (settled only after the write lands). Written without ``links``,
    a key's entry otherwise records the tags the index lists for it (tag versions)."""
    linked: set[str] | None = None
    removed: set[str] = Factory(set)
    """Keys the tier removed itself in the same step, as dependents of the linked keys'
    old values, that held an entry (counted by whoever invalidates)."""
    reached: set[str] = Factory(set)
    """Every dependent that step reached, stored or not: the writer's own copies of them
    (L1, write buffers) must go too."""
    indexed: bool = False
    unfinished: bool = False
    """The tier's removal of dependents stopped at its bound: more may be left, for the
    index's own lookup."""


LANDING: ContextVar[Landing | None] = ContextVar("cache_core.links.landing", default=None)
"""The :class:`Landing` of the write or delete the current task is making, if any: a
context variable, because the report crosses the strategy and the guarded tier, which
neither know of links."""


async def watching(work: Awaitable[T], landing: Landing | None) -> T:
    """Await ``work`` with ``landing`` as the task's :data:`LANDING` (None: none)."""
    token = LANDING.set(landing)
    try:
        return await work
    finally:
        LANDING.reset(token)


@frozen
class EventTargets:
    """What one event reaches, validated: tag names and key globs (or literal keys)."""

    tags: list[str]
    patterns: list[str]


@runtime_checkable
class Registrations(Protocol):
    """``agent.invalidation_manager``: runtime registrations, each returned awaitable (await
    it to wait until the index holds it); bad input raises at the call."""

    def register_dependency(self, dependent: str, source: str) -> Awaitable[None]: ...
    def register_event_subscription(self, event: str, key_or_pattern: str) -> Awaitable[None]: ...


@runtime_checkable
class Links(Protocol):
    """Tag, event and dependency invalidation. Built once as ``cls(None, LinksContext)``;
    at most one is registered. Every removal it makes goes through ``context.purge``."""

    PLUGIN_NAME: ClassVar[str]
    registrations: Registrations

    async def start(self) -> None:
        """After the index has started: apply what was registered before."""
        ...

    async def close(self, timeout: float) -> None:
        """Before the index closes: apply what is queued, within ``timeout``."""
        ...

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
        """Around one write of ``entries`` (key, TTL), each carrying ``tags`` and depending on
        ``dependencies`` (checked already): index them, call ``land()`` (the write itself)
        once, then settle the index and remove what depended on the keys' old values (the
        written keys spared). ``buffered``: a write into a buffer that reports its flushes
        (``on_landed``); one that carries no links puts nothing on the wire here: its old
        links and dependents are seen to when its flush has landed (:meth:`landed`).
        ``direct``: ``land()`` writes L2 in this call (no buffer between), so a tier that
        keeps the index in its own steps can index it there (see :class:`Landing`).
        Should ``land()`` raise, nothing after it runs."""
        ...

    def flush_landing(self, keys: Sequence[str]) -> Landing:
        """The :class:`Landing` a write buffer's flush of ``keys`` is made under (which of
        them were written without links since they were last indexed)."""
        ...

    async def landed(
        self,
        entries: Sequence[tuple[str, float | None]],
        linked: Collection[str] | None = None,
    ) -> None:
        """A write buffer's flush has landed ``entries`` (key, TTL left) in L2: settle the
        index of those whose write was deferred (their old links dropped, their old values'
        dependents removed). ``linked``: the flush's :class:`Landing`, when its tier told
        (only those keys have anything to settle). Awaited by the buffer after each flush,
        outside its lock."""
        ...

    async def remove(self, keys: KeySet) -> KeySet:
        """Remove ``keys`` and everything they reach (their dependents, transitively and
        cycle-safe, and by category rules); returns what was held somewhere."""
        ...

    async def cascade(self, removed: KeySet) -> KeySet:
        """``removed`` were just removed (by a pattern): remove what they reach; returns
        ``removed`` and everything else removed."""
        ...

    async def invalidate_tags(self, tags: Sequence[str]) -> KeySet:
        """Remove every key carrying any of ``tags`` (names checked already), and what they
        reach."""
        ...

    async def retire_tags(self, tags: Sequence[str], *, listed: bool) -> KeySet | int | None:
        """Invalidate every key carrying any of ``tags`` (names checked already) and what
        they reach without finding them, where the index can (tag versions): how many keys
        that was, counted, not listed; or, with ``listed`` (the caller removes more in the
        same request and counts each key once), the keys, found as
        :meth:`invalidate_tags` finds them. None where it cannot: :meth:`invalidate_tags`
        then does the job."""
        ...

    async def event_targets(
        self, event: str, context: Mapping[str, Any] | None, scope: str
    ) -> EventTargets:
        """What ``event`` reaches (configured triggers and runtime subscriptions, placeholders
        filled from ``context``), ``scope`` put before each; raises on bad input (an unknown
        event, a context field no target uses) before anything is removed."""
        ...


NOT_INSTALLED = (
    f"tag, event and dependency invalidation is not installed; {install_hint(LINKS_EXTRA)}"
)


def not_installed(what: str) -> NotInstalledError:
    """The refusal of ``what`` (a call's tags, dependencies, event...) without a Links
    plugin: one line naming the extra."""
    return NotInstalledError(f"{what}: {NOT_INSTALLED}")


class Unregistered:
    """``agent.invalidation_manager`` without a :class:`Links` plugin: each registration is
    refused, naming the extra."""

    def register_dependency(self, dependent: str, source: str) -> Awaitable[None]:
        raise not_installed("register_dependency")

    def register_event_subscription(self, event: str, key_or_pattern: str) -> Awaitable[None]:
        raise not_installed("register_event_subscription")
