"""What a hit and a miss cost in the W-TinyLFU tier against the LRU tier, replayed on the
real traces of ../shared/traces (issue 19: a miss at most 3x an LRU miss, a hit at most
1.5x an LRU hit), with theine's (a W-TinyLFU compiled in Rust) beside them as a peer.

For each trace, at a quarter of its distinct keys (and a production-sized cell, see
LARGE_SIZE): the replay's time (get, then set on a
miss) and its hit count, best of ROUNDS; and the time of a hit alone, from a replay of the
same keys on a tier that already holds every one of them. A miss's cost is what the replay
spent beyond its hits at that price. Writes bench/results-policy_cost.md.

    uv run --group bench python bench/policy_cost.py [trace ...]
"""

from __future__ import annotations

import bisect
import itertools
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchlib import table, write_results
from hitratio import NO_EXPIRY, TRACES, load, names, unit

from cache_core.tiers.memory import MemoryTier
from cache_core.tiers.wtinylfu import WTinyLfuTier

ROUNDS = 3
FRACTION = 0.25
MAX_REQUESTS = 1_000_000
"""Requests replayed a trace at most (its first ones): the cost of a call, not of a
trace, is measured, and the longest traces would take minutes a policy."""
LARGE_KEYS = 400_000
LARGE_SIZE = 100_000
"""A production-sized cell beside the traces' small ones (below 1,024 held the recency
guard follows every key, one in 2 from there, one in 128 from 65,536): string keys, a
Zipf(0.9) popularity over LARGE_KEYS keys, MAX_REQUESTS requests, LARGE_SIZE entries."""
MISS_TARGET = 3.0
HIT_TARGET = 1.5

Replay = Callable[[Any, Sequence[Any]], tuple[float, int]]


def replay(tier: Any, keys: Sequence[Any]) -> tuple[float, int]:
    """Seconds the replay took, and its hits."""
    get, put = tier.get, tier.set
    hits = 0
    start = time.perf_counter()
    for key in keys:
        if get(key) is None:
            put(key, b"", NO_EXPIRY)
        else:
            hits += 1
    return time.perf_counter() - start, hits


def replay_theine(cache: Any, keys: Sequence[Any]) -> tuple[float, int]:
    """:func:`replay` in theine's API (a get answers the value and whether it was found)."""
    get, put = cache.get, cache.set
    hits = 0
    start = time.perf_counter()
    for key in keys:
        if get(key)[1]:
            hits += 1
        else:
            put(key, b"")
    return time.perf_counter() - start, hits


def theine_cache(size: int) -> Any:
    import theine  # the bench group's: imported when a run gets this far

    return theine.Cache(size)


Tier = Callable[[int], Any]
TIERS: dict[str, tuple[Tier, Replay]] = {
    "LRU": (lambda size: MemoryTier(weigher=unit, max_bytes=size), replay),
    "W-TinyLFU": (lambda size: WTinyLfuTier(weigher=unit, max_bytes=size), replay),
    # A W-TinyLFU whose policy is compiled (Rust), behind a Python API like ours: what a
    # compiled core would leave of the gap to our LRU.
    "theine": (theine_cache, replay_theine),
}


def hit_cost(make: Tier, run: Replay, keys: Sequence[Any]) -> float:
    """Seconds a hit takes: a second replay on a tier holding every key."""
    tier = make(len(set(keys)) + 1)
    run(tier, keys)
    seconds, hits = run(tier, keys)
    assert hits == len(keys)
    return seconds / hits


def costs(make: Tier, run: Replay, size: int, keys: Sequence[Any]) -> tuple[float, float, float]:
    """(ns a hit, ns a miss, hit ratio %), each the best of ROUNDS."""
    hit = min(hit_cost(make, run, keys) for _ in range(ROUNDS))
    best: tuple[float, int] | None = None
    for _ in range(ROUNDS):
        seconds, hits = run(make(size), keys)
        if best is None or seconds < best[0]:
            best = (seconds, hits)
    assert best is not None
    seconds, hits = best
    misses = len(keys) - hits
    miss = (seconds - hits * hit) / misses if misses else 0.0
    return hit * 1e9, miss * 1e9, 100 * hits / len(keys)


def large_trace() -> list[str]:
    """Seeded: the same keys every run (their hashes, so the sketch's positions, change with
    PYTHONHASHSEED from one run to the next, as a server's do)."""
    rng = random.Random(7)
    cumulative = list(itertools.accumulate(1 / (rank + 1) ** 0.9 for rank in range(LARGE_KEYS)))
    total = cumulative[-1]
    return [
        f"user:{bisect.bisect(cumulative, rng.random() * total)}:profile"
        for _ in range(MAX_REQUESTS)
    ]


def main(selected: list[str]) -> None:
    chosen = selected or names()
    if not chosen:
        raise SystemExit(
            f"policy_cost: no traces in {TRACES / 'lirs'} or {TRACES / 'cache2k'}; set "
            "CACHING_AGENT_TRACES to the folder that holds them"
        )
    rows = []
    worst_miss = worst_hit = 0.0
    theine_miss_x: list[float] = []
    theine_hit_x: list[float] = []
    cells: list[tuple[str, Any]] = [(name, None) for name in chosen]
    if not selected:
        cells.append((f"zipf-{LARGE_KEYS // 1000}k (str keys)", LARGE_SIZE))
    for name, large in cells:
        keys: Sequence[Any] = large_trace() if large else load(name)[:MAX_REQUESTS]
        size = large or max(10, round(len(set(keys)) * FRACTION))
        got = {policy: costs(make, run, size, keys) for policy, (make, run) in TIERS.items()}
        (lru_hit, lru_miss, lru_ratio), (hit, miss, ratio) = got["LRU"], got["W-TinyLFU"]
        theine_hit, theine_miss, _ = got["theine"]
        miss_x, hit_x = miss / lru_miss, hit / lru_hit
        worst_miss, worst_hit = max(worst_miss, miss_x), max(worst_hit, hit_x)
        theine_miss_x.append(theine_miss / lru_miss)
        theine_hit_x.append(theine_hit / lru_hit)
        rows.append(
            [
                name,
                size,
                round(lru_ratio, 1),
                round(ratio, 1),
                round(lru_hit),
                round(hit),
                round(hit_x, 2),
                round(lru_miss),
                round(miss),
                round(miss_x, 2),
                round(theine_hit_x[-1], 2),
                round(theine_miss_x[-1], 2),
            ]
        )
        print(" | ".join(str(v) for v in rows[-1]), flush=True)
    header = [
        "trace",
        "size",
        "LRU hit %",
        "ours hit %",
        "LRU hit ns",
        "ours hit ns",
        "hit x",
        "LRU miss ns",
        "ours miss ns",
        "miss x",
        "theine hit x",
        "theine miss x",
    ]
    text = table(header, rows)
    verdict = (
        f"Targets: a miss at most {MISS_TARGET:g}x an LRU miss (worst here {worst_miss:.2f}x: "
        f"{'met' if worst_miss <= MISS_TARGET else 'NOT met'}), a hit at most {HIT_TARGET:g}x "
        f"an LRU hit (worst {worst_hit:.2f}x: {'met' if worst_hit <= HIT_TARGET else 'NOT met'}). "
        f"theine, against the same LRU: a miss {min(theine_miss_x):.2f}-"
        f"{max(theine_miss_x):.2f}x, a hit {min(theine_hit_x):.2f}-{max(theine_hit_x):.2f}x."
    )
    print(text)
    print(verdict)
    if not selected:
        write_results(
            "policy_cost",
            "L1 policy cost per call: W-TinyLFU against LRU",
            "`uv run nox -s bench -- policy_cost`: each trace's first "
            f"{MAX_REQUESTS:,} requests replayed in process at {FRACTION:.0%} of its distinct "
            f"keys, best of {ROUNDS}; a hit's cost from a replay on a tier holding every key, "
            "a miss's from what the replay spent beyond its hits. The last row is a "
            f"production-sized cell: {MAX_REQUESTS:,} requests of string keys, Zipf(0.9) "
            f"over {LARGE_KEYS:,} keys, {LARGE_SIZE:,} entries (the recency guard following "
            "one key in 128)."
            f"\n\n{text}\n\n{verdict}\n",
        )


if __name__ == "__main__":
    main(sys.argv[1:])
