"""The adaptive W-TinyLFU L1 tier: ``cache_tiers.l1.eviction: wtinylfu``.

LRU keeps whatever came last, so a scan or a loop a little larger than the cache flushes
everything worth keeping. W-TinyLFU (Einziger, Friedman, Manes; Caffeine's policy) puts new
entries in a small LRU *window*; what leaves the window is a candidate for the *main*
space (an SLRU: probation, then protected once hit again) and is admitted only if it has
been asked for more often than the main entry it would push out. How often is estimated
by a count-min sketch of 4-bit counters, halved every ten accesses per key, so the
estimate follows what is popular now. A fixed window loses to LRU on recency-heavy
workloads, so once the cache has been full the window's share is adapted by hill climbing
on the hit ratio (Caffeine's climber): every sample of accesses, keep moving the window's
size in the direction that raised the hit ratio, in steps that shrink, and restart when
the workload changes. The climber is slow to find out that recency is all that matters, so
a :class:`RecencyGuard` (an LRU simulated on a sample of the keys) gives the window the
whole cache as soon as LRU has proven better, and the climber works down from there.

Everything is bounded by bytes: an entry weighs what it pins (as in the LRU tier, plus
the second map slot this policy keeps), the window, probation and protected sizes are
byte budgets, and ``size_bytes`` never exceeds ``max_bytes``. Every operation is O(1)
amortized. A hit stays cheap in Python: it bumps a small counter on the entry and moves it
in its segment; the sketch (a few hashes and four table updates) is touched only when a
key arrives and when it leaves, taking the hits it collected while held. A key's frequency
is the sketch's estimate plus its own count: the same figure, found for a fraction of the
cost, since both sides of every admission decision are held. A hit on one of the keys the
guard follows (one in its sample rate) also moves that key in the guard's LRU.
"""

from __future__ import annotations

import math
import random
import sys
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from attrs import define

from cache_core.etags import etag_of
from cache_core.tiers.memory import ETAG_WEIGHT, HeldEntries, entry_weight

if TYPE_CHECKING:
    from cache_core.tiers.base import TierContext

# The record list (6 slots instead of the LRU tier's 3-tuple) and the second map's slot.
EXTRA_OVERHEAD = sys.getsizeof([b"", 0.0, 0, 0, 0, False]) - sys.getsizeof((b"", 0.0, 0)) + 40

WINDOW, PROBATION, PROTECTED = 0, 1, 2
MAX_COUNT = 15
PROTECTED_SHARE = 0.8
"""Of the main space, what the protected segment may hold."""
PROVEN_HITS = 2
"""Hits in the window that send an admitted key straight to the protected segment instead
of probation: it has been asked for again already, and probation would put it first in
line for eviction (on the traces, against the same theine figures: 14 hit-ratio targets
missed without it, 11 with it, and 10.9 points short in all instead of 6.2)."""
INITIAL_WINDOW = 0.01
"""The window's first share of the cache (Caffeine's); the climber moves it."""
MIN_WINDOW = 0.01
"""The smallest share the climber may give the window: below it, a key needs to be asked
for twice within a handful of requests to be admitted at all."""
STEP = 0.03
"""A climbing step, as a share of the cache (half of Caffeine's 6.25%: with the recency
guard below taking the long way up, smaller steps wander less on short traces)."""
STEP_DECAY = 0.98
RESTART_THRESHOLD = 0.05
"""A hit-ratio change this large means a new workload: climb again in full steps."""
SAMPLE_FACTOR = 10
"""Accesses per climbing sample, per entry held."""
HALVING_FACTOR = 10
"""Sketch increments between halvings, per key the sketch is sized for (Caffeine's)."""
WIDTH_FACTOR = 4
"""Counters a row, per key the sketch is sized for."""
GUARD_KEYS = 512
"""The recency guard follows about this many keys: one in R, R a power of two."""
GUARD_MARGIN = 0.01
"""How far (a share of its accesses) LRU must be ahead before the guard acts."""
GUARD_SLACK = 32
"""... plus this many hits, so a few lucky ones early on do not count."""
GUARD_PERIODS = 10
"""Periods (about a cache's worth of accesses each) of evidence the guard needs."""
GUARD_Z = 10
"""... or LRU's lead is this many standard deviations of chance (it acts at once then)."""
GUARD_DECAY = 0.98
"""The guard's evidence fades by this much a period, so it follows the workload."""

MIN_SAMPLE = 256
_M64 = (1 << 64) - 1
_SEEDS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)
_HALF = bytes(b >> 1 for b in range(256))


class FrequencySketch:
    """A count-min sketch: 4 rows of 4-bit counters (one per byte, capped at 15), 4 a key
    held, indexed by multiplicative hashes of ``hash(key)``, behind a doorkeeper; every
    counter is halved (and the doorkeeper emptied) after 10 increments a key, so old
    popularity fades."""

    def __init__(self, capacity: int) -> None:
        self.resize(capacity)

    def resize(self, capacity: int, keep: Iterable[Hashable] = ()) -> None:
        """Sized for about ``capacity`` keys held; the counts of ``keep`` (the keys the
        cache holds) carry over, the rest start over."""
        kept = [(key, self.frequency(key)) for key in keep] if hasattr(self, "_rows") else []
        self.capacity = max(16, capacity)
        bits = (WIDTH_FACTOR * self.capacity - 1).bit_length()
        self.width = 1 << bits
        self._shift = 64 - bits
        self._rows = [bytearray(self.width) for _ in _SEEDS]
        # The doorkeeper: a Bloom filter (one byte a bit, 2 probes, 4 bits a counter) that
        # takes a key's first sighting, so keys seen once never reach the counters.
        self._door = bytearray(4 * self.width)
        self._door_shift = 64 - bits - 2
        self._additions = 0
        self.sample_size = HALVING_FACTOR * self.capacity
        for key, count in kept:
            for row, i in zip(self._rows, self._indexes(key), strict=True):
                row[i] = max(row[i], count)

    def _indexes(self, key: Hashable) -> list[int]:
        h = (hash(key) * 0xFF51AFD7ED558CCD) & _M64
        h ^= h >> 33
        shift = self._shift
        return [((h * seed) & _M64) >> shift for seed in _SEEDS]

    def _door_probes(self, key: Hashable) -> tuple[int, int]:
        h = (hash(key) * 0xC4CEB9FE1A85EC53) & _M64
        h ^= h >> 29
        shift = self._door_shift
        return (h * _SEEDS[0] & _M64) >> shift, (h * _SEEDS[2] & _M64) >> shift

    def add(self, key: Hashable, times: int) -> bool:
        """``increment`` ``times`` times; True if the counters were halved meanwhile."""
        halved = False
        for _ in range(min(times, MAX_COUNT + 1)):
            halved |= self.increment(key)
        return halved

    def count_access(self) -> bool:
        """One access of a held key, counted by the tier: True when it is time to halve."""
        self._additions += 1
        return self._additions >= self.sample_size

    def increment(self, key: Hashable) -> bool:
        """Count one access of ``key``; True if that halved the counters."""
        a, b = self._door_probes(key)
        door = self._door
        if not (door[a] and door[b]):
            door[a] = door[b] = 1
            return False
        added = False
        for row, i in zip(self._rows, self._indexes(key), strict=True):
            if row[i] < 15:
                row[i] += 1
                added = True
        if added:
            self._additions += 1
            if self._additions >= self.sample_size:
                self.halve()
                return True
        return False

    def halve(self) -> None:
        self._additions //= 2
        for row in self._rows:
            row[:] = row.translate(_HALF)
        self._door = bytearray(len(self._door))

    def frequency(self, key: Hashable) -> int:
        count = min(row[i] for row, i in zip(self._rows, self._indexes(key), strict=True))
        a, b = self._door_probes(key)
        if self._door[a] and self._door[b]:
            count += 1
        return count


class RecencyGuard:
    """What LRU would hit, simulated on a sample of the keys; the climber's safety net.

    The climber learns from hit ratios sampled over ten cache-fulls of requests, which
    is too slow to notice a workload where recency is all that matters (LRU's best case):
    there the small window turns away the keys about to be asked for again. So an LRU of
    the same byte budget runs beside the cache on one key in ``rate`` (chosen by hash, so
    about ``GUARD_KEYS`` are followed: SHARDS' spatial sampling), fed the same reads and
    writes. Both are scored on the same sampled reads, evidence that fades by
    ``GUARD_DECAY`` a period. When LRU is ahead by more than ``GUARD_MARGIN`` of them (plus
    ``GUARD_SLACK`` hits), and has been for ``GUARD_PERIODS`` periods or is so far ahead
    that chance cannot explain it (McNemar's test on the reads only one of them hit, at
    ``GUARD_Z`` standard deviations), the tier gives the whole cache to the window (LRU) and
    the climber works down from there. It starts at the first eviction: before that every
    policy holds everything. Expiry is not simulated (it takes entries from both alike),
    and it follows about ``held / rate`` keys, pinning those the cache let go.
    """

    def __init__(self, max_bytes: int, held: int) -> None:
        self._max_bytes = max_bytes
        self._order: OrderedDict[Any, int] = OrderedDict()
        self._bytes = 0
        self._bits = -1
        self._periods = 0
        # Decayed counts over the sampled reads: all, LRU's hits the cache missed, and the
        # cache's hits LRU missed.
        self._reads = self._lru_only = self._cache_only = 0.0
        self.verdicts = 0
        self.resample(held)

    def resample(self, held: int) -> bool:
        """Follow one key in ``rate``, the power of two that keeps between ``GUARD_KEYS``
        and twice that many of the ``held`` keys followed. The rate only rises (a sample
        shrinks to a subset of itself, it cannot grow back what it never saw); True when it
        rose, and the keys no longer sampled were let go."""
        bits = max(0, (held // GUARD_KEYS).bit_length() - 1)
        if bits <= self._bits:
            return False
        self._bits = bits
        self.rate = 1 << bits
        self.resample_at = GUARD_KEYS << (bits + 1)
        self._shift = 64 - bits
        self._budget = self._max_bytes >> bits
        self._period = self._left = max(64, held >> bits)
        order = self._order
        for key in [key for key in order if not self.sampled(key)]:
            self._bytes -= order.pop(key)
        while self._bytes > self._budget:
            self._bytes -= order.popitem(last=False)[1]
        return True

    def sampled(self, key: Hashable) -> bool:
        return ((hash(key) * _SEEDS[1]) & _M64) >> self._shift == 0

    def read(self, key: Hashable, weight: int | None) -> bool:
        """A sampled read, a hit of the cache (of ``weight``) or a miss (None); True when
        LRU has proven better. A hit LRU misses is filled, as the caller would have on a
        miss (the cache's misses are filled by the caller's write)."""
        self._reads += 1
        order = self._order
        if key in order:
            order.move_to_end(key)
            if weight is None:
                self._lru_only += 1
        elif weight is not None:
            self.write(key, weight)
            self._cache_only += 1
        self._left -= 1
        return self._left <= 0 and self._judge()

    def write(self, key: Hashable, weight: int) -> None:
        if weight > self._budget:  # more than the scaled-down LRU could ever hold
            self.drop(key)
            return
        order = self._order
        self._bytes += weight - order.pop(key, 0)
        order[key] = weight
        while self._bytes > self._budget:
            self._bytes -= order.popitem(last=False)[1]

    def drop(self, key: Hashable) -> None:
        self._bytes -= self._order.pop(key, 0)

    def _judge(self) -> bool:
        self._left = self._period
        self._periods += 1
        lead = self._lru_only - self._cache_only
        if lead > GUARD_MARGIN * self._reads + GUARD_SLACK and (
            self._periods >= GUARD_PERIODS
            or lead > GUARD_Z * math.sqrt(self._lru_only + self._cache_only)
        ):
            self._reads = self._lru_only = self._cache_only = 0.0
            self._periods = 0
            self.verdicts += 1
            return True
        self._reads *= GUARD_DECAY
        self._lru_only *= GUARD_DECAY
        self._cache_only *= GUARD_DECAY
        return False

    def describe(self) -> dict[str, Any]:
        return {"sample_rate": self.rate, "verdicts": self.verdicts}


class WTinyLfuTier(HeldEntries):
    """Byte-bounded adaptive W-TinyLFU with per-entry expiry; the LRU tier's interface."""

    PLUGIN_NAME: ClassVar[str] = "wtinylfu"
    EVICTION: ClassVar[str] = "wtinylfu"

    @define(frozen=True)
    class Options(HeldEntries.Options):
        eviction: str = "wtinylfu"

    def __init__(
        self,
        options: HeldEntries.Options | None = None,
        context: TierContext | None = None,
        *,
        seed: int = 0,
        **simulation: Any,
    ) -> None:
        super().__init__(options, context, **simulation)
        self._random = random.Random(seed)
        # key -> [data, expires_at, weight, region, hits while held (to MAX_COUNT),
        # followed by the recency guard]; the regions keep the order.
        self._entries: dict[Any, list[Any]] = {}
        self._window: OrderedDict[Any, list[Any]] = OrderedDict()
        self._probation: OrderedDict[Any, list[Any]] = OrderedDict()
        self._protected: OrderedDict[Any, list[Any]] = OrderedDict()
        self._window_bytes = self._probation_bytes = self._protected_bytes = 0
        self._window_max = 0
        self._set_window_max(INITIAL_WINDOW * self.max_bytes)
        self._sketch = FrequencySketch(64)
        # The climber's sample.
        self._hits = 0
        self._misses = 0
        self._previous_hit_rate = 0.0
        self._climbing = False
        self._sample_at = MIN_SAMPLE
        self._step = -STEP * self.max_bytes  # as Caffeine: a first step toward a smaller window
        self._guard: RecencyGuard | None = None
        self._guard_from = 0  # the eviction count the guard waits to see exceeded

    # -- reads ------------------------------------------------------------------------------

    def _set_expiry(self, key: Any, entry: list[Any], expires_at: float) -> None:
        entry[1] = expires_at

    def _etag(self, key: Any, entry: list[Any]) -> str:
        if len(entry) > 6:
            return entry[6]  # type: ignore[no-any-return]
        etag = etag_of(entry[0])
        entry.append(etag)  # the one list every region's table holds
        # Weighed as part of the entry, so L1's byte bound holds with the tags in it.
        entry[2] += ETAG_WEIGHT
        self._size += ETAG_WEIGHT
        if entry[3] == WINDOW:
            self._window_bytes += ETAG_WEIGHT
        elif entry[3] == PROBATION:
            self._probation_bytes += ETAG_WEIGHT
        else:
            self._protected_bytes += ETAG_WEIGHT
        if self._size > self.max_bytes:
            self._evict()
        return etag

    def get(self, key: Any) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            self._misses += 1
            guard = self._guard
            if guard is not None and guard.sampled(key) and guard.read(key, None):
                self._give_window_everything()
            return None
        if entry[1] <= self._clock():
            self._unlink(key, entry)
            self._expirations += 1
            self._misses += 1
            guard = self._guard
            if entry[5] and guard is not None:
                guard.drop(key)
                if guard.read(key, None):
                    self._give_window_everything()
            return None
        self._access(key, entry)
        if entry[5] and self._guard is not None and self._guard.read(key, entry[2]):
            self._give_window_everything()
        return entry[0]  # type: ignore[no-any-return]

    def _access(self, key: Any, entry: list[Any]) -> None:
        if entry[4] < MAX_COUNT:
            entry[4] += 1
        region = entry[3]
        if region == WINDOW:
            self._window.move_to_end(key)
        elif region == PROTECTED:
            self._protected.move_to_end(key)
        else:  # hit again on probation: protected now
            del self._probation[key]
            self._probation_bytes -= entry[2]
            entry[3] = PROTECTED
            self._protected[key] = entry
            self._protected_bytes += entry[2]
            self._demote_protected()
        self._hits += 1
        if self._sketch.count_access():
            self._sketch.halve()
            self._halve_held()
        if self._hits + self._misses >= self._sample_at:
            self._climb()

    def _frequency(self, key: Any, entry: list[Any]) -> int:
        return min(MAX_COUNT, self._sketch.frequency(key) + int(entry[4]))

    def _halve_held(self) -> None:
        """Age the held keys' own counts with the sketch's."""
        for entry in self._entries.values():
            entry[4] >>= 1

    def _count_arrival(self, key: Any) -> None:
        if self._sketch.increment(key):
            self._halve_held()

    def get_many(self, keys: Sequence[Any]) -> list[bytes | None]:
        """:meth:`get` of each key, in order (each one counts for the policy)."""
        return list(map(self.get, keys))

    # -- writes -----------------------------------------------------------------------------

    def set_many(self, items: Iterable[tuple[Any, bytes, float | None]]) -> None:
        """:meth:`set` of each ``(key, data, ttl)``, in order (each one admitted, or not, as
        its own set would be)."""
        set_ = self.set
        for key, data, ttl in items:
            set_(key, data, ttl)

    def set(self, key: Any, data: bytes, ttl: float | None) -> bool:
        """Store ``data`` for ``ttl`` seconds; False when it can never fit (nothing changes)."""
        weight = self._weigh(key, data)
        if weight > self.max_bytes:
            return False
        expires_at = math.inf if ttl is None else self._clock() + ttl
        entry = self._entries.get(key)
        if entry is not None:  # a rewrite: an access, with a new weight
            delta = weight - entry[2]
            entry[0], entry[1], entry[2] = data, expires_at, weight
            del entry[6:]  # the old value's entity tag
            self._size += delta
            if entry[3] == WINDOW:
                self._window_bytes += delta
            elif entry[3] == PROBATION:
                self._probation_bytes += delta
            else:
                self._protected_bytes += delta
            self._access(key, entry)
        else:
            self._count_arrival(key)
            sampled = self._guard is not None and self._guard.sampled(key)
            entry = [data, expires_at, weight, WINDOW, 0, sampled]
            self._entries[key] = entry
            self._window[key] = entry
            self._window_bytes += weight
            self._size += weight
            if len(self._entries) > self._sketch.capacity:  # grown: keep the holders' counts
                self._sketch.resize(2 * len(self._entries), self._entries)
            guard = self._guard
            held = len(self._entries)
            if guard is not None and held >= guard.resample_at and guard.resample(held):
                for other, record in self._entries.items():  # grown: follow fewer of them
                    record[5] = guard.sampled(other)
        if entry[5] and self._guard is not None:
            self._guard.write(key, weight)
        self._evict()
        if self._guard is None and self._evictions > self._guard_from:
            self._start_guard()
        if self._hits + self._misses >= self._sample_at:
            self._climb()
        return True

    def _start_guard(self) -> None:
        """The cache is full: follow what LRU would do from here, starting from what it
        would hold now (everything held, oldest first)."""
        guard = self._guard = RecencyGuard(self.max_bytes, len(self._entries))
        for key, entry in self._entries.items():
            entry[5] = guard.sampled(key)
            if entry[5]:
                guard.write(key, entry[2])

    def _give_window_everything(self) -> None:
        """The guard's verdict: LRU does better here. Unless the window already has most of
        the cache, it gets all of it, and the climber starts over, stepping down."""
        if self._window_max >= 0.9 * self.max_bytes:
            return
        self._set_window_max(self.max_bytes)
        self._rebalance()
        self._step = -STEP * self.max_bytes
        self._climbing = False
        self._hits = self._misses = 0
        self._sample_at = self._next_sample()

    def _evict(self) -> None:
        """Move the window's overflow to main through admission, then evict to the bound."""
        window = self._window
        while self._window_bytes > self._window_max and window:
            key, entry = window.popitem(last=False)
            self._window_bytes -= entry[2]
            self._admit(key, entry)
        while self._size > self.max_bytes:
            region = self._probation or self._protected or self._window
            key, entry = region.popitem(last=False)
            self._forget(key, entry)
            self._evictions += 1

    def _admit(self, key: Any, entry: list[Any]) -> None:
        """``key`` left the window: into main if it has room, else only for as long as it is
        asked for more often than each main entry it would push out; into probation, or
        protected if it was hit ``PROVEN_HITS`` times in the window."""
        candidate = -1
        while self._size > self.max_bytes:
            victims = self._probation or self._protected
            if not victims:
                break
            victim = next(iter(victims))
            if candidate < 0:
                candidate = self._frequency(key, entry)
            if self._admits(candidate, self._frequency(victim, victims[victim])):
                self._forget(victim, victims.pop(victim))
                self._evictions += 1
            else:
                del self._entries[key]
                self._size -= entry[2]
                self._fold(key, entry)
                self._evictions += 1
                return
        if entry[4] >= PROVEN_HITS:  # asked for again and again in the window: proven
            entry[3] = PROTECTED
            self._protected[key] = entry
            self._protected_bytes += entry[2]
            self._demote_protected()
            return
        entry[3] = PROBATION
        self._probation[key] = entry
        self._probation_bytes += entry[2]

    def _admits(self, candidate: int, victim: int) -> bool:
        if candidate > victim:
            return True
        # Warm candidates get in now and then, so colliding hashes cannot lock one out
        # (Caffeine's defence against hash flooding).
        return candidate > 5 and self._random.random() < 1 / 128

    def _fold(self, key: Any, entry: list[Any]) -> None:
        """``key`` leaves: the sketch keeps the hits it had while held."""
        if entry[4] and self._sketch.add(key, entry[4]):
            self._halve_held()

    def _forget(self, key: Any, entry: list[Any]) -> None:
        """``entry`` was popped from its region: drop it from the map and the sizes."""
        del self._entries[key]
        self._size -= entry[2]
        self._fold(key, entry)
        region = entry[3]
        if region == WINDOW:
            self._window_bytes -= entry[2]
        elif region == PROBATION:
            self._probation_bytes -= entry[2]
        else:
            self._protected_bytes -= entry[2]

    def _unlink(self, key: Any, entry: list[Any]) -> None:
        region = entry[3]
        order = (self._window, self._probation, self._protected)[region]
        del order[key]
        self._forget(key, entry)

    def _demote_protected(self) -> None:
        protected_max = PROTECTED_SHARE * (self.max_bytes - self._window_max)
        while self._protected_bytes > protected_max and self._protected:
            key, entry = self._protected.popitem(last=False)
            self._protected_bytes -= entry[2]
            entry[3] = PROBATION
            self._probation[key] = entry
            self._probation_bytes += entry[2]

    # -- climbing ---------------------------------------------------------------------------

    def _next_sample(self) -> int:
        return max(MIN_SAMPLE, SAMPLE_FACTOR * len(self._entries))

    def _climb(self) -> None:
        """Caffeine's climber: keep going while the hit ratio rises, turn when it falls.
        Only once the cache has been full: before its first eviction every policy hits the
        same, and a hit ratio rising as the cache fills would read as a good step."""
        requests = self._hits + self._misses
        hit_rate = self._hits / requests
        if not self._climbing:
            self._climbing = bool(self._evictions)
            self._previous_hit_rate = hit_rate
            self._hits = self._misses = 0
            self._sample_at = self._next_sample()
            return
        change = hit_rate - self._previous_hit_rate
        amount = self._step if change >= 0 else -self._step
        if abs(change) >= RESTART_THRESHOLD:
            self._step = STEP * self.max_bytes * (1 if amount >= 0 else -1)
        else:
            self._step = STEP_DECAY * amount
        self._previous_hit_rate = hit_rate
        self._hits = self._misses = 0
        self._sample_at = self._next_sample()
        self._set_window_max(self._window_max + amount)
        self._rebalance()

    def _set_window_max(self, value: float) -> None:
        self._window_max = int(min(max(value, MIN_WINDOW * self.max_bytes), self.max_bytes))

    def _rebalance(self) -> None:
        """After the window's share moved: a grown window takes main's coldest entries, a
        shrunk one hands its oldest to probation (main has the room it gave up)."""
        window = self._window
        while self._window_bytes > self._window_max and window:
            key, entry = window.popitem(last=False)
            self._window_bytes -= entry[2]
            entry[3] = PROBATION
            self._probation[key] = entry
            self._probation_bytes += entry[2]
        while self._window_bytes < self._window_max:
            region = self._probation or self._protected
            if not region:
                break
            key, entry = region.popitem(last=False)
            if entry[3] == PROBATION:
                self._probation_bytes -= entry[2]
            else:
                self._protected_bytes -= entry[2]
            if self._window_bytes + entry[2] > self._window_max:
                region[key] = entry  # back where it was: it does not fit
                region.move_to_end(key, last=False)
                if entry[3] == PROBATION:
                    self._probation_bytes += entry[2]
                else:
                    self._protected_bytes += entry[2]
                break
            entry[3] = WINDOW
            window[key] = entry
            window.move_to_end(key, last=False)  # the coldest of the window
            self._window_bytes += entry[2]
        self._demote_protected()

    # -- the rest of the tier ---------------------------------------------------------------

    def delete(self, key: Any) -> bool:
        """Drop ``key``; True only if it was live (an expired entry is dropped silently)."""
        if self._guard is not None:  # LRU may hold what this cache turned away
            self._guard.drop(key)
        entry = self._entries.get(key)
        if entry is None:
            return False
        self._unlink(key, entry)
        return bool(entry[1] > self._clock())

    def clear(self) -> int:
        count = len(self._entries)
        for region in (self._entries, self._window, self._probation, self._protected):
            region.clear()
        self._size = self._window_bytes = self._probation_bytes = self._protected_bytes = 0
        # Empty, every policy holds everything again: the guard restarts when the cache next
        # has to evict, sized for what it then holds.
        self._guard = None
        self._guard_from = self._evictions
        return count

    @staticmethod
    def weight(key: Any, data: bytes) -> int:
        return entry_weight(key, data) + EXTRA_OVERHEAD

    def describe(self) -> dict[str, Any]:
        """The regions' byte sizes, the window's current share and the recency guard."""
        return {
            **super().describe(),
            "window_bytes": self._window_bytes,
            "window_max": self._window_max,
            "probation_bytes": self._probation_bytes,
            "protected_bytes": self._protected_bytes,
            "window_share": round(self._window_max / self.max_bytes, 4) if self.max_bytes else 0,
            "recency_guard": None if self._guard is None else self._guard.describe(),
        }


__all__ = ["FrequencySketch", "RecencyGuard", "WTinyLfuTier"]
