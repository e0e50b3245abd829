"""What a tier is: the protocols the orchestrator calls and the context a tier is built with.

An L1 tier (:class:`LocalTier`) holds JSON bytes in process. An L2 tier (:class:`RemoteTier`)
is storage only: it keeps the bytes core hands it and gives them back. Core frames them
(header, codec, expiry) and compresses them before they reach the tier, and checks every
frame read back (:class:`~cache_core.tiers.guarded.GuardedTier`), so a third-party L2 tier
compresses, expires and refuses planted data exactly as the Redis tier does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from attrs import define

if TYPE_CHECKING:
    from cache_core.config import Config
    from cache_core.plugins import Registry


@define(frozen=True, slots=True)
class StoredValue:
    """An entry as the guarded L2 tier answers a read: its JSON bytes (the frame opened and
    checked) and how long it has left."""

    data: bytes
    ttl_remaining: float | None
    """Seconds until it expires; None when it never does."""


@define(frozen=True)
class TierContext:
    """What a tier gets besides its own options: the whole config, the registry and a clock.
    (Framing and compression are core's: an L2 tier stores what it is given.)"""

    config: Config
    registry: Registry
    clock: Callable[[], float]


@runtime_checkable
class LocalTier(Protocol):
    """An in-process tier (L1): synchronous, so an L1 hit never yields to the loop.

    Keys are str, values are the JSON bytes of the value; ``ttl`` is seconds (None: no
    expiry). ``size_bytes`` is the accounted size of what it holds.
    """

    PLUGIN_NAME: ClassVar[str]
    max_bytes: int
    default_ttl: float | None

    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, data: bytes, ttl: float | None) -> bool: ...
    def fits(self, key: str, data: bytes) -> bool:
        """Whether an entry of ``key`` and ``data`` can be held at all."""
        ...

    def delete(self, key: str) -> bool: ...
    def delete_matching(self, pattern: str) -> list[str]: ...
    def clear(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...
    def __len__(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def evictions(self) -> int: ...


@runtime_checkable
class LocalBatches(Protocol):
    """What a :class:`LocalTier` may also have (optional): many gets or sets in one call,
    each exactly what the single calls in that order would do (a key asked twice is
    answered twice). A batch read asks L1 for its keys, and promotes what L2 answered, in
    one call each when the tier has these, and in one call a key otherwise."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...
    def set_many(self, items: Iterable[tuple[str, bytes, float | None]]) -> None:
        """``set(key, data, ttl)`` for each item; what can never fit is skipped."""
        ...


class CoherenceListener(Protocol):
    """What a shared tier tells the agent about changes made by other instances."""

    def keys_changed(self, keys: Sequence[str]) -> None:
        """Another instance wrote or deleted ``keys``: drop any local copy."""

    def pattern_changed(self, pattern: str) -> None:
        """Another instance invalidated every key matching the glob ``pattern``."""

    def lost(self) -> None:
        """Change notices may have been missed: stop serving local copies."""

    def restored(self) -> None:
        """Notices flow again: local copies may be kept and served anew."""


@runtime_checkable
class RemoteTier(Protocol):
    """An L2 tier: storage of opaque bytes under str keys, behind I/O. Every data method is
    a coroutine; a batch is one round trip where the store allows.

    Built as ``tier_cls(options, context)``: ``options`` is the tier's ``Options`` (attrs,
    structured from ``cache_tiers.l2``), ``context`` a :class:`TierContext`.

    What core does, so a tier must not: the agent calls the tier through
    :class:`~cache_core.tiers.guarded.GuardedTier`, which frames and compresses each value
    before ``set`` (a header with the format version, codec id, absolute expiry and the
    write's stamp), opens
    and checks each frame ``get`` returns (anything can be planted in a shared store: a
    frame that is not ours is that key's :class:`~cache_core.errors.CorruptEntryError`),
    times, traces and bounds every call and keeps the circuit breaker. A tier must not
    decode, frame, compress or otherwise interpret the bytes: it stores them as given
    and returns them byte for byte.

    What a tier must do:

    - ``set``/``set_many`` store ``data`` under ``key`` for ``ttl`` seconds (None: no
      expiry), replacing what was there; ``set_many`` items are ``(key, data, ttl)``.
      That is last writer wins: a tier with only these may have a write_back flush put
      an instance's older value over a newer one another instance wrote meanwhile. A
      tier that can compare before it stores offers :class:`ConditionalSet` too, and
      then core writes through it alone: no write ever replaces a newer one.
      Honour the TTL: an entry past it is gone for ``get``, ``delete`` and ``count``
      (expire it, or drop it when read; core also refuses a frame past its expiry).
    - ``get`` returns the stored bytes or None; ``get_many`` one answer per key asked, in
      order (a key asked twice answered twice).
    - ``delete`` removes ``keys`` and returns those that existed. ``delete_matching``
      removes every key matching a glob with Redis's semantics (use
      :func:`cache_core.globs.matcher`, as L1 does, so both tiers agree) and returns them.
      ``count`` is how many keys the tier holds for this agent.
    - ``try_lock``/``unlock`` are leases every instance sharing the store sees.
    - Failure: raise anything (``OSError``, the client library's errors) when the store
      cannot answer; core turns it into a 503 and counts it against the breaker.
      :class:`~cache_core.errors.CacheError` subclasses are the request's own fault
      (never counted), :class:`~cache_core.errors.CorruptEntryError` says the store
      answered with what cannot be read (never counted either).
    """

    PLUGIN_NAME: ClassVar[str]
    default_ttl: float | None
    """TTL in seconds for entries written without one (None: none)."""

    def __init__(self, options: Any, context: TierContext) -> None: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def get(self, key: str) -> bytes | None: ...
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...
    async def set(self, key: str, data: bytes, ttl: float | None) -> None: ...
    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None: ...
    async def delete(self, keys: Sequence[str]) -> list[str]: ...
    async def delete_matching(self, pattern: str) -> list[str]: ...
    async def count(self) -> int: ...
    def describe(self) -> dict[str, Any]:
        """What /stats and check-config show of the tier (where it stores, its settings)."""
        ...

    def attach(self, listener: CoherenceListener) -> bool:
        """Called once, before ``start``: report other instances' changes to ``listener``.
        Return True when the tier will (L1 then serves only after ``listener.restored()``),
        False when no other instance can share it (L1 serves at once)."""
        ...

    async def try_lock(self, name: str, lease: float) -> str | None:
        """Take the lock ``name`` for ``lease`` seconds unless another holder has it; the
        token to release it with, or None. Every instance sharing the tier sees the lock."""
        ...

    async def unlock(self, name: str, token: str) -> None:
        """Release ``name`` if ``token`` still holds it (an expired lease is not stolen)."""
        ...


@runtime_checkable
class FencedLocks(Protocol):
    """What a :class:`RemoteTier` may also have (optional), for ``agent.lock``: locks seen by
    every instance sharing the tier, each acquisition given a fencing token larger than
    any given before for that name, so a resource the holder writes to can refuse a
    holder whose lease ran out (its token is smaller than the one it has seen since)."""

    async def acquire_lock(self, name: str, lease: float) -> int | None:
        """Take ``name`` for ``lease`` seconds unless another holder has it: the fencing
        token, or None."""
        ...

    async def extend_lock(self, name: str, token: int, lease: float) -> bool:
        """Give the holder of ``token`` ``lease`` seconds from now; False if its lease ran
        out (or another holder has the lock)."""
        ...

    async def release_lock(self, name: str, token: int) -> bool:
        """Release ``name`` if ``token`` still holds it; False if its lease ran out."""
        ...


@runtime_checkable
class TouchMany(Protocol):
    """What a :class:`RemoteTier` may also have (optional), for sliding policies: extend
    entries' TTLs without rewriting them."""

    async def touch_many(self, items: Sequence[tuple[str, float]]) -> None:
        """Let each ``(key, ttl)`` entry live ``ttl`` seconds from now, where it exists (a
        missing or deleted one stays so)."""
        ...


@runtime_checkable
class ConditionalSet(Protocol):
    """What a :class:`RemoteTier` may also have (optional): a set that never replaces a
    newer value. Every frame core writes carries the stamp its write was given when it was
    made (:func:`cache_core.frames.frame_stamp` reads it from a stored frame; frames of
    earlier formats, and anything that is not a frame, carry none and are always
    replaced). With it, every write core makes (write_through, write_around, a write_back
    flush) goes through here, so the value of the newest write stays whatever order
    writes reach the store in; without it, last writer wins (see ``set``)."""

    async def set_unless_newer(
        self, items: Sequence[tuple[str, bytes, float | None, int]], horizon: int
    ) -> list[int | None]:
        """For each ``(key, data, ttl, stamp)``: store it as ``set`` does, unless the frame
        stored under ``key`` has a stamp of at least ``stamp`` (equal: the first to land
        stays) and at most ``horizon`` (a stamp beyond it comes from a clock gone wrong
        and does not count). Each check and store is one step no other write comes
        between. One answer an item, in order: None when stored, else the stamp that
        stayed. Raise as ``set`` does; a failed call may have stored any of the items."""
        ...


@runtime_checkable
class ConditionalDelete(Protocol):
    """What a :class:`RemoteTier` with :class:`ConditionalSet` may also have (optional): a
    delete that leaves its stamp behind, so a write made before it (another instance's
    write_back flush) cannot land after it and bring the key back."""

    async def delete_unless_newer(
        self, keys: Sequence[str], tombstone: bytes, ttl: float, horizon: int
    ) -> list[str]:
        """Replace each key's entry by ``tombstone`` (a frame core made:
        :func:`cache_core.frames.tombstone`, carrying the delete's stamp) for ``ttl``
        seconds, unless the stored frame has a stamp of at least the tombstone's and at
        most ``horizon`` (a newer write stays); ``set_unless_newer`` then refuses writes
        older than the delete. Returns the keys whose live entry it removed (a tombstone
        is no entry). Where the store is full, a plain delete instead."""
        ...


@runtime_checkable
class TTLLookup(Protocol):
    """What a :class:`RemoteTier` may also have (optional): the TTL it keeps for each key.

    Core reads an entry's expiry from its frame, so this is asked only for frames of
    format 1 (they carry none), which only the Redis tier of earlier releases wrote."""

    async def ttls(self, keys: Sequence[str]) -> list[float | None]:
        """Seconds each key has left, in order; None when it never expires, 0 when it is
        gone."""
        ...


@runtime_checkable
class HealthNotes(Protocol):
    """What a :class:`RemoteTier` may also have (optional, so it is not in RemoteTier):
    advice for the operator about the server, shown on /health as ``warnings``. Notes never
    make the agent degraded: the server serves, it is only set up in a way that will hurt
    (a Redis with no memory limit, or one that refuses writes once full)."""

    def health_notes(self) -> list[str]: ...
