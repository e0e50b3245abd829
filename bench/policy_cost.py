"""What a hit and a miss cost in the W-TinyLFU tier against the LRU tier, replayed on the
real traces of ../shared/traces (issue 19: a miss at most 3x an LRU miss, a hit at most
1.5x an LRU hit), with theine's (a W-TinyLFU compiled in Rust) beside them as a peer.

For each trace, at a quarter of its distinct keys (and a production-sized cell, see
LARGE_SIZE): the replay (get, then set on a miss) with each request timed, a hit's and a
miss's mean cost (the get and the set after it), in each of ROUNDS rounds in which the
policies take turns; the ratios to LRU are the median of each round's (see
interleaved_costs). Writes bench/results-policy_cost.md.

    uv run --group bench python bench/policy_cost.py [trace ...]
"""

from __future__ import annotations

import bisect
import gc
import itertools
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchlib import table, write_results
from hitratio import NO_EXPIRY, TRACES, load, names, unit

from cache_core.tiers.memory import MemoryTier
from cache_core.tiers.wtinylfu import WTinyLfuTier

ROUNDS = 5
FRACTION = 0.25
MAX_REQUESTS = 1_000_000
"""Requests replayed a trace at most (its first ones): the cost of a call, not of a
trace, is measured, and the longest traces would take minutes a policy."""
LARGE_KEYS = 400_000
LARGE_SIZE = 100_000
"""A production-sized cell beside the traces' small ones (below 1,024 held the recency
guard follows every key, one in 2 from there, one in 128 from 65,536): string keys, a
Zipf(0.9) popularity over LARGE_KEYS keys, MAX_REQUESTS requests, LARGE_SIZE entries."""
MIN_HITS = 1_000
"""LRU's hits a trace needs for its hit to be compared ("-" in the table otherwise)."""
MISS_TARGET = 3.0
HIT_TARGET = 1.5

Timed = Callable[[Any, Sequence[Any]], tuple[int, int, int, int]]


def replay(tier: Any, keys: Sequence[Any]) -> tuple[int, int, int, int]:
    """The replay, each request timed: (ns in hits, hits, ns in misses, misses), a miss
    being its get and the set after it (each figure holds a clock's cost a request: see
    clock_cost)."""
    get, put = tier.get, tier.set
    clock = time.perf_counter_ns
    hit_ns = miss_ns = hits = 0
    for key in keys:
        start = clock()
        if get(key) is None:
            put(key, b"", NO_EXPIRY)
            miss_ns += clock() - start
        else:
            hit_ns += clock() - start
            hits += 1
    return hit_ns, hits, miss_ns, len(keys) - hits


def replay_theine(cache: Any, keys: Sequence[Any]) -> tuple[int, int, int, int]:
    """:func:`replay` in theine's API (a get answers the value and whether it was found)."""
    get, put = cache.get, cache.set
    clock = time.perf_counter_ns
    hit_ns = miss_ns = hits = 0
    for key in keys:
        start = clock()
        if get(key)[1]:
            hit_ns += clock() - start
            hits += 1
        else:
            put(key, b"")
            miss_ns += clock() - start
    return hit_ns, hits, miss_ns, len(keys) - hits


def clock_cost(calls: int = 200_000) -> float:
    """What timing a request adds to its figure, in ns: the clock read twice around
    nothing, in the replay's loop (best of ROUNDS)."""
    clock = time.perf_counter_ns
    best = math.inf
    for _ in range(ROUNDS):
        total = 0
        for _ in range(calls):
            start = clock()
            total += clock() - start
        best = min(best, total / calls)
    return best


def theine_cache(size: int) -> Any:
    import theine  # the bench group's: imported when a run gets this far

    return theine.Cache(size)


Tier = Callable[[int], Any]
Policy = tuple[Tier, Timed]
TIERS: dict[str, Policy] = {
    "LRU": (lambda size: MemoryTier(weigher=unit, max_bytes=size), replay),
    "W-TinyLFU": (lambda size: WTinyLfuTier(weigher=unit, max_bytes=size), replay),
    # A W-TinyLFU whose policy is compiled (Rust), behind a Python API like ours: what a
    # compiled core would leave of the gap to our LRU.
    "theine": (theine_cache, replay_theine),
}


Costs = tuple[float, float, float]
"""ns a hit, ns a miss, hit ratio %."""


def interleaved_costs(
    policies: dict[str, Policy], size: int, keys: Sequence[Any]
) -> dict[str, list[Costs]]:
    """Each policy's costs in the replay, a round each, ROUNDS rounds in which the policies
    take turns, the clock's cost taken out: a ratio of two policies' figures from one
    round is from the same minutes of a shared machine (whose speed moved a figure by a
    fifth from one run to the next here).

    Each request is timed where it runs, so a hit costs what hits cost in this replay
    (derived instead from a replay on a tier holding every key, never full, a hit left
    out the recency guard's work, which a small cache does on every hit it follows, and
    the miss was charged with it)."""
    overhead = clock_cost()
    out: dict[str, list[Costs]] = {policy: [] for policy in policies}
    for _ in range(ROUNDS):
        for policy, (make, run) in policies.items():
            # The tiers replayed before are garbage in cycles (a W-TinyLFU's sketch calls
            # back into it): left to the collector, each later replay's collections walked
            # them too, and a round cost more than the one before (at 100,000 entries a
            # miss from 3.1 to 4.4 us over five rounds, LRU's 1.1 to 2.0).
            gc.collect()
            hit_ns, hits, miss_ns, misses = run(make(size), keys)
            out[policy].append(
                (
                    hit_ns / hits - overhead if hits else 0.0,
                    miss_ns / misses - overhead if misses else 0.0,
                    100 * hits / len(keys),
                )
            )
    return out


def median_ratio(ours: list[Costs], theirs: list[Costs], item: int) -> float:
    """The median over the rounds of ours' figure ``item`` over theirs, round by round."""
    return statistics.median(a[item] / b[item] for a, b in zip(ours, theirs, strict=True))


def best(rounds: list[Costs]) -> Costs:
    """The least hit and miss cost over the rounds, and the hit ratio (every round's)."""
    return min(r[0] for r in rounds), min(r[1] for r in rounds), rounds[0][2]


def costs(policy: Policy, size: int, keys: Sequence[Any]) -> Costs:
    """One policy's costs, each the best of ROUNDS."""
    return best(interleaved_costs({"": policy}, size, keys)[""])


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
        got = interleaved_costs(TIERS, size, keys)
        lru, ours, theirs = got["LRU"], got["W-TinyLFU"], got["theine"]
        (lru_hit, lru_miss, lru_ratio), (hit, miss, ratio) = best(lru), best(ours)
        miss_x = median_ratio(ours, lru, 1)
        worst_miss = max(worst_miss, miss_x)
        theine_miss_x.append(median_ratio(theirs, lru, 1))
        # (a mean over LRU's few hits, on loop and scan none, is no figure to judge by)
        compared = lru_ratio * len(keys) / 100 >= MIN_HITS
        hit_x = median_ratio(ours, lru, 0) if compared else None
        if hit_x is not None:
            worst_hit = max(worst_hit, hit_x)
            theine_hit_x.append(median_ratio(theirs, lru, 0))
        rows.append(
            [
                name,
                size,
                round(lru_ratio, 1),
                round(ratio, 1),
                round(lru_hit),
                round(hit),
                "-" if hit_x is None else round(hit_x, 2),
                round(lru_miss),
                round(miss),
                round(miss_x, 2),
                "-" if hit_x is None else round(theine_hit_x[-1], 2),
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
            f"keys, each request timed, a hit's and a miss's mean (a miss: its get and the "
            f"set after it) in each of {ROUNDS} rounds in which the policies take turns, the "
            "clock's own cost taken out: the ns are the best round's, the ratios the median "
            "of each round's. The last row is a "
            f"production-sized cell: {MAX_REQUESTS:,} requests of string keys, Zipf(0.9) "
            f"over {LARGE_KEYS:,} keys, {LARGE_SIZE:,} entries (the recency guard following "
            "one key in 128)."
            f"\n\n{text}\n\n{verdict}\n",
        )


if __name__ == "__main__":
    main(sys.argv[1:])
