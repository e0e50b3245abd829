"""How often each key has been asked for lately: W-TinyLFU's frequency sketch.

One row of bytes, 64 a key the sketch is sized for, a key's byte at its mixed hash modulo
the row's prime length. A byte holds a counter (its low 4 bits, to ``MAX_COUNT``) and a
*seen* bit (``SEEN``, since the last aging): a key's first sighting since then sets the bit
and nothing else, so keys seen once never reach the counter; a key's estimate is its
counter plus the bit. Every counter is halved, and every bit cleared, after ten
increments a key (first sightings not among them), so old popularity fades; the owner
hears of it (``on_halve``) to age what it counts itself.

This is what the count-min sketch of four rows behind a doorkeeper (a Bloom filter of
first sightings) that it replaces computed, but for collisions: the bit is the
doorkeeper's, kept in the key's own byte. One wide row (the four rows and the doorkeeper
took 32-64 bytes a key, by size: at most twice their memory) makes two keys share a byte
rarely, and a call computes one remainder and reads one byte instead of six: an
increment about 190 ns instead of 520, a lookup 160 instead of 410. What one row gives up:
a cold key that shares a hot key's byte looks as hot as it (with four rows it had to share
all four). Two keys share a byte with a chance of one in the row's length; in a test
where a hot key must beat protected's victims, one string key in about 300 lost to such
a victim. On the tuning traces it met as many targets over seeds 0-4 (265 of 325
against 264, and 270 against 271, on two runs' theine figures); a count with no bit (a
first sighting counted, aged to (c - 1) // 2) met as many too, counting exactly in a dict
fewer (262 against 271), and not reading the victim's byte again at admission (others'
arrivals may share it) 242.

``hash(key)`` is mixed (a multiply and an xor-shift) before the remainder: an int hashes
to itself, and consecutive ints would otherwise fill consecutive bytes, colliding far
less than hashed keys do, so the integer traces would measure a sketch that string keys
never get.

The tier asks the sketch once for an arriving key: :meth:`increment` answers its estimate,
which the tier keeps with the entry (and halves with the sketch), so admission has the
candidate's figure without hashing again, and a victim's kept figure often decides
without a :meth:`frequency` lookup. The position is computed inline in each method: a
helper's call would cost as much as the arithmetic.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable

MAX_COUNT = 15
"""A counter's cap: an estimate is at most one more (the seen bit)."""
SEEN = 16
"""The bit of a byte that says its key was seen since the last aging."""
HALVING_FACTOR = 10
"""Increments between agings, per key the sketch is sized for (Caffeine's)."""
ROW_FACTOR = 64
"""Bytes per key the sketch is sized for (at 32 the tuning traces met 261 of 325 targets
over seeds 0-4 instead of 265)."""

_M64 = (1 << 64) - 1
_MIX = 0xD6E8FEB86659FD93
_AGED = bytes((byte & MAX_COUNT) >> 1 for byte in range(256))
"""Each byte aged: its counter halved, its seen bit cleared."""


def _ignore() -> None:
    return None


def prime_below(limit: int) -> int:
    """The largest odd prime below ``limit``."""
    for candidate in range(limit - 1, 2, -1):
        if candidate % 2 and all(candidate % d for d in range(3, int(candidate**0.5) + 1, 2)):
            return candidate
    raise ValueError(f"no odd prime below {limit}")


class FrequencySketch:
    def __init__(
        self, capacity: int, on_halve: Callable[[], None] = _ignore, *, seed: int = 0
    ) -> None:
        """Sized for about ``capacity`` keys; ``seed`` picks the hash's mixer (the
        benches replay a few, to tell a policy's change from the luck of its hashes)."""
        self._on_halve = on_halve
        self._mix = _MIX if seed == 0 else random.Random(seed).getrandbits(64) | 1
        self._row = bytearray()
        self.resize(capacity)

    def resize(self, capacity: int, keep: Iterable[Hashable] = ()) -> None:
        """Sized for about ``capacity`` keys held; the counts of ``keep`` (the keys the
        cache holds) carry over, the rest start over."""
        kept = [(key, self.frequency(key)) for key in keep] if self._row else []
        self.capacity = max(16, capacity)
        self._length = prime_below(ROW_FACTOR * self.capacity)
        self._row = bytearray(self._length)
        self.additions = 0
        self.sample_size = HALVING_FACTOR * self.capacity
        self.carry(kept)

    def carry(self, counts: Iterable[tuple[Hashable, int]]) -> None:
        """Each key's counter at least as given (its seen bit as it was), not toward an
        aging: counts taken elsewhere, as a resize carries the held keys'."""
        length, row, mix = self._length, self._row, self._mix
        for key, count in counts:
            h = (hash(key) * mix) & _M64
            i = (h ^ (h >> 29)) % length
            byte = row[i]
            if byte & MAX_COUNT < count:
                row[i] = byte & SEEN | min(count, MAX_COUNT)

    def increment(self, key: Hashable) -> int:
        """Count one access of ``key``; its estimate after it."""
        h = (hash(key) * self._mix) & _M64
        i = (h ^ (h >> 29)) % self._length
        row = self._row
        byte = row[i]
        if byte < SEEN:  # the first sighting since the last aging: the bit alone
            row[i] = byte | SEEN
            return byte + 1
        count = byte & MAX_COUNT
        if count >= MAX_COUNT:
            return MAX_COUNT + 1
        row[i] = byte + 1
        self.additions += 1
        if self.additions >= self.sample_size:
            self.halve()
            return self.frequency(key)
        return count + 2  # the counter, incremented, and the bit

    def add(self, key: Hashable, times: int) -> None:
        """``times`` increments at once (the hits a key collected while the cache held it):
        the first sets the seen bit if it must, the rest reach the counter."""
        h = (hash(key) * self._mix) & _M64
        i = (h ^ (h >> 29)) % self._length
        row = self._row
        byte = row[i]
        times = min(times, MAX_COUNT)  # (the tier's counts are capped here, not as they grow)
        if byte < SEEN:
            byte |= SEEN
            times -= 1
        if times > 0:
            byte = SEEN | min((byte & MAX_COUNT) + times, MAX_COUNT)
            self.additions += times
        row[i] = byte
        if self.additions >= self.sample_size:
            self.halve()

    def count_accesses(self, times: int) -> None:
        """``times`` accesses the tier counted itself (hits on held keys, which it folds in
        when they leave), toward the next aging."""
        self.additions += times
        if self.additions >= self.sample_size:
            self.halve()

    def until_halving(self) -> int:
        return self.sample_size - self.additions

    def halve(self) -> None:
        self.additions //= 2
        self._row = self._row.translate(_AGED)
        self._on_halve()

    def frequency(self, key: Hashable) -> int:
        h = (hash(key) * self._mix) & _M64
        byte = self._row[(h ^ (h >> 29)) % self._length]
        return (byte & MAX_COUNT) + (byte >> 4)


__all__ = ["MAX_COUNT", "SEEN", "FrequencySketch"]
