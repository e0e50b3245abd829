"""How often each key has been asked for lately: W-TinyLFU's count-min sketch.

Four rows of 4-bit counters (a byte each, capped at 15), about 4 a key the sketch is sized
for, behind a doorkeeper: a Bloom filter (one byte a bit, 2 probes, about 4 bits a counter)
that takes a key's first sighting, so keys seen once never reach the counters. Every
counter is halved (and the doorkeeper emptied) after ten increments a key, so old
popularity fades; the owner hears of it (``on_halve``) to age what it counts itself.

A key's six positions are one mixed hash taken modulo six distinct primes (each row's and
the doorkeeper's length): residues modulo different primes are independent for a uniform
hash, and a remainder by a one-digit int is the cheapest index CPython computes. Before
that, ``hash(key)`` is mixed (a multiply and an xor-shift): an int hashes to itself, and
consecutive ints would otherwise fill consecutive counters, colliding far less than hashed
keys do, so the integer traces would measure a sketch that string keys never get. Per
call, an increment costs about half of what six multiply-shift hashes did (520 against 960
ns; 410 against 790 for a lookup).

The tier asks the sketch once for an arriving key: :meth:`increment` answers its estimate,
which the tier keeps with the entry (and halves with the sketch), so admission has the
candidate's figure without hashing again, and a victim's kept figure often decides
without a :meth:`frequency` lookup. The positions are computed inline in each method: a
helper's call would cost as much as the arithmetic.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable

MAX_COUNT = 15
HALVING_FACTOR = 10
"""Increments between halvings, per key the sketch is sized for (Caffeine's)."""
WIDTH_FACTOR = 4
"""Counters a row, per key the sketch is sized for."""

_M64 = (1 << 64) - 1
_MIX = 0xD6E8FEB86659FD93
_HALF = bytes(b >> 1 for b in range(256))


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
        self._rows: tuple[bytearray, ...] = ()
        self.resize(capacity)

    def resize(self, capacity: int, keep: Iterable[Hashable] = ()) -> None:
        """Sized for about ``capacity`` keys held; the counts of ``keep`` (the keys the
        cache holds) carry over, the rest start over."""
        kept = [(key, self.frequency(key)) for key in keep] if self._rows else []
        self.capacity = max(16, capacity)
        width = 1 << (WIDTH_FACTOR * self.capacity - 1).bit_length()
        self._primes = primes_below(width, 4)
        self._door_primes = primes_below(4 * width, 2)
        self._rows = tuple(bytearray(p) for p in self._primes)
        self._door = bytearray(self._door_primes[0])
        self.additions = 0
        self.sample_size = HALVING_FACTOR * self.capacity
        self.carry(kept)

    def carry(self, counts: Iterable[tuple[Hashable, int]]) -> None:
        """Each key's count at least as given, in the counters alone (not the doorkeeper,
        nor toward a halving): counts taken elsewhere, as a resize carries the held keys'."""
        p0, p1, p2, p3 = self._primes
        r0, r1, r2, r3 = self._rows
        mix = self._mix
        # Unrolled, as increment is: a loop over the rows took 2.5-4x as long.
        for key, count in counts:
            h = (hash(key) * mix) & _M64
            h ^= h >> 29
            i, j, k, m = h % p0, h % p1, h % p2, h % p3
            c0, c1, c2, c3 = r0[i], r1[j], r2[k], r3[m]
            if c0 < count:
                r0[i] = count
            if c1 < count:
                r1[j] = count
            if c2 < count:
                r2[k] = count
            if c3 < count:
                r3[m] = count

    def increment(self, key: Hashable) -> int:
        """Count one access of ``key``; its estimate after it."""
        h = (hash(key) * self._mix) & _M64
        h ^= h >> 29
        p0, p1, p2, p3 = self._primes
        i, j, k, m = h % p0, h % p1, h % p2, h % p3
        r0, r1, r2, r3 = self._rows
        c0, c1, c2, c3 = r0[i], r1[j], r2[k], r3[m]
        # The least of the four without min(): the builtin's call costs what it saves.
        low, other = c0 if c0 < c1 else c1, c2 if c2 < c3 else c3
        low = low if low < other else other
        q0, q1 = self._door_primes
        a, b = h % q0, h % q1
        door = self._door
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
        h = (hash(key) * self._mix) & _M64
        h ^= h >> 29
        q0, q1 = self._door_primes
        a, b = h % q0, h % q1
        door = self._door
        times = min(times, MAX_COUNT)  # (the tier's counts are capped here, not as they grow)
        if not (door[a] and door[b]):
            door[a] = door[b] = 1
            times -= 1
        if times <= 0:
            return
        for row, p in zip(self._rows, self._primes, strict=True):
            i = h % p
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
        h = (hash(key) * self._mix) & _M64
        h ^= h >> 29
        p0, p1, p2, p3 = self._primes
        r0, r1, r2, r3 = self._rows
        c0, c1, c2, c3 = r0[h % p0], r1[h % p1], r2[h % p2], r3[h % p3]
        count, other = c0 if c0 < c1 else c1, c2 if c2 < c3 else c3
        count = count if count < other else other
        q0, q1 = self._door_primes
        door = self._door
        if door[h % q0] and door[h % q1]:
            return count + 1
        return count


__all__ = ["MAX_COUNT", "FrequencySketch"]
