"""The W-TinyLFU tier's count-min sketch: what an increment answers is what a lookup then
finds, the doorkeeper takes first sightings, batched additions equal single ones, and a
halving ages every count and tells the tier; its positions are residues of a mixed hash
modulo distinct primes, and a seed picks the mix."""

from __future__ import annotations

import math

from cache_core.tiers.frequency_sketch import MAX_COUNT, FrequencySketch, primes_below


def test_an_increment_answers_the_estimate_a_lookup_then_finds() -> None:
    sketch = FrequencySketch(1000)
    for times in range(1, 20):
        assert sketch.increment("k") == sketch.frequency("k") == min(times, MAX_COUNT + 1)


def test_a_first_sighting_reaches_only_the_doorkeeper() -> None:
    sketch = FrequencySketch(1000)
    assert sketch.frequency("k") == 0
    assert sketch.increment("k") == 1
    assert sketch.additions == 0  # no counter moved: a key seen once costs them nothing


def test_hits_added_at_once_count_as_many_increments() -> None:
    one, batched = FrequencySketch(1000), FrequencySketch(1000)
    for _ in range(7):
        one.increment("k")
    batched.add("k", 7)
    assert batched.frequency("k") == one.frequency("k") == 7
    batched.add("k", 100)
    assert batched.frequency("k") == MAX_COUNT + 1  # capped, the doorkeeper's one on top


def test_a_halving_ages_every_count_and_tells_the_owner() -> None:
    told = []
    sketch = FrequencySketch(16, on_halve=lambda: told.append(True))
    sketch.add("hot", 9)
    sketch.count_accesses(sketch.until_halving())
    assert told == [True]
    assert sketch.frequency("hot") == 4  # 8 counted, halved; the doorkeeper emptied


def test_rows_and_doorkeeper_are_distinct_prime_lengths() -> None:
    assert primes_below(64, 4) == [61, 59, 53, 47]
    sketch = FrequencySketch(1000)
    lengths = [len(row) for row in sketch._rows] + list(sketch._door_primes)
    assert len(set(lengths)) == 6
    assert all(all(n % d for d in range(2, int(n**0.5) + 1)) for n in lengths)


def test_consecutive_ints_share_counters_as_hashed_keys_do() -> None:
    # An int hashes to itself: unmixed, keys 0..n-1 would take n distinct counters of a
    # row (no collisions at all), and the integer traces would measure a better sketch
    # than string keys get. Mixed, they fill a row as random keys do.
    sketch = FrequencySketch(1000)
    keys = len(sketch._rows[0]) // 2
    for key in range(keys):
        sketch.increment(key)
        sketch.increment(key)  # past the doorkeeper: the counters move
    filled = sum(1 for count in sketch._rows[0] if count)
    width = len(sketch._rows[0])
    expected = width * (1 - math.exp(-keys / width))  # random positions: about 79% of keys
    assert abs(filled - expected) < 0.05 * keys
    assert filled < 0.9 * keys


def test_a_seed_picks_the_hash_and_the_same_seed_the_same_counts() -> None:
    def layout(seed: int) -> list[bytes]:
        sketch = FrequencySketch(1000, seed=seed)
        for key in range(500):
            sketch.add(key, 3)
        return [bytes(row) for row in sketch._rows]

    assert layout(0) == layout(0)
    assert layout(1) == layout(1)
    assert layout(0) != layout(1)
