"""Hit ratio of L1 eviction policies on real traces (../shared/traces, formats in its
README): LRU (the default tier), the adaptive W-TinyLFU tier, and theine (a W-TinyLFU
cache from PyPI) for reference, each replayed in process at several cache sizes.

A replay asks the cache for each key and, on a miss, stores it (weight 1: the bound is a
count of entries). Sizes are fractions of the trace's distinct keys, plus the sizes the
traces' README quotes. Writes bench/results-hitratio.md and bench/plot-hitratio-<trace>.png.

    uv run --group bench python bench/hitratio.py [trace ...]
"""

from __future__ import annotations

import gzip
import lzma
import os
import statistics
import sys
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchlib import bar_plot, table, write_results

from cache_core.tiers.memory import MemoryTier
from cache_core.tiers.wtinylfu import WTinyLfuTier

TRACES = Path(
    os.environ.get("CACHING_AGENT_TRACES", Path(__file__).parents[2] / "shared" / "traces")
)
FRACTIONS = (0.05, 0.1, 0.25, 0.5)
QUOTED = {"gli": (250, 1000, 2000), "loop": (512,), "sprite": (1000,)}
NO_EXPIRY = None


def load(name: str) -> array[int]:
    """The trace's keys as ints."""
    lirs = TRACES / "lirs" / f"{name}.trace.gz"
    if lirs.exists():
        with gzip.open(lirs, "rt") as f:
            return array("q", (int(line) for line in f if line.strip() and line.strip() != "*"))
    cache2k = TRACES / "cache2k" / f"{name}.trace.xz"
    if not cache2k.exists():
        raise SystemExit(f"hitratio: no trace {name!r}: neither {lirs} nor {cache2k} exists")
    raw = lzma.decompress(cache2k.read_bytes())
    keys = array("i", raw)
    if sys.byteorder == "little":
        keys.byteswap()  # the files are big-endian
    return array("q", keys)


def names() -> list[str]:
    found = [p.name.removesuffix(".trace.gz") for p in sorted((TRACES / "lirs").glob("*.gz"))]
    found += [p.name.removesuffix(".trace.xz") for p in sorted((TRACES / "cache2k").glob("*.xz"))]
    return found


def unit(_key: Any, _data: bytes) -> int:
    return 1


def replay_tier(tier: Any, keys: Sequence[int]) -> float:
    get, put = tier.get, tier.set
    hits = 0
    for key in keys:
        if get(key) is None:
            put(key, b"", NO_EXPIRY)
        else:
            hits += 1
    return 100 * hits / len(keys)


def replay_theine_once(size: int, keys: Sequence[int]) -> float:
    # Imported here: a run without traces fails on that before it needs the bench group.
    import theine

    cache = theine.Cache(size)
    get, put = cache.get, cache.set
    hits = 0
    for key in keys:
        if get(key)[1]:
            hits += 1
        else:
            put(key, b"")
    return 100 * hits / len(keys)


THEINE_RUNS = 3


def replay_theine(size: int, keys: Sequence[int]) -> float:
    """The median of a few runs: theine keys its sketch's hash at random in each cache and
    picks read-buffer stripes at random, so one run's figure moves by up to about a point."""
    return statistics.median(replay_theine_once(size, keys) for _ in range(THEINE_RUNS))


POLICIES: dict[str, Callable[[int, Sequence[int]], float]] = {
    "LRU": lambda size, keys: replay_tier(MemoryTier(weigher=unit, max_bytes=size), keys),
    "W-TinyLFU (ours)": lambda size, keys: replay_tier(
        WTinyLfuTier(weigher=unit, max_bytes=size), keys
    ),
    "theine": replay_theine,
}


def sizes_for(name: str, keys: Sequence[int]) -> list[int]:
    distinct = len(set(keys))
    sizes = {max(10, round(distinct * f)) for f in FRACTIONS} | set(QUOTED.get(name, ()))
    return sorted(sizes)


SEEDS = 5
"""Ours is replayed with this many seeds (its sketch's hash, its random admissions): on
these short traces a cell's verdict can turn on one collision (backf@376 moves by 4 points
with the hash, gli@1264 by half a point), so a change to the policy is judged on the count
of targets met over the seeds, not on seed 0's alone."""


def ours_seeded(size: int, keys: Sequence[int]) -> list[float]:
    """Ours at seeds 1 .. SEEDS-1 (seed 0 is the table's)."""
    return [
        replay_tier(WTinyLfuTier(weigher=unit, max_bytes=size, seed=seed), keys)
        for seed in range(1, SEEDS)
    ]


def spread(values: Sequence[float]) -> str:
    return f"{min(values):.3g}-{max(values):.3g}"


SHORT_TARGET = 1.0
"""On the synthetic short recency-skewed traces, ours at most this many points under LRU."""


def target(name: str, lru: float, the: float) -> float:
    """The least hit ratio of ours that meets its target on trace ``name``: within a point
    of the best of LRU and theine, and at least theine's on loop, gli and multi*."""
    floor = max(lru, the) - 1
    if name in ("loop", "gli") or name.startswith("multi"):
        floor = max(floor, the)
    return floor - 1e-9


def short_target(lru: float) -> float:
    """The least hit ratio of ours that meets the synthetic traces' target."""
    return lru - SHORT_TARGET - 1e-9


def short_traces() -> tuple[str, list[str], list[int], int]:
    """The synthetic short recency-skewed traces (bench/synthetic_traces.py): each policy's
    hit ratio, and what a miss and a hit cost against LRU's there; the table, the cells
    that missed the target, the targets met at each seed, and the number of cells."""
    from policy_cost import TIERS, interleaved_costs, median_ratio  # (it imports this one)
    from synthetic_traces import FRACTIONS as FRACTIONS_SHORT
    from synthetic_traces import cases

    rows, misses = [], []
    met = [0] * SEEDS
    for name, fraction, keys, size in cases():
        got = {policy: run(size, keys) for policy, run in POLICIES.items()}
        ours, lru, the = got["W-TinyLFU (ours)"], got["LRU"], got["theine"]
        seeded = [ours, *ours_seeded(size, keys)]
        for seed, value in enumerate(seeded):
            met[seed] += value >= short_target(lru)
        ok = ours >= short_target(lru)
        if not ok:
            misses.append(f"{name}@{fraction:.0%}")
        cost = ""
        if fraction == min(FRACTIONS_SHORT):
            got_costs = interleaved_costs(
                {policy: TIERS[policy] for policy in ("LRU", "W-TinyLFU")}, size, keys
            )
            lru_costs, our_costs = got_costs["LRU"], got_costs["W-TinyLFU"]
            miss_x = median_ratio(our_costs, lru_costs, 1)
            cost = f"{miss_x:.1f}x / {median_ratio(our_costs, lru_costs, 0):.1f}x"
        rows.append(
            [
                name,
                f"{fraction:.0%}",
                size,
                lru,
                the,
                ours,
                spread(seeded),
                ours - lru,
                cost,
                "yes" if ok else "NO",
            ]
        )
        print(" | ".join(str(v) for v in rows[-1]), flush=True)
    header = [
        "synthetic",
        "keys",
        "size",
        "LRU %",
        "theine %",
        "ours %",
        f"ours, seeds 0-{SEEDS - 1}",
        "ours - LRU",
        "miss / hit x LRU",
        "target",
    ]
    return table(header, rows), misses, met, len(rows)


def main(selected: list[str]) -> None:
    chosen = [name for name in selected if name != "synthetic"] if selected else names()
    if not chosen and not selected:
        # An empty table under "All met." would read as a check that passed.
        raise SystemExit(
            f"hitratio: no traces in {TRACES / 'lirs'} (*.trace.gz) or {TRACES / 'cache2k'}"
            " (*.trace.xz); set CACHING_AGENT_TRACES to the folder that holds them"
        )
    rows = []
    misses = []
    met = [0] * SEEDS
    for name in chosen:
        keys = load(name)
        plot: dict[str, dict[str, float]] = {}
        for size in sizes_for(name, keys):
            got = {policy: run(size, keys) for policy, run in POLICIES.items()}
            ours, lru, the = got["W-TinyLFU (ours)"], got["LRU"], got["theine"]
            floor = target(name, lru, the)
            ok = ours >= floor
            seeded = [ours, *ours_seeded(size, keys)]
            for seed, value in enumerate(seeded):
                met[seed] += value >= floor
            rows.append(
                [
                    name,
                    size,
                    lru,
                    the,
                    ours,
                    spread(seeded),
                    ours - max(lru, the),
                    "yes" if ok else "NO",
                ]
            )
            if not ok:
                misses.append(f"{name}@{size}")
            plot[str(size)] = got
            print(" | ".join(str(v) for v in rows[-1]), flush=True)
        bar_plot(f"hitratio-{name}", f"{name}: hit ratio (%) by cache size", plot, "hit ratio %")
    header = [
        "trace",
        "size",
        "LRU %",
        "theine %",
        "ours %",
        f"ours, seeds 0-{SEEDS - 1}",
        "ours - best",
        "target",
    ]
    text = verdict = ""
    if chosen:
        text = table(header, rows)
        verdict = (
            "Targets: on every trace and size, ours >= max(LRU, theine) - 1 point; on loop, gli "
            "and multi*, ours >= theine. "
            + ("All met." if not misses else f"Missed at: {', '.join(misses)}.")
            + f" Met at seeds 0-{SEEDS - 1}: {', '.join(map(str, met))} of {len(rows)}."
        )
    if not selected or "synthetic" in selected:
        short, short_misses, short_met, short_cells = short_traces()
        text += (
            "\n\nSeeded short recency-skewed traces (bench/synthetic_traces.py, 80,000 requests,"
            " 9-30 cache-fulls); a miss's and a hit's cost against LRU's as bench/policy_cost.py"
            f" measures them, at the smaller size:\n\n{short}"
        )
        verdict += f" On the synthetic traces, ours >= LRU - {SHORT_TARGET:g} point: " + (
            "all met." if not short_misses else f"missed at {', '.join(short_misses)}."
        )
        met_short = ", ".join(map(str, short_met))
        verdict += f" Met at seeds 0-{SEEDS - 1}: {met_short} of {short_cells}."
    print(text)
    print(verdict)
    if not selected:
        write_results(
            "hitratio",
            "L1 hit ratio on real traces: LRU, W-TinyLFU, theine",
            "`uv run nox -s bench -- hitratio`: each trace replayed in process (get, then set "
            f"on a miss; weight 1 an entry) at sizes of {', '.join(f'{f:.0%}' for f in FRACTIONS)}"
            " of its distinct keys and the sizes the traces' README quotes; theine's figure is"
            f" the median of {THEINE_RUNS} runs (one run's moves by up to about a point)."
            f"\n\n{text}\n\n{verdict}\n",
        )


if __name__ == "__main__":
    main(sys.argv[1:])
