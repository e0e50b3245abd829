"""The W-TinyLFU tier's frequency sketch: what an increment answers is what a lookup then
finds, first sightings do not count toward the aging, batched additions equal single
ones, and an aging forgets single sightings, halves the rest and tells the tier; a key's
counter is a mixed hash modulo a prime length, and a seed picks the mix."""

from __future__ import annotations

import math

from cache_core.tiers.frequency_sketch import MAX_COUNT, FrequencySketch, primes_below


def test_an_increment_answers_the_estimate_a_lookup_then_finds() -> None:
    sketch = FrequencySketch(1000)
    for times in range(1, 20):
        assert sketch.increment("k") == sketch.frequency("k") == min(times, MAX_COUNT + 1)


def test_a_first_sighting_does_not_count_toward_the_aging() -> None:
    # (as the doorkeeper's did not: a scan of keys seen once must not age the counts)
    sketch = FrequencySketch(1000)
    assert sketch.frequency("k") == 0
    assert sketch.increment("k") == 1
    assert sketch.additions == 0
    assert sketch.increment("k") == 2
    assert sketch.additions == 1
    sketch.add("other", 3)
    assert sketch.additions == 3  # its first of three was a first sighting


def test_hits_added_at_once_count_as_many_increments() -> None:
    one, batched = FrequencySketch(1000), FrequencySketch(1000)
    for _ in range(7):
        one.increment("k")
    batched.add("k", 7)
    assert batched.frequency("k") == one.frequency("k") == 7
    batched.add("k", 100)
    assert batched.frequency("k") == MAX_COUNT + 1  # capped (15, and the first sighting)


def test_a_halving_ages_every_count_and_tells_the_owner() -> None:
    told = []
    sketch = FrequencySketch(16, on_halve=lambda: told.append(True))
    sketch.add("hot", 9)
    sketch.count_accesses(sketch.until_halving())
    assert told == [True]
    assert sketch.frequency("hot") == 4  # (9 - 1) // 2: as 8 counters halved, no doorkeeper


def test_an_aging_forgets_keys_seen_once_since_the_last() -> None:
    sketch = FrequencySketch(16)
    sketch.increment("once")
    sketch.add("twice", 2)
    sketch.add("thrice", 3)
    sketch.halve()
    assert [sketch.frequency(k) for k in ("once", "twice", "thrice")] == [0, 0, 1]


def test_the_row_is_a_prime_length_of_64_counters_a_key() -> None:
    assert primes_below(64, 4) == [61, 59, 53, 47]
    sketch = FrequencySketch(1000)
    length = len(sketch._row)
    assert length == primes_below(64 * 1000, 1)[0]
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
