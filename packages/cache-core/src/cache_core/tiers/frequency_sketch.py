"""How often each key has been asked for lately: W-TinyLFU's count-min sketch.

Four rows of 4-bit counters (a byte each, capped at 15), 4 a key the sketch is sized for,
indexed by multiplicative hashes of ``hash(key)``, behind a doorkeeper: a Bloom filter (one
byte a bit, 2 probes, 4 bits a counter) that takes a key's first sighting, so keys seen
once never reach the counters. Every counter is halved (and the doorkeeper emptied) after
ten increments a key, so old popularity fades; the owner hears of it (``on_halve``) to age
what it counts itself.

The tier asks the sketch once for an arriving key: :meth:`increment` answers its estimate,
which the tier keeps with the entry (and halves with the sketch), so admission has the
candidate's figure without hashing again, and a victim's kept figure often decides
without a :meth:`frequency` lookup. The positions are computed inline in each method: a
helper's call would cost as much as the arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

MAX_COUNT = 15
HALVING_FACTOR = 10
"""Increments between halvings, per key the sketch is sized for (Caffeine's)."""
WIDTH_FACTOR = 4
"""Counters a row, per key the sketch is sized for."""

_M64 = (1 << 64) - 1
_S0, _S1, _S2, _S3 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93
_ROWS = 0xFF51AFD7ED558CCD
_DOOR = 0xC4CEB9FE1A85EC53
_HALF = bytes(b >> 1 for b in range(256))


def _ignore() -> None:
    return None


class FrequencySketch:
    def __init__(self, capacity: int, on_halve: Callable[[], None] = _ignore) -> None:
        self._on_halve = on_halve
        self._rows: tuple[bytearray, ...] = ()
        self.resize(capacity)

    def resize(self, capacity: int, keep: Iterable[Hashable] = ()) -> None:
        """Sized for about ``capacity`` keys held; the counts of ``keep`` (the keys the
        cache holds) carry over, the rest start over."""
        kept = [(key, self.frequency(key)) for key in keep] if self._rows else []
        self.capacity = max(16, capacity)
        bits = (WIDTH_FACTOR * self.capacity - 1).bit_length()
        self.width = 1 << bits
        self._shift = 64 - bits
        self._rows = tuple(bytearray(self.width) for _ in range(4))
        self._door = bytearray(4 * self.width)
        self._door_shift = 64 - bits - 2
        self.additions = 0
        self.sample_size = HALVING_FACTOR * self.capacity
        r0, r1, r2, r3 = self._rows
        shift = self._shift
        for key, count in kept:
            h = (hash(key) * _ROWS) & _M64
            h ^= h >> 33
            for row, seed in ((r0, _S0), (r1, _S1), (r2, _S2), (r3, _S3)):
                i = ((h * seed) & _M64) >> shift
                row[i] = max(row[i], count)

    def increment(self, key: Hashable) -> int:
        """Count one access of ``key``; its estimate after it."""
        code = hash(key)
        g = (code * _DOOR) & _M64
        g ^= g >> 29
        shift = self._door_shift
        a, b = ((g * _S0) & _M64) >> shift, ((g * _S2) & _M64) >> shift
        door = self._door
        h = (code * _ROWS) & _M64
        h ^= h >> 33
        shift = self._shift
        i, j = ((h * _S0) & _M64) >> shift, ((h * _S1) & _M64) >> shift
        k, m = ((h * _S2) & _M64) >> shift, ((h * _S3) & _M64) >> shift
        r0, r1, r2, r3 = self._rows
        c0, c1, c2, c3 = r0[i], r1[j], r2[k], r3[m]
        # The least of the four without min(): the builtin's call costs what it saves.
        low, other = c0 if c0 < c1 else c1, c2 if c2 < c3 else c3
        low = low if low < other else other
        if not (door[a] and door[b]):
            door[a] = door[b] = 1
            return low + 1
        if low >= MAX_COUNT:
            return MAX_COUNT + 1
        if c0 < MAX_COUNT:
            r0[i] = c0 + 1
        if c1 < MAX_COUNT:
            r1[j] = c1 + 1
        if c2 < MAX_COUNT:
            r2[k] = c2 + 1
        if c3 < MAX_COUNT:
            r3[m] = c3 + 1
        self.additions += 1
        if self.additions >= self.sample_size:
            self.halve()
            return self.frequency(key)
        return low + 2  # the least counter, incremented, and the doorkeeper's bit

    def add(self, key: Hashable, times: int) -> None:
        """``times`` increments at once (the hits a key collected while the cache held it):
        the first passes the doorkeeper if it must, the rest reach every counter."""
        code = hash(key)
        g = (code * _DOOR) & _M64
        g ^= g >> 29
        shift = self._door_shift
        a, b = ((g * _S0) & _M64) >> shift, ((g * _S2) & _M64) >> shift
        door = self._door
        times = min(times, MAX_COUNT)  # (the tier's counts are capped here, not as they grow)
        if not (door[a] and door[b]):
            door[a] = door[b] = 1
            times -= 1
        if times <= 0:
            return
        h = (code * _ROWS) & _M64
        h ^= h >> 33
        shift = self._shift
        for row, seed in zip(self._rows, (_S0, _S1, _S2, _S3), strict=True):
            i = ((h * seed) & _M64) >> shift
            row[i] = min(MAX_COUNT, row[i] + times)
        self.additions += times
        if self.additions >= self.sample_size:
            self.halve()

    def count_accesses(self, times: int) -> None:
        """``times`` accesses the tier counted itself (hits on held keys, which it folds in
        when they leave), toward the next halving."""
        self.additions += times
        if self.additions >= self.sample_size:
            self.halve()

    def until_halving(self) -> int:
        return self.sample_size - self.additions

    def halve(self) -> None:
        self.additions //= 2
        self._rows = tuple(row.translate(_HALF) for row in self._rows)
        self._door = bytearray(len(self._door))
        self._on_halve()

    def frequency(self, key: Hashable) -> int:
        code = hash(key)
        h = (code * _ROWS) & _M64
        h ^= h >> 33
        shift = self._shift
        r0, r1, r2, r3 = self._rows
        c0, c1 = r0[((h * _S0) & _M64) >> shift], r1[((h * _S1) & _M64) >> shift]
        c2, c3 = r2[((h * _S2) & _M64) >> shift], r3[((h * _S3) & _M64) >> shift]
        count, other = c0 if c0 < c1 else c1, c2 if c2 < c3 else c3
        count = count if count < other else other
        g = (code * _DOOR) & _M64
        g ^= g >> 29
        shift = self._door_shift
        door = self._door
        if door[((g * _S0) & _M64) >> shift] and door[((g * _S2) & _M64) >> shift]:
            return count + 1
        return count


__all__ = ["MAX_COUNT", "FrequencySketch"]
