"""Seeded synthetic traces for the L1 policies (issue 19): short and recency-skewed, like a
recommendation service's, where the published traces hold one such case only (tuning on it
alone would fit that trace). Used by bench/hitratio.py and tests/cache_core/test_wtinylfu.py.
"""

from __future__ import annotations

import bisect
import itertools
import random

LENGTH = 80_000
"""Requests a trace: 9-30 cache-fulls at a quarter and a half of its keys."""

DRIFTING: dict[str, dict[str, float]] = {
    "steep": {"new_per_request": 0.2, "s": 1.1, "seed": 2},
    "flat": {"new_per_request": 0.1, "s": 0.8, "seed": 4},
    "with-stable-set": {"new_per_request": 0.15, "s": 1.0, "seed": 3, "stable_share": 0.2},
}
FRACTIONS = (0.25, 0.5)


def drifting_trace(
    length: int, new_per_request: float, s: float, seed: float, stable_share: float = 0.0
) -> list[int]:
    """A new key is the hottest, and a key's popularity falls with its age (Zipf of exponent
    ``s`` over the 4,000 newest), new keys arriving at ``new_per_request``; ``stable_share``
    of the requests go to a fixed Zipf-popular set of 1,000 (what frequency would keep)."""
    rng = random.Random(seed)
    ages = list(itertools.accumulate(1 / (age + 1) ** s for age in range(4000)))
    stable = list(itertools.accumulate(1 / (rank + 1) for rank in range(1000)))
    out = []
    for t in range(length):
        if stable_share and rng.random() < stable_share:
            out.append(-1 - bisect.bisect(stable, rng.random() * stable[-1]))
        else:
            age = bisect.bisect(ages, rng.random() * ages[-1])
            out.append(int(t * new_per_request) - age)
    return out


def cases() -> list[tuple[str, float, list[int], int]]:
    """(name, fraction, keys, cache size) of every synthetic case."""
    out = []
    for name in sorted(DRIFTING):
        keys = drifting_trace(LENGTH, **DRIFTING[name])
        distinct = len(set(keys))
        out += [(name, fraction, keys, round(distinct * fraction)) for fraction in FRACTIONS]
    return out
