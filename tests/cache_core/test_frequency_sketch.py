"""The W-TinyLFU tier's count-min sketch: what an increment answers is what a lookup then
finds, the doorkeeper takes first sightings, batched additions equal single ones, and a
halving ages every count and tells the tier."""

from __future__ import annotations

from cache_core.tiers.frequency_sketch import MAX_COUNT, FrequencySketch


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
