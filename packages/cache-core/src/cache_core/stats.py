"""The agent's counters: plain integers bumped on the hot path, read by /stats and exporters.

Nothing here calls out: exporters (the metrics plugins) read these numbers when they
collect, so an L1 hit costs a few integer increments whatever is exported.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from attrs import define, field

# Upper bounds (ns) of the latency buckets; the last bucket is everything slower.
BUCKET_BOUNDS_NS: tuple[int, ...] = tuple(
    int(ms * 1_000_000)
    for ms in (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
)
_FIRST_BOUND = BUCKET_BOUNDS_NS[0]


@define(slots=True)
class LatencyHistogram:
    """Operation latencies in fixed buckets: cheap to add to, good for p50/p99 estimates."""

    counts: list[int] = field(factory=lambda: [0] * (len(BUCKET_BOUNDS_NS) + 1))
    total: int = 0
    sum_ns: int = 0

    def observe(self, ns: int) -> None:
        self.total += 1
        self.sum_ns += ns
        if ns < _FIRST_BOUND:  # an L1 hit: one comparison, no search
            self.counts[0] += 1
        else:
            self.counts[bisect_right(BUCKET_BOUNDS_NS, ns)] += 1

    def snapshot(self) -> tuple[int, ...]:
        return tuple(self.counts)

    @staticmethod
    def quantile(counts: tuple[int, ...] | list[int], q: float) -> float | None:
        """The ``q`` quantile (0..1) in milliseconds, interpolated within its bucket; None
        without observations. The open last bucket reports its lower bound."""
        total = sum(counts)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(counts):
            if count and seen + count >= rank:
                low = BUCKET_BOUNDS_NS[index - 1] if index else 0
                if index == len(BUCKET_BOUNDS_NS):
                    return low / 1e6
                high = BUCKET_BOUNDS_NS[index]
                return (low + (high - low) * (rank - seen) / count) / 1e6
            seen += count
        return BUCKET_BOUNDS_NS[-1] / 1e6


@define(slots=True)
class Stats:
    l1_hit_calls: int = 0
    """Single-key lookups L1 answered. They are counted, not timed: timing one would cost a
    third of it, and it always takes far less than the lowest latency bucket (25 µs), so
    each counts as an observation of 0 ns there."""
    l1_batch_hits: int = 0
    """Keys of batch lookups L1 answered (the batch as a whole is timed)."""
    hits_l2: int = 0
    hits_loader: int = 0
    served_stale: int = 0
    """Lookups L1 answered because L2 failed while L1 was bypassed (stale-if-error); they
    count as L1 hits too."""
    misses: int = 0
    sets: int = 0
    deletes: int = 0
    invalidated: int = 0
    errors: int = 0
    sets_by_strategy: dict[str, int] = field(factory=dict)
    invalidated_by_kind: dict[str, int] = field(
        factory=lambda: {"delete": 0, "pattern": 0, "tags": 0, "event": 0}
    )
    latency: LatencyHistogram = field(factory=LatencyHistogram)
    """Every public read and write of the agent."""

    @property
    def hits_l1(self) -> int:
        return self.l1_hit_calls + self.l1_batch_hits

    @property
    def hits(self) -> int:
        return self.l1_hit_calls + self.l1_batch_hits + self.hits_l2 + self.hits_loader

    def latency_counts(self) -> tuple[int, ...]:
        """The latency histogram's buckets, untimed L1 hits included."""
        counts = self.latency.snapshot()
        return (counts[0] + self.l1_hit_calls, *counts[1:])

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    @property
    def avg_latency_ms(self) -> float:
        lat = self.latency
        total = lat.total + self.l1_hit_calls
        return lat.sum_ns / total / 1e6 if total else 0.0

    def count_invalidated(self, kind: str, keys: int) -> None:
        self.invalidated += keys
        self.invalidated_by_kind[kind] = self.invalidated_by_kind.get(kind, 0) + keys

    def summary(self) -> dict[str, Any]:
        counts = self.latency_counts()
        p50 = LatencyHistogram.quantile(counts, 0.5)
        p99 = LatencyHistogram.quantile(counts, 0.99)
        return {
            "hits": self.hits,
            "misses": self.misses,
            "sets": self.sets,
            "deletes": self.deletes,
            "hit_rate": round(self.hit_rate, 4),
            "avg_latency_ms": round(self.avg_latency_ms, 4),
            "p50_latency_ms": None if p50 is None else round(p50, 4),
            "p99_latency_ms": None if p99 is None else round(p99, 4),
            "hits_by_tier": {"l1": self.hits_l1, "l2": self.hits_l2, "loader": self.hits_loader},
            "sets_by_strategy": dict(self.sets_by_strategy),
            "invalidated": self.invalidated,
            "invalidated_by_kind": dict(self.invalidated_by_kind),
            "errors": self.errors,
            "served_stale": self.served_stale,
        }
