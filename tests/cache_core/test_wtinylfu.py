"""The W-TinyLFU L1 tier: the byte bound under any sequence of operations, admission by
frequency, the climbing window, and fixed hit ratios on seeded synthetic traces (int keys
hash the same in every process, so these figures are exact)."""

from __future__ import annotations

import importlib
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_core import CachingAgent
from cache_core.tiers.frequency_sketch import FrequencySketch
from cache_core.tiers.memory import MemoryTier
from cache_core.tiers.wtinylfu import (
    GUARD_REST,
    PROBATION,
    PROTECTED,
    WINDOW,
    RecencyGuard,
    WTinyLfuTier,
)

# The seeded short traces live with the benches (bench/hitratio.py reports them too).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
_synthetic: Any = importlib.import_module("synthetic_traces")
DRIFTING: dict[str, dict[str, float]] = _synthetic.DRIFTING
LENGTH: int = _synthetic.LENGTH
drifting_trace = _synthetic.drifting_trace


def unit(_key: Any, _data: bytes) -> int:
    return 1


def replay(tier: Any, keys: list[int]) -> float:
    hits = 0
    for key in keys:
        if tier.get(key) is None:
            tier.set(key, b"", None)
        else:
            hits += 1
    return round(100 * hits / len(keys), 2)


def replay_until(tier: Any, keys: list[int], start: int, done: Callable[[], bool]) -> int:
    """Replay ``keys`` from ``start`` until ``done()`` holds after a request: its index."""
    for i in range(start, len(keys)):
        replay(tier, [keys[i]])
        if done():
            return i
    raise AssertionError("the trace ended first")


def calls_of_keyed(owner: Any, name: str) -> list[Any]:
    """Wrap ``owner.name``, a method of one argument: each call appends its argument."""
    calls: list[Any] = []
    wrapped = getattr(owner, name)

    def counted(arg: Any) -> Any:
        calls.append(arg)
        return wrapped(arg)

    setattr(owner, name, counted)
    return calls


def calls_of(owner: Any, name: str) -> list[None]:
    """Wrap ``owner.name`` (a method or a callback) so each call appends to the list."""
    calls: list[None] = []
    wrapped = getattr(owner, name)

    def counted() -> None:
        calls.append(None)
        wrapped()

    setattr(owner, name, counted)
    return calls


def loop_trace(distinct: int, rounds: int) -> list[int]:
    return list(range(distinct)) * rounds


def zipf_trace(distinct: int, length: int, seed: int, s: float = 1.0) -> list[int]:
    rng = random.Random(seed)
    weights = [1 / (rank**s) for rank in range(1, distinct + 1)]
    return rng.choices(range(distinct), weights=weights, k=length)


def recency_trace(length: int, seed: int) -> list[int]:
    """A sliding working set: the newest keys are the hot ones (LRU's best case)."""
    rng = random.Random(seed)
    return [max(0, i // 4 - int(rng.expovariate(1 / 30))) for i in range(length)]


def check_regions(tier: WTinyLfuTier) -> None:
    sizes = {WINDOW: 0, PROBATION: 0, PROTECTED: 0}
    for region, order in enumerate((tier._window, tier._probation, tier._protected)):
        for key, entry in order.items():
            assert entry[3] == region and tier._entries[key] is entry
            sizes[region] += entry[2]
    assert len(tier._window) + len(tier._probation) + len(tier._protected) == len(tier._entries)
    assert tier._window_bytes == sizes[WINDOW]
    assert tier._probation_bytes == sizes[PROBATION]
    assert tier._protected_bytes == sizes[PROTECTED]
    assert tier.size_bytes == sum(sizes.values()) <= tier.max_bytes
    guard = tier._guard
    if guard is not None:
        assert guard._bytes == sum(guard.order.values()) <= guard._budget


# -- hit ratios: fixed figures on seeded traces, and the reason the policy exists ----------


def test_a_loop_larger_than_the_cache_defeats_lru_not_wtinylfu() -> None:
    keys = loop_trace(600, 40)
    lru = replay(MemoryTier(weigher=unit, max_bytes=500), keys)
    ours = replay(WTinyLfuTier(weigher=unit, max_bytes=500), keys)
    assert lru == 0.0
    assert ours == pytest.approx(79.37, abs=0.005)


def test_a_skewed_workload_keeps_its_popular_keys() -> None:
    keys = zipf_trace(5000, 60_000, seed=1)
    lru = replay(MemoryTier(weigher=unit, max_bytes=250), keys)
    ours = replay(WTinyLfuTier(weigher=unit, max_bytes=250), keys)
    assert lru == pytest.approx(55.55, abs=0.005)
    assert ours == pytest.approx(64.03, abs=0.005)
    assert ours > lru + 8


def test_on_a_recency_workload_the_guard_gives_the_window_everything() -> None:
    # LRU's best case: the sampled LRU beside the cache proves it, and the window takes the
    # whole cache; what is left of the gap is the time that proof takes.
    keys = recency_trace(60_000, seed=2)
    lru = replay(MemoryTier(weigher=unit, max_bytes=100), keys)
    tier = WTinyLfuTier(weigher=unit, max_bytes=100)
    ours = replay(tier, keys)
    assert lru == pytest.approx(71.42, abs=0.005)
    assert ours == pytest.approx(71.01, abs=0.005)
    described = tier.describe()
    assert described["recency_guard"]["verdicts"] >= 1
    assert described["window_share"] > 0.5  # given everything, then climbed down a little


def test_a_shift_to_recency_while_the_guard_rests_is_still_caught() -> None:
    # Frequency wins the first phase (the guard rests at the switch); LRU's best case
    # follows. Before the guard rested, the second phase replayed to 73.35%; before its
    # rests grew with its wins, to 73.84%.
    first = zipf_trace(5000, 60_000, seed=1)
    second = [key + 10_000 for key in recency_trace(60_000, seed=2)]
    tier = WTinyLfuTier(weigher=unit, max_bytes=250)
    lru = MemoryTier(weigher=unit, max_bytes=250)
    replay(tier, first)
    replay(lru, first)
    assert tier._resting is not None
    ours, theirs = replay(tier, second), replay(lru, second)
    assert (theirs, ours) == pytest.approx((75.43, 74.92), abs=0.005)
    assert tier.describe()["recency_guard"]["verdicts"] >= 1


def test_after_a_verdict_the_guard_rests() -> None:
    # The window has the whole cache (an LRU itself) until the climber takes it down: the
    # guard's work on every read of a key it follows would buy nothing meanwhile.
    tier = WTinyLfuTier(weigher=unit, max_bytes=100)
    for key in recency_trace(60_000, seed=2):
        replay(tier, [key])
        guard = tier._guard or tier._resting
        if guard is not None and guard.verdicts:
            break
    assert tier._window_max == tier.max_bytes
    assert guard is not None and guard.resting
    assert tier._guard is None and tier._resting is guard


SHORT_FIGURES = {
    # (case, fraction): (LRU %, ours %) on 80,000 requests: 9-30 cache-fulls
    ("flat", 0.25): (75.75, 75.41),
    ("flat", 0.5): (86.28, 85.64),
    ("steep", 0.25): (78.3, 77.94),
    ("steep", 0.5): (78.81, 77.94),
    ("with-stable-set", 0.25): (78.21, 77.79),
    ("with-stable-set", 0.5): (82.59, 81.78),
}


def short_replay(case: str, fraction: float) -> tuple[float, float, WTinyLfuTier]:
    keys = drifting_trace(LENGTH, **DRIFTING[case])
    size = round(len(set(keys)) * fraction)
    assert 9 < len(keys) / size < 31
    lru = replay(MemoryTier(weigher=unit, max_bytes=size), keys)
    tier = WTinyLfuTier(weigher=unit, max_bytes=size)
    return lru, replay(tier, keys), tier


@pytest.mark.parametrize(("case", "fraction"), sorted(SHORT_FIGURES))
def test_short_recency_skewed_traces_replay_to_fixed_figures(case: str, fraction: float) -> None:
    # The guard decides within a couple of cache-fulls after the first eviction, and the
    # window it then gets evicts what main held coldest first (it evicted main's hottest
    # first before: 1-2 points more lost on these, 4 cache-fulls to recover).
    lru, ours, tier = short_replay(case, fraction)
    assert (lru, ours) == pytest.approx(SHORT_FIGURES[case, fraction], abs=0.005)
    assert tier.describe()["recency_guard"]["verdicts"] >= 1


def test_short_recency_skewed_traces_are_within_a_point_of_lru() -> None:
    # On the figures the replays above are pinned to (issue 19, item 1): they trailed by
    # 1.5, 1.4 and 2.9 points while a verdict waited for the end of a guard's period.
    gaps = [ours - lru for lru, ours in SHORT_FIGURES.values()]
    assert min(gaps) >= -1


def test_a_window_given_everything_evicts_mains_coldest_first() -> None:
    tier = WTinyLfuTier(weigher=unit, max_bytes=100)
    for key in range(100):
        tier.set(key, b"", None)
    for key in range(100):  # everything once more: all of main is protected, in this order
        tier.get(key)
    order = [*tier._probation, *tier._protected]
    tier._give_window_everything()
    assert list(tier._window)[: len(order)] == order  # the coldest of main, coldest first
    check_regions(tier)


@pytest.mark.parametrize(
    "keys", [loop_trace(600, 40), zipf_trace(5000, 60_000, seed=1)], ids=["loop", "zipf"]
)
def test_where_frequency_wins_the_guard_stays_quiet(keys: list[int]) -> None:
    tier = WTinyLfuTier(weigher=unit, max_bytes=250)
    replay(tier, keys)
    assert tier.describe()["recency_guard"]["verdicts"] == 0
    assert tier.describe()["window_share"] < 0.5


def test_the_guard_follows_exactly_what_an_lru_would_hold() -> None:
    # At a sample rate of 1 (a small cache) the guard's LRU is the LRU tier, fed the same
    # reads and the caller's writes after misses.
    keys = zipf_trace(2000, 20_000, seed=3, s=0.8)
    lru = MemoryTier(weigher=unit, max_bytes=300)
    tier = WTinyLfuTier(weigher=unit, max_bytes=300)
    caches: tuple[Any, ...] = (lru, tier)  # int keys: a simulation
    checked = 0
    for i, key in enumerate(keys):
        for cache in caches:
            if i % 13 == 0:  # deletes leave the guard as they leave the LRU
                cache.delete(key)
            elif cache.get(key) is None:
                cache.set(key, b"", None)
        if tier._resting is not None:  # it rests: it starts again from the cache's contents
            break
        # (it starts from what the cache holds in arrival order: the same once every key
        # held then has been read or let go, a thousand requests or so)
        if i >= 1_250 and i % 250 == 0:
            assert tier._guard is not None and tier._guard.rate == 1
            assert list(tier._guard.order) == list(lru._entries)
            checked += 1
    assert checked >= 5


def test_where_the_cache_beats_lru_by_far_the_guard_rests_then_looks_again() -> None:
    # Following every key of a small cache made a hit 2.2x an LRU hit; where the cache has
    # just won by 4 standard deviations, the guard stops for GUARD_REST cache-fulls of
    # accesses, then starts again from what the cache holds, on its faded evidence.
    tier = WTinyLfuTier(weigher=unit, max_bytes=250)
    keys = zipf_trace(5000, 200_000, seed=1)
    at = replay_until(tier, keys, 0, lambda: tier._resting is not None)
    guard = tier._resting
    assert guard is not None and tier._guard is None and guard.resting
    assert tier.describe()["recency_guard"]["resting"]
    lead = guard._cache_only - guard._lru_only
    followed = list(guard.order)
    hot = next(key for key in keys if key in tier and tier._entries[key][5])
    assert tier.get(hot) is not None and list(guard.order) == followed  # not followed
    woke = replay_until(tier, keys, at + 1, lambda: tier._guard is not None)
    assert tier._accesses - tier._rested_at >= GUARD_REST * len(tier)  # reads and arrivals
    assert not guard.resting and guard._warming is not None
    # What the cache held (it follows every key of so small a cache), but for the key that
    # woke it and what that key's arrival evicted: LRU holds both.
    followed = {key for key, entry in tier._entries.items() if entry[5]}
    assert len(followed) == len(tier) and len(set(guard.order) - followed) <= 2
    faded = guard._warming
    assert 0 < faded[2] - faded[1] < lead  # the cache's lead, faded over the rest
    replay_until(tier, keys, woke + 1, lambda: guard._warming is None)
    # The first period only filled the LRU: the evidence is the faded one, none of its reads
    assert (guard._reads, guard._lru_only, guard._cache_only) == faded
    assert guard.verdicts == 0


def test_each_win_in_a_row_doubles_the_rest_and_a_lean_starts_over() -> None:
    tier = WTinyLfuTier(weigher=unit, max_bytes=250)
    keys = zipf_trace(5000, 400_000, seed=1)
    at = 0
    rests: list[tuple[int, int]] = []
    while len(rests) < 5:
        at = replay_until(tier, keys, at, lambda: tier._resting is not None)
        guard = tier._resting
        assert guard is not None
        rests.append(((tier._wake_at - tier._rested_at) // len(tier), guard.wins))
        at = replay_until(tier, keys, at + 1, lambda: tier._guard is not None)
    assert rests == [(4, 1), (8, 2), (16, 3), (16, 4), (16, 5)]  # GUARD_REST, doubled twice
    guard = tier._guard
    assert guard is not None
    # LRU ahead by 12 of 12 reads only one of them hit: 3.5 sd, a lean but no verdict
    guard._warming, guard._lru_only, guard._cache_only, guard.left = None, 12.0, 0.0, 0
    assert not guard.judge() and guard.leaning and guard.wins == 0  # the count starts over
    guard.wins = 3
    guard._verdict()  # (the early verdict, a read's, comes here without a judgement)
    assert guard.wins == 0


def test_a_guard_filled_at_once_holds_what_writes_one_by_one_would() -> None:
    # (a resting guard wakes into a fill of every key the cache follows, oldest first)
    rng = random.Random(4)
    items = [(key, rng.choice((1, 2, 5, 9))) for key in range(200)]
    items.insert(50, (-1, 100))  # more than the budget (64): never held
    one_by_one, filled = RecencyGuard(max_bytes=64, held=64), RecencyGuard(max_bytes=64, held=64)
    for key, weight in items:
        one_by_one.write(key, weight)
    filled.fill(items)
    assert list(filled.order.items()) == list(one_by_one.order.items())
    assert filled._bytes == one_by_one._bytes == sum(filled.order.values()) <= 64
    assert len(filled.order) > 10


def test_the_guard_acts_at_once_on_overwhelming_evidence_and_never_on_a_draw() -> None:
    guard = RecencyGuard(max_bytes=64, held=64)  # every key followed, periods of 64 reads
    for key in range(64):
        guard.write(key, 1)
    verdict_at = None
    for read in range(64 * 10):  # LRU hits every read, the cache none
        if guard.read(read % 64, None):
            verdict_at = read + 1
            break
    assert verdict_at == 64  # one period: 64 reads, LRU 64 ahead > 4 sd of chance
    draw = RecencyGuard(max_bytes=64, held=64)
    for key in range(32):
        draw.write(key, 1)
    for read in range(64 * 30):  # each hits half the reads, never the same ones
        key = read % 64
        assert not draw.read(key if key < 32 else 1000 + key, None if key < 32 else 1)
        draw.drop(1000 + key)  # keep LRU from learning the cache's keys


def test_a_four_sigma_lead_of_20_hits_is_acted_on_in_its_first_period() -> None:
    # 20 reads only LRU hit, none only the cache: beyond 4 sd (17.9), though under the
    # slow path's margin and slack (33 hits), which the test used to ask too.
    guard = RecencyGuard(max_bytes=64, held=64)  # every key followed, periods of 64 reads
    for key in range(64):
        guard.write(key, 1)
    verdicts = []
    for read in range(64):
        lru_only = read < 20
        verdicts.append(guard.read(read, None if lru_only else 1))
    assert verdicts.index(True) == 63  # the period's end, not a period later


def test_while_the_guard_leans_a_clear_lead_is_acted_on_before_its_periods_end() -> None:
    def after_a_first_period(lru_only: int) -> RecencyGuard:
        guard = RecencyGuard(max_bytes=64, held=64)  # every key followed, periods of 64 reads
        for key in range(64):
            guard.write(key, 1)
        for read in range(64):  # both hit, but for the first ``lru_only`` reads
            assert not guard.read(read, None if read < lru_only else 1)
        return guard

    # 8 reads only LRU hit: 2.8 sd of chance, leaning (2) and no verdict (4). Its lead,
    # faded to 7.84, passes 4.5 sd (lead > 20.25) at the 13th read of the next period.
    leaning = after_a_first_period(8)
    assert leaning.leaning
    verdicts = [leaning.read(read, None) for read in range(64)]
    assert verdicts.index(True) == 12 and leaning.verdicts == 1
    # Not leaning, the same lead waits for the period's end.
    level = after_a_first_period(0)
    assert not level.leaning
    verdicts = [level.read(read, None) for read in range(64)]
    assert verdicts.index(True) == 63


def test_a_tie_at_admission_goes_to_the_newcomer_only_while_the_guard_leans() -> None:
    tier = WTinyLfuTier(weigher=unit, max_bytes=4)  # a window of none: all through admission
    for key in range(4):
        tier.set(key, b"", None)
    tier.set(10, b"", None)  # seen once, as the victim was: a tie, and the resident stays
    assert 10 not in tier._entries and 0 in tier._entries
    assert tier._guard is not None and not tier._guard.leaning
    tier._guard.leaning = True  # LRU ahead at 2 sd at the guard's last judgement
    tier.set(11, b"", None)
    assert 11 in tier._entries and 0 not in tier._entries
    check_regions(tier)


def test_a_hit_leaves_the_ticks_work_to_the_next_miss() -> None:
    # The hit path only counts: the sketch's aging and the climber's sample wait for
    # a miss, which then counts the hits since the last tick.
    tier = WTinyLfuTier(weigher=unit, max_bytes=100)
    for key in range(50):
        tier.set(key, b"", None)
    ticks = calls_of(tier, "_tick")
    for _ in range(20):
        for key in range(50):
            assert tier.get(key) == b""
    assert ticks == []
    assert tier._accesses >= tier._tick_at  # a tick is due, and waits
    assert tier.get(1000) is None
    assert len(ticks) == 1
    # The sample it closed held the 1,000 hits and the miss.
    assert tier._previous_hit_rate == pytest.approx(1000 / 1001)


def test_a_long_run_of_hits_ages_the_sketch_once_at_the_next_miss() -> None:
    # Found in review: crediting a run of 50,000 hits at once halved the sketch at every
    # tick after it (its count stayed past the halving point), and the hot keys' counts
    # fell from 15 to 1-2, to be evicted by one-off keys.
    tier = WTinyLfuTier(weigher=unit, max_bytes=100)
    for key in range(100):
        tier.set(key, b"", None)
    halvings = calls_of(tier._sketch, "_on_halve")
    for i in range(50_000):
        tier.get(i % 100)
    for i in range(6):
        tier.get(i)
        if tier.get(1000 + i) is None:
            tier.set(1000 + i, b"", None)
    assert len(halvings) <= 1
    assert all(key in tier._entries for key in range(6))


def test_while_the_cache_fills_arrivals_are_counted_at_once_when_it_is_full() -> None:
    # An increment per arrival, and a carry of every held key at each resize as the cache
    # grew, were a sixth of a replay at 100,000 entries; nothing is admitted before the
    # first eviction, so the sketch counts them all then, as they would stand had each been
    # counted as it came (the reference: a sketch fed one arrival at a time, resized alike).
    tier = WTinyLfuTier(weigher=unit, max_bytes=300)
    reference = FrequencySketch(64)
    increments = calls_of_keyed(tier._sketch, "increment")
    for key in range(300):
        tier.set(key, b"", None)
        reference.increment(key)
        if key + 1 > reference.capacity:
            reference.resize(2 * (key + 1), range(key + 1))
    assert not increments and tier._guard is None
    assert tier._sketch.capacity == reference.capacity  # resized as it grew, nothing carried
    tier.set(300, b"", None)  # the first eviction
    reference.increment(300)
    assert tier._guard is not None and len(tier) == 300
    counts = {key: (tier._sketch.frequency(key), reference.frequency(key)) for key in tier._entries}
    # The same, but for the reference's errors: of two keys that shared a byte while it
    # was small, the second counted 2, and each later resize carried the 2 on (8 in 300).
    differ = [key for key, (ours, fed) in counts.items() if ours != fed]
    assert all(counts[key][1] == counts[key][0] + 1 for key in differ) and len(differ) <= 10
    assert all(entry[6] == 1 for entry in tier._entries.values())  # each arrival's estimate
    assert tier._sketch.additions == reference.additions == 0  # first sightings, all


def test_a_halving_while_the_cache_fills_drops_the_arrivals_before_it() -> None:
    tier = WTinyLfuTier(weigher=unit, max_bytes=60)
    halvings = calls_of(tier._sketch, "_on_halve")
    for key in range(30):
        tier.set(key, b"", None)
    for _ in range(700):  # hits toward the halving: 10 accesses per key it is sized for
        tier.get(0)
    tier.get(-1)  # a miss: the hits reach the sketch, which halves
    assert len(halvings) == 1
    for key in range(30, 61):
        tier.set(key, b"", None)
    assert tier._guard is not None
    assert all(tier._entries[key][6] == 0 for key in range(1, 30) if key in tier._entries)
    assert all(tier._entries[key][6] == 1 for key in range(31, 61) if key in tier._entries)
    assert sum(tier._sketch.frequency(key) for key in range(1, 30)) <= 1  # (a collision)


def test_a_cache_filled_by_writes_alone_still_ticks() -> None:
    tier = WTinyLfuTier(weigher=unit, max_bytes=100)
    ticks = calls_of(tier, "_tick")
    for key in range(5_000):
        tier.set(key, b"", None)
        tier.get(key)  # a hit: never a miss in this workload
    assert ticks


def test_the_sample_rate_rises_as_the_cache_holds_more_keys() -> None:
    # A few large values fill the cache first: the guard starts following every key, and
    # must follow fewer as small ones pile up, or it becomes a second full-size LRU.
    tier = WTinyLfuTier(weigher=lambda _key, data: max(1, len(data)), max_bytes=20_000)
    for i in range(3):
        tier.set(f"big{i}", bytes(7_000), None)
    guard = tier._guard
    assert guard is not None and guard.rate == 1 and guard.every  # the tier need not ask
    for i in range(20_000):
        tier.set(i, b"x", None)
    assert guard.rate == 1 << ((len(tier) // 512).bit_length() - 1)  # 512-1024 of them
    assert not guard.every and not all(guard.sampled(key) for key in range(64))
    assert len(guard.order) <= 20_000 // guard.rate  # a sampled LRU, not a second cache
    assert all(entry[5] == guard.sampled(key) for key, entry in tier._entries.items())
    check_regions(tier)


def test_after_clear_the_guard_waits_for_the_next_eviction() -> None:
    tier = WTinyLfuTier(weigher=unit, max_bytes=10_000)
    replay(tier, list(range(12_000)))
    assert tier._guard is not None and tier._guard.rate == 16  # 10,000 held: 625 followed
    tier.clear()
    tier.clear()
    assert tier._guard is None
    replay(tier, list(range(10_000)))  # full, nothing evicted yet
    assert tier._guard is None
    replay(tier, list(range(10_000, 10_100)))
    assert tier._guard is not None and tier._guard.rate == 16


def test_a_value_heavier_than_the_guards_budget_leaves_the_rest_followed() -> None:
    guard = RecencyGuard(max_bytes=16_384, held=16_384)  # one in 32: a 512-byte budget
    for key in range(100):
        guard.write(key, 1)
    guard.write("huge", 1_000)
    assert len(guard.order) == 100 and "huge" not in guard.order


def test_a_large_cache_follows_one_key_in_rate() -> None:
    tier = WTinyLfuTier(weigher=unit, max_bytes=16_384)
    replay(tier, list(range(20_000)))
    guard = tier._guard
    assert guard is not None and guard.rate == 32  # about GUARD_KEYS keys followed
    assert 400 < len(guard.order) <= 16_384 // 32


def test_a_probation_hit_leaves_protecteds_overflow_to_the_next_eviction() -> None:
    # A hit moves the key hit alone: a hit on probation that also demoted protected's
    # oldest cost 3.6x an LRU hit on loop, scan and cs (every hit there is one).
    tier = WTinyLfuTier(weigher=unit, max_bytes=100)  # a window of one entry
    for key in range(100):
        tier.set(key, b"", None)
    for key in range(99):  # main's 99 entries, asked for again: each promoted, none demoted
        tier.get(key)
    assert list(tier._protected) == list(range(99)) and not tier._probation
    assert tier._protected_bytes > tier._protected_max
    tier.set(100, b"", None)  # the next eviction puts protected back within its share
    assert tier._protected_bytes <= tier._protected_max
    assert list(tier._probation) == list(range(20))  # protected's oldest, oldest first
    assert list(tier._protected) == list(range(20, 99))
    check_regions(tier)


def test_a_protected_hit_stays_put_and_its_demotion_waits_a_round() -> None:
    # Protected is a CLOCK: a hit there only counts and stamps (moving the key cost a
    # second table's lookup a hit, half of a hit's time in a large cache).
    tier = WTinyLfuTier(weigher=unit, max_bytes=100)  # a window of one entry
    for key in range(100):
        tier.set(key, b"", None)
    for key in range(99):  # promoted to protected, placed 0 to 98
        tier.get(key)
    tier.get(0)
    assert next(iter(tier._protected)) == 0  # still first in line
    tier.set(100, b"", None)  # the eviction's demotion: 0 was hit since placed, 1-20 go
    assert list(tier._probation) == list(range(1, 21))
    assert list(tier._protected) == [*range(21, 99), 0]
    check_regions(tier)


def test_with_probation_empty_a_protected_victim_hit_since_placed_gets_another_round() -> None:
    # An int key, hashed the same in every run: a string's hash changes with the process,
    # and one in about 300 shared its byte with one of the victims, which then counted as
    # often as it and stayed (a cold key sharing a hot key's byte looks hot).
    big = 1000
    tier = WTinyLfuTier(weigher=lambda _key, data: max(1, len(data)), max_bytes=100)
    for key in range(100):
        tier.set(key, b"x", None)
    for key in range(99):  # promoted to protected, placed 0 to 98
        tier.get(key)
    for _ in range(12):  # a key asked for often: it will beat protected's keys
        tier.set(big, b"x", None)
        tier.delete(big)
    tier.set(500, b"x", None)  # protected's share: 0-19 demoted
    for key in list(tier._probation):
        tier.delete(key)
    tier.get(25)
    tier.set(big, bytes(40), None)  # 40 bytes out of protected, probation being empty
    assert big in tier._entries
    assert 25 in tier._entries and 21 not in tier._entries  # 25 went round again
    assert list(tier._protected)[-1] == 25
    check_regions(tier)


def test_a_rewrite_is_an_access_as_a_hit_is() -> None:
    tier = WTinyLfuTier(weigher=unit, max_bytes=100)  # a window of one entry
    for key in range(100):
        tier.set(key, b"", None)  # main: 0-98 on probation
    tier.set(5, b"new", None)  # on probation: promoted, placed with its count
    assert tier._entries[5][3] == PROTECTED and tier._entries[5][7] == tier._entries[5][4]
    for key in range(99):
        if key != 5:
            tier.get(key)  # protected: 5, then 0-98 without it
    tier.set(5, b"newer", None)  # in protected: accessed since placed
    tier.set(1000, b"", None)  # the eviction's demotion gives 5 another round
    assert list(tier._protected)[-1] == 5
    assert list(tier._probation) == [*range(5), *range(6, 21)]
    check_regions(tier)


def test_a_window_given_everything_takes_main_by_last_access() -> None:
    tier = WTinyLfuTier(weigher=unit, max_bytes=100)  # a window of one entry
    for key in range(100):
        tier.set(key, b"", None)
    for key in range(99):  # main promoted to protected, placed 0 to 98
        tier.get(key)
    tier.set(1000, b"", None)  # protected's share: 0-19 demoted (and 99 turned away)
    assert list(tier._probation) == list(range(20))
    for step, key in enumerate(range(98, 19, -1)):  # asked for again, newest placed first,
        tier.set(1001 + step, b"", None)  # each an epoch later (an arrival's eviction)
        tier.get(key)
    assert list(tier._protected) == list(range(20, 99))  # hits left protected's order be
    tier._give_window_everything()
    window = list(tier._window)
    assert window[:99] == [*range(20), *range(98, 19, -1)]  # least recently asked first
    check_regions(tier)


def test_a_key_hit_twice_in_the_window_is_admitted_to_protected() -> None:
    tier = WTinyLfuTier(weigher=unit, max_bytes=100)  # a window of one entry
    tier.set("twice", b"", None)
    tier.get("twice")
    tier.get("twice")
    tier.set("once", b"", None)  # pushes "twice" out of the window
    tier.get("once")
    tier.set("never", b"", None)  # pushes "once" out
    assert tier._entries["twice"][3] == PROTECTED
    assert tier._entries["once"][3] == PROBATION
    assert tier._entries["never"][3] == WINDOW
    check_regions(tier)


# -- the byte bound and the regions, whatever happens ---------------------------------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["get", "set", "set", "delete", "tick"]),
        st.integers(0, 40),
        st.integers(1, 300),
    ),
    max_size=400,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_the_byte_bound_holds_and_regions_agree(operations: list[tuple[str, int, int]]) -> None:
    now = [0.0]
    tier = WTinyLfuTier(
        WTinyLfuTier.Options(max_size_mb=1, ttl=None),
        clock=lambda: now[0],
        weigher=lambda _key, data: len(data),
        max_bytes=2000,
    )
    model: dict[str, bytes] = {}
    for op, k, size in operations:
        key = f"k{k}"
        if op == "set":
            data = bytes(size)
            assert tier.set(key, data, 5.0)
            model[key] = data
        elif op == "get":
            got = tier.get(key)
            assert got is None or got == model.get(key)
        elif op == "delete":
            tier.delete(key)
            model.pop(key, None)
        else:
            now[0] += 1.0
        check_regions(tier)


def test_a_value_larger_than_the_cache_is_refused_and_changes_nothing() -> None:
    tier = WTinyLfuTier(weigher=lambda _key, data: len(data), max_bytes=100)
    assert tier.set("a", bytes(60), None)
    assert tier.set("b", bytes(101), None) is False
    assert tier.get("a") == bytes(60) and "b" not in tier
    check_regions(tier)


def test_a_rewrite_that_grows_an_entry_still_respects_the_bound() -> None:
    tier = WTinyLfuTier(weigher=lambda _key, data: len(data), max_bytes=100)
    for i in range(10):
        assert tier.set(f"k{i}", bytes(10), None)
    assert tier.set("k3", bytes(80), None)
    check_regions(tier)
    assert tier.size_bytes <= 100


def test_expired_entries_read_as_misses_and_leave() -> None:
    now = [0.0]
    tier = WTinyLfuTier(clock=lambda: now[0])
    tier.set("k", b"1", 10)
    assert tier.get("k") == b"1"
    now[0] = 11
    assert tier.get("k") is None
    assert "k" not in tier and len(tier) == 0 and tier.expirations == 1


def test_an_agent_picks_the_policy_by_name() -> None:
    agent = CachingAgent.from_config(
        {"cache_tiers": {"l1": {"eviction": "wtinylfu"}}, "compression": {"enable": False}},
        env={"CACHING_AGENT_PLUGINS": ""},
    )
    assert isinstance(agent.l1, WTinyLfuTier)
    assert agent.describe()["tiers"]["l1"].startswith("wtinylfu")
    policy = agent.get_stats()["l1_policy"]
    assert policy["eviction"] == "wtinylfu" and policy["window_share"] == 0.01
    assert policy["recency_guard"] is None  # until the first eviction


def test_an_lru_agent_names_its_policy_in_stats() -> None:
    agent = CachingAgent.from_config(
        {"compression": {"enable": False}}, env={"CACHING_AGENT_PLUGINS": ""}
    )
    assert agent.get_stats()["l1_policy"] == {"eviction": "lru"}
