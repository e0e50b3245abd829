"""How often each key has been asked for lately: W-TinyLFU's frequency sketch.

One row of counters (a byte each, capped at 16), 64 a key the sketch is sized for, a
key's counter at its mixed hash modulo the row's prime length. Every counter is aged
after ten increments a key: a count c becomes (c - 1) // 2, so a key seen once since the
last aging is forgotten, and old popularity fades; the owner hears of it (``on_halve``) to
age what it counts itself. A key's first sighting does not count toward the aging.

This is what the count-min sketch of four rows behind a doorkeeper (a Bloom filter taking
first sightings) computed, but for its collisions: a first sighting counted 1 in the
doorkeeper, and an aging emptied it and halved the rows. With one row, 64 bytes a key
(the four rows and the doorkeeper took 32-64, by size: at most twice their memory), two
keys rarely share a counter, and a call computes one remainder and reads one counter
instead of six: an increment about 190 ns instead of 520, a lookup 150 instead of 410.
On the tuning traces it met as many targets over seeds 0-4 (272 of 325, against 271);
counting exactly (a dict) met fewer (262), and the victim's counter still has to be read
again at admission (others' arrivals may share it): without that, 242.

``hash(key)`` is mixed (a multiply and an xor-shift) before the remainder: an int hashes
to itself, and consecutive ints would otherwise fill consecutive counters, colliding far
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
"""The counters hold up to one more (the doorkeeper's bit the sketch had on top)."""
HALVING_FACTOR = 10
"""Increments between agings, per key the sketch is sized for (Caffeine's)."""
ROW_FACTOR = 64
"""Counters per key the sketch is sized for (at 32 the tuning traces met 262 of 325
targets over seeds 0-4 instead of 272)."""

_M64 = (1 << 64) - 1
_MIX = 0xD6E8FEB86659FD93
_AGED = bytes(max(0, count - 1) >> 1 for count in range(256))


def _ignore() -> None:
    return None


def primes_below(limit: int, count: int) -> list[int]:
    """The ``count`` largest primes below ``limit``, largest first."""
    found: list[int] = []
    candidate = limit - 1
    while len(found) < count and candidate > 2:
        if candidate % 2 and all(candidate % d for d in range(3, int(candidate**0.5) + 1, 2)):
            found.append(candidate)
        candidate -= 1
    if len(found) < count:
        raise ValueError(f"fewer than {count} odd primes below {limit}")
    return found


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
        self._length = primes_below(ROW_FACTOR * self.capacity, 1)[0]
        self._row = bytearray(self._length)
        self.additions = 0
        self.sample_size = HALVING_FACTOR * self.capacity
        self.carry(kept)

    def carry(self, counts: Iterable[tuple[Hashable, int]]) -> None:
        """Each key's count at least as given, not toward an aging: counts taken
        elsewhere, as a resize carries the held keys'."""
        length, row, mix = self._length, self._row, self._mix
        for key, count in counts:
            h = (hash(key) * mix) & _M64
            i = (h ^ (h >> 29)) % length
            row[i] = max(row[i], count)

    def increment(self, key: Hashable) -> int:
        """Count one access of ``key``; its estimate after it."""
        h = (hash(key) * self._mix) & _M64
        i = (h ^ (h >> 29)) % self._length
        row = self._row
        count = row[i]
        if count > MAX_COUNT:
            return count
        row[i] = count + 1
        if not count:  # a first sighting: not toward the aging (the doorkeeper's was not)
            return 1
        self.additions += 1
        if self.additions >= self.sample_size:
            self.halve()
            return self._row[i]
        return count + 1

    def add(self, key: Hashable, times: int) -> None:
        """``times`` increments at once (the hits a key collected while the cache held it)."""
        h = (hash(key) * self._mix) & _M64
        i = (h ^ (h >> 29)) % self._length
        row = self._row
        count = row[i]
        times = min(times, MAX_COUNT)  # (the tier's counts are capped here, not as they grow)
        if times <= 0:
            return
        total = count + times
        row[i] = total if total <= MAX_COUNT else MAX_COUNT + 1
        self.additions += times if count else times - 1  # (the first: a first sighting)
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
        return self._row[(h ^ (h >> 29)) % self._length]


__all__ = ["MAX_COUNT", "FrequencySketch"]
