"""What a tier is: the protocols the orchestrator calls and the context a tier is built with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from attrs import define

from cache_core.errors import CorruptEntryError

if TYPE_CHECKING:
    from cache_core.config import Config
    from cache_core.frames import CodecSet
    from cache_core.plugins import Registry
    from cache_core.policies import PolicyTable


@define(frozen=True, slots=True)
class StoredValue:
    """An entry read from a remote tier: its JSON bytes and how long it has left."""

    data: bytes
    ttl_remaining: float | None
    """Seconds until it expires; None when it never does."""


@define(frozen=True)
class TierContext:
    """What a tier gets besides its own options: the whole config, the registry, a clock,
    the codecs that frame L2 values and the policies (whether a key's value compresses)."""

    config: Config
    registry: Registry
    clock: Callable[[], float]
    codecs: CodecSet
    policies: PolicyTable


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
    """A tier behind I/O (L2). Every method is a coroutine; batches are one round trip.

    ``get`` raises :class:`~cache_core.errors.CorruptEntryError` for an entry it cannot
    read; ``get_many`` reports one in its place instead (an exception instance in the
    list, the other keys answered), so one bad entry costs only its own key.
    ``set_many`` items are ``(key, data, ttl)``. ``delete`` returns the keys that existed.
    ``delete_matching`` removes every key matching a Redis glob and returns the keys it
    removed. ``count`` is how many keys the tier holds for this agent.
    """

    PLUGIN_NAME: ClassVar[str]
    default_ttl: float | None

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def get(self, key: str) -> StoredValue | None: ...
    async def get_many(
        self, keys: Sequence[str]
    ) -> list[StoredValue | CorruptEntryError | None]: ...
    async def set(self, key: str, data: bytes, ttl: float | None) -> None: ...
    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None: ...
    async def delete(self, keys: Sequence[str]) -> list[str]: ...
    async def delete_matching(self, pattern: str) -> list[str]: ...
    async def count(self) -> int: ...
    def describe(self) -> dict[str, Any]: ...
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
class HealthNotes(Protocol):
    """What a :class:`RemoteTier` may also have (optional, so it is not in RemoteTier):
    advice for the operator about the server, shown on /health as ``warnings``. Notes never
    make the agent degraded: the server serves, it is only set up in a way that will hurt
    (a Redis with no memory limit, or one that refuses writes once full)."""

    def health_notes(self) -> list[str]: ...
