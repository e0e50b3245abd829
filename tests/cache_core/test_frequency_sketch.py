"""The W-TinyLFU tier's frequency sketch: what an increment answers is what a lookup then
finds, first sightings set only a bit, batched additions equal single ones, an aging
halves the counters, clears the bits and tells the tier, and all of it is what the
count-min sketch with a doorkeeper computed, but for collisions; a key's byte is a mixed
hash modulo a prime length, and a seed picks the mix."""

from __future__ import annotations

import math
import random

from cache_core.tiers.frequency_sketch import _M64, MAX_COUNT, FrequencySketch, prime_below


def test_an_increment_answers_the_estimate_a_lookup_then_finds() -> None:
    sketch = FrequencySketch(1000)
    for times in range(1, 20):
        assert sketch.increment("k") == sketch.frequency("k") == min(times, MAX_COUNT + 1)


def test_a_first_sighting_sets_only_the_seen_bit() -> None:
    # (as the doorkeeper took it: a scan of keys seen once must not age the counts)
    sketch = FrequencySketch(1000)
    assert sketch.frequency("k") == 0
    assert sketch.increment("k") == 1
    assert sketch.additions == 0
    assert sketch.increment("k") == 2
    assert sketch.additions == 1
    sketch.add("other", 3)
    assert sketch.additions == 3  # its first of three was a first sighting


class DoorkeeperReference:
    """The count-min sketch with a doorkeeper that the one row replaced, as it computed
    without collisions: exact counters, and a set of keys seen since the last aging."""

    def __init__(self, sample_size: int) -> None:
        self.sample_size = sample_size
        self.counts: dict[int, int] = {}
        self.seen: set[int] = set()
        self.additions = self.agings = 0

    def estimate(self, key: int) -> int:
        return self.counts.get(key, 0) + (key in self.seen)

    def increment(self, key: int) -> int:
        if key not in self.seen:
            self.seen.add(key)
            return self.estimate(key)
        if self.counts.get(key, 0) >= MAX_COUNT:
            return MAX_COUNT + 1
        self.counts[key] = self.counts.get(key, 0) + 1
        self.additions += 1
        if self.additions >= self.sample_size:
            self.halve()
        return self.estimate(key)

    def add(self, key: int, times: int) -> None:
        times = min(times, MAX_COUNT)
        if key not in self.seen:
            self.seen.add(key)
            times -= 1
        if times <= 0:
            return
        self.counts[key] = min(MAX_COUNT, self.counts.get(key, 0) + times)
        self.additions += times
        if self.additions >= self.sample_size:
            self.halve()

    def halve(self) -> None:
        self.additions //= 2
        self.counts = {key: count >> 1 for key, count in self.counts.items()}
        self.seen.clear()
        self.agings += 1


def test_it_computes_what_the_doorkeeper_sketch_did_but_for_collisions() -> None:
    agings: list[bool] = []
    sketch = FrequencySketch(1000, on_halve=lambda: agings.append(True))
    reference = DoorkeeperReference(sketch.sample_size)

    def position(key: int) -> int:
        h = (hash(key) * sketch._mix) & _M64
        return (h ^ (h >> 29)) % sketch._length

    keys: list[int] = []
    taken: set[int] = set()
    for key in range(400):  # keys whose bytes no other key shares
        if position(key) not in taken:
            taken.add(position(key))
            keys.append(key)
    rng = random.Random(5)
    for _ in range(60_000):
        key = keys[min(int(rng.paretovariate(1.0)) - 1, len(keys) - 1)]
        if rng.random() < 0.1:
            times = rng.randint(1, 20)
            sketch.add(key, times)
            reference.add(key, times)
        else:
            assert sketch.increment(key) == reference.increment(key)
    assert len(agings) == reference.agings >= 4
    assert sketch.additions == reference.additions
    assert [sketch.frequency(key) for key in keys] == [reference.estimate(key) for key in keys]


def test_hits_added_at_once_count_as_many_increments() -> None:
    one, batched = FrequencySketch(1000), FrequencySketch(1000)
    for _ in range(7):
        one.increment("k")
    batched.add("k", 7)
    assert batched.frequency("k") == one.frequency("k") == 7
    batched.add("k", 100)
    assert batched.frequency("k") == MAX_COUNT + 1  # capped (15, and the seen bit)


def test_a_halving_ages_every_count_and_tells_the_owner() -> None:
    told = []
    sketch = FrequencySketch(16, on_halve=lambda: told.append(True))
    sketch.add("hot", 9)
    sketch.count_accesses(sketch.until_halving())
    assert told == [True]
    assert sketch.frequency("hot") == 4  # 8 counted, halved; the seen bit cleared


def test_an_aging_forgets_keys_seen_once_since_the_last() -> None:
    sketch = FrequencySketch(16)
    sketch.increment("once")
    sketch.add("twice", 2)
    sketch.add("thrice", 3)
    sketch.halve()
    assert [sketch.frequency(k) for k in ("once", "twice", "thrice")] == [0, 0, 1]
    additions = sketch.additions
    assert sketch.increment("thrice") == 2  # seen again: the bit, not the counter
    assert sketch.additions == additions


def test_the_row_is_a_prime_length_of_64_bytes_a_key() -> None:
    assert [prime_below(n) for n in (64, 61, 59, 4)] == [61, 59, 53, 3]
    sketch = FrequencySketch(1000)
    length = len(sketch._row)
    assert length == prime_below(64 * 1000)
    assert all(length % d for d in range(2, int(length**0.5) + 1))


def test_consecutive_ints_share_counters_as_hashed_keys_do() -> None:
    # An int hashes to itself: unmixed, keys 0..n-1 would take n distinct counters of a
    # row (no collisions at all), and the integer traces would measure a better sketch
    # than string keys get. Mixed, they fill a row as random keys do.
    sketch = FrequencySketch(1000)
    keys = len(sketch._row) // 2
    for key in range(keys):
        sketch.increment(key)
    filled = sum(1 for count in sketch._row if count)
    width = len(sketch._row)
    expected = width * (1 - math.exp(-keys / width))  # random positions: about 79% of keys
    assert abs(filled - expected) < 0.05 * keys
    assert filled < 0.9 * keys


def test_a_seed_picks_the_hash_and_the_same_seed_the_same_counts() -> None:
    def layout(seed: int) -> bytes:
        sketch = FrequencySketch(1000, seed=seed)
        for key in range(500):
            sketch.add(key, 3)
        return bytes(sketch._row)

    assert layout(0) == layout(0)
    assert layout(1) == layout(1)
    assert layout(0) != layout(1)
