"""The agent's counters: plain integers bumped on the hot path, read by /stats and exporters."""

from __future__ import annotations

from typing import Any

from attrs import define


@define(slots=True)
class Stats:
    hits_l1: int = 0
    hits_l2: int = 0
    hits_loader: int = 0
    misses: int = 0
    sets: int = 0
    deletes: int = 0
    invalidated: int = 0
    errors: int = 0
    latency_ns: int = 0
    """Total time spent in timed operations (every public read and write)."""
    timed_ops: int = 0

    @property
    def hits(self) -> int:
        return self.hits_l1 + self.hits_l2 + self.hits_loader

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    @property
    def avg_latency_ms(self) -> float:
        return self.latency_ns / self.timed_ops / 1e6 if self.timed_ops else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "sets": self.sets,
            "deletes": self.deletes,
            "hit_rate": round(self.hit_rate, 4),
            "avg_latency_ms": round(self.avg_latency_ms, 4),
            "hits_by_tier": {"l1": self.hits_l1, "l2": self.hits_l2, "loader": self.hits_loader},
            "invalidated": self.invalidated,
            "errors": self.errors,
        }
