"""The L1 tier: a byte-bounded LRU of JSON bytes with per-entry expiry, O(1) per operation.

An entry's weight is the memory it pins: ``sys.getsizeof`` of its key and of its bytes,
plus a fixed per-entry overhead (the record tuple, its expiry float and the ordered-dict
node). ``size_bytes`` is exactly the sum of the weights of the entries held, and never
exceeds ``max_bytes``: a set evicts from the least recently used end until it fits, and a
value that could never fit is refused rather than emptying the cache for nothing.
"""

from __future__ import annotations

import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from attrs import define

from cache_core.etags import etag_of
from cache_core.globs import is_literal, matcher

if TYPE_CHECKING:
    from cache_core.tiers.base import LocalTier, TierContext

MIB = 1024 * 1024

# The record tuple and its expiry float, plus the linked-list node and hash-table slot an
# OrderedDict keeps per key (measured on CPython 3.11 x86-64: about 100 bytes).
ENTRY_OVERHEAD = sys.getsizeof((b"", 0.0, 0)) + sys.getsizeof(0.0) + 104


def entry_weight(key: str, data: bytes) -> int:
    """The bytes an entry of ``key`` and ``data`` is accounted for in L1."""
    return sys.getsizeof(key) + sys.getsizeof(data) + ENTRY_OVERHEAD


ETAG_WEIGHT = sys.getsizeof('W/"0123456789abcdef"') + 8
"""Bytes an entry's kept entity tag adds to its weight (the string and its reference)."""
_Record = tuple[bytes, float, int] | tuple[bytes, float, int, str]
"""A MemoryTier entry: data, expiry, weight, and its entity tag once asked for."""


class HeldEntries:
    """What the in-process tiers share: options, the byte bound, the clock, and everything
    that only reads ``_entries`` (key -> record whose item 1 is the expiry). A policy
    subclass keeps the order and implements get, set, delete and clear."""

    EVICTION: ClassVar[str]

    @define(frozen=True)
    class Options:
        max_size_mb: float = 100.0
        ttl: float | None = 60.0
        """Seconds an entry may live in L1 (a cap below L2's TTL when L2 exists)."""
        eviction: str = "lru"

    _entries: MutableMapping[Any, Any]

    def __init__(
        self,
        options: HeldEntries.Options | None = None,
        context: TierContext | None = None,
        *,
        clock: Callable[[], float] | None = None,
        weigher: Callable[[Any, bytes], int] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        """``weigher``, ``max_bytes`` and keys of any hashable type are for simulations
        (a weight of 1 an entry makes the bound a count of entries)."""
        options = options or self.Options()
        if options.max_size_mb <= 0:
            raise ValueError("max_size_mb must be greater than 0")
        if options.eviction != self.EVICTION:
            raise ValueError(f"eviction {options.eviction!r} is not provided by this tier")
        self.max_bytes = max_bytes if max_bytes is not None else int(options.max_size_mb * MIB)
        self.default_ttl = options.ttl
        self._clock = clock or (context.clock if context is not None else time.monotonic)
        self._weigh = weigher or self.weight
        self._overhead: int | None = (
            ENTRY_OVERHEAD if weigher is None and type(self).weight is HeldEntries.weight else None
        )
        """The fixed part of :func:`entry_weight` when it is what weighs entries here."""
        self._size = 0
        self._evictions = 0
        self._expirations = 0

    @staticmethod
    def weight(key: Any, data: bytes) -> int:
        """The bytes an entry pins (see :func:`entry_weight`)."""
        return entry_weight(key, data)

    def fits(self, key: str, data: bytes) -> bool:
        return self._weigh(key, data) <= self.max_bytes

    def delete(self, key: Any) -> bool:
        raise NotImplementedError

    def delete_matching(self, pattern: str) -> list[str]:
        """Remove every key matching the Redis glob ``pattern``; return the removed keys."""
        if is_literal(pattern):
            return [pattern] if self.delete(pattern) else []
        match = matcher(pattern)
        matching = [key for key in self._entries if match(key)]
        return [key for key in matching if self.delete(key)]

    def tagged(self, key: str) -> tuple[bytes, str, float | None] | None:
        """:meth:`get` with the entry's entity tag (cache_core.etags) and its seconds left
        (None: no expiry). The tag is computed on the entry's first call and kept with it:
        a GET of a hot key never digests its bytes again."""
        data = self.get(key)
        if data is None:
            return None
        entry = self._entries[key]
        left = entry[1] - self._clock()
        return data, self._etag(key, entry), None if math.isinf(left) else left

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def _etag(self, key: str, entry: Any) -> str:
        """``entry``'s entity tag: the one kept with it, else computed now and kept."""
        raise NotImplementedError

    def touch(self, key: str, ttl: float) -> None:
        """Let ``key`` live ``ttl`` seconds from now (a sliding expiry), if it is held."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] > self._clock():
            self._set_expiry(key, entry, self._clock() + ttl)

    def _set_expiry(self, key: str, entry: Any, expires_at: float) -> None:
        raise NotImplementedError

    def ttl_remaining(self, key: str) -> float | None:
        """Seconds ``key`` has left in L1 (None: no expiry); KeyError when absent or expired."""
        left: float = self._entries[key][1] - self._clock()
        if left <= 0:
            raise KeyError(key)
        return None if math.isinf(left) else left

    def keys(self) -> list[str]:
        """Live keys, in the policy's order (a snapshot; for tests and introspection)."""
        now = self._clock()
        return [key for key, entry in self._entries.items() if entry[1] > now]

    def __contains__(self, key: object) -> bool:
        entry = self._entries.get(key)
        return entry is not None and bool(entry[1] > self._clock())

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._size

    def describe(self) -> dict[str, Any]:
        """The policy and its state, for ``/stats`` (a policy with state adds to it)."""
        return {"eviction": self.EVICTION}

    @property
    def evictions(self) -> int:
        return self._evictions

    @property
    def expirations(self) -> int:
        return self._expirations


class MemoryTier(HeldEntries):
    """Byte-bounded LRU; ``get`` refreshes recency, expired entries read as misses.
    ``keys()`` lists the least recently used first."""

    PLUGIN_NAME: ClassVar[str] = "memory"
    EVICTION: ClassVar[str] = "lru"

    def __init__(
        self,
        options: HeldEntries.Options | None = None,
        context: TierContext | None = None,
        **simulation: Any,
    ) -> None:
        super().__init__(options, context, **simulation)
        # key -> (data, expires_at, weight[, etag]); order is recency, oldest first.
        self._entries: OrderedDict[str, _Record] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self._drop(key, entry[2])
            self._expirations += 1
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def tagged(self, key: str) -> tuple[bytes, str, float | None] | None:
        # get() and the tag in one lookup: this is the HTTP GET's L1 hit.
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        expires_at = entry[1]
        if expires_at <= now:
            self._drop(key, entry[2])
            self._expirations += 1
            return None
        self._entries.move_to_end(key)
        etag = entry[3] if len(entry) == 4 else self._etag(key, entry)
        return entry[0], etag, None if expires_at == math.inf else expires_at - now

    def _set_expiry(self, key: str, entry: _Record, expires_at: float) -> None:
        self._entries[key] = (entry[0], expires_at, *entry[2:])

    def _etag(self, key: str, entry: _Record) -> str:
        if len(entry) == 4:
            return entry[3]
        etag = etag_of(entry[0])
        # Kept, and weighed: L1's byte bound holds with the tags in it.
        self._entries[key] = (entry[0], entry[1], entry[2] + ETAG_WEIGHT, etag)
        self._size += ETAG_WEIGHT
        if self._size > self.max_bytes:
            self._evict()  # the oldest first: never this entry, the newest
        return etag

    def set(self, key: str, data: bytes, ttl: float | None) -> bool:
        """Store ``data`` for ``ttl`` seconds; False when it can never fit (nothing changes)."""
        weight = self._weigh(key, data)
        if weight > self.max_bytes:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= old[2]
        expires_at = math.inf if ttl is None else self._clock() + ttl
        self._entries[key] = (data, expires_at, weight)
        self._size += weight
        if self._size > self.max_bytes:
            self._evict()
        return True

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """:meth:`get` of each key, in order, in one pass: a batch of keys L1 does not hold
        (the usual batch that goes on to L2) costs no call a key."""
        entries = self._entries
        found: list[Any] = list(map(entries.get, keys))
        if found.count(None) == len(found):
            return found
        now = self._clock()
        out: list[bytes | None] = []
        append = out.append
        for key, entry in zip(keys, found, strict=True):
            if entry is None:
                append(None)
            elif entry[1] > now:
                entries.move_to_end(key)
                append(entry[0])
            else:
                if entries.pop(key, None) is not None:  # (not if asked twice)
                    self._size -= entry[2]
                    self._expirations += 1
                append(None)
        return out

    def set_many(self, items: Iterable[tuple[str, bytes, float | None]]) -> None:
        """:meth:`set` of each ``(key, data, ttl)``, in order, the clock read once (an entry
        that can never fit is skipped)."""
        now = self._clock()
        entries, max_bytes, weigh = self._entries, self.max_bytes, self._weigh
        overhead = self._overhead
        inf = math.inf
        size = self._size
        for key, data, ttl in items:
            if overhead is not None and type(key) is str and type(data) is bytes:
                # entry_weight, inlined: for these types (never tracked by the collector)
                # sys.getsizeof is __sizeof__, at a quarter of the cost.
                weight = key.__sizeof__() + data.__sizeof__() + overhead
            else:
                weight = weigh(key, data)
            if weight > max_bytes:
                continue
            old = entries.pop(key, None)
            if old is not None:
                size -= old[2]
            entries[key] = (data, inf if ttl is None else now + ttl, weight)
            size += weight
            if size > max_bytes:
                self._size = size
                self._evict()
                size = self._size
        self._size = size

    def _evict(self) -> None:
        entries = self._entries
        while self._size > self.max_bytes:
            weight = entries.popitem(last=False)[1][2]
            self._size -= weight
            self._evictions += 1

    def _drop(self, key: str, weight: int) -> None:
        del self._entries[key]
        self._size -= weight

    def delete(self, key: str) -> bool:
        """Drop ``key``; True only if it was live (an expired entry is dropped silently)."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._size -= entry[2]
        return entry[1] > self._clock()

    def clear(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        self._size = 0
        return count


__all__ = ["ENTRY_OVERHEAD", "ETAG_WEIGHT", "HeldEntries", "MemoryTier", "entry_weight"]


class BypassTier:
    """An L1 that holds nothing: served in place of L1 while it may be stale (its
    coherence notices stopped), so every read goes to L2."""

    PLUGIN_NAME: ClassVar[str] = "bypass"

    def __init__(self, behind: LocalTier | None = None) -> None:
        self.max_bytes = behind.max_bytes if behind is not None else 0
        self.default_ttl = behind.default_ttl if behind is not None else None

    def get(self, key: str) -> bytes | None:
        return None

    def tagged(self, key: str) -> tuple[bytes, str, float | None] | None:
        return None

    def set(self, key: str, data: bytes, ttl: float | None) -> bool:
        return False

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [None] * len(keys)

    def set_many(self, items: Iterable[tuple[str, bytes, float | None]]) -> None:
        return None

    def fits(self, key: str, data: bytes) -> bool:
        return False

    def delete(self, key: str) -> bool:
        return False

    def delete_matching(self, pattern: str) -> list[str]:
        return []

    def clear(self) -> int:
        return 0

    def __contains__(self, key: object) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    @property
    def size_bytes(self) -> int:
        return 0

    @property
    def evictions(self) -> int:
        return 0
