"""Does exporting metrics slow an L1 hit? ``agent.get`` of an L1 key, with no metrics
recorder and with the OpenTelemetry recorder running (Prometheus reader attached), in
alternating rounds of the same process; prints µs per hit and the ratio.

    uv run python bench/l1_metrics.py
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from benchlib import write_results

from cache_core import CachingAgent

HITS = 200_000
ROUNDS = 7


def config(recorders: list[str]) -> dict[str, Any]:
    return {
        "cache_tiers": {"l1": {"max_size_mb": 16}},
        "compression": {"enable": False},
        "monitoring": {
            "recorders": recorders,
            "alert_on_low_hit_rate": None,
            "alert_on_high_latency": None,
        },
    }


async def per_hit_us(agent: CachingAgent) -> float:
    get = agent.get
    start = time.perf_counter()
    for _ in range(HITS):
        await get("user:1:profile")
    return (time.perf_counter() - start) / HITS * 1e6


async def main() -> None:
    async with (
        CachingAgent.from_config(config([]), env={}) as plain,
        CachingAgent.from_config(config(["opentelemetry"]), env={}) as metered,
    ):
        for agent in (plain, metered):
            await agent.set("user:1:profile", {"name": "Ada", "level": 5})
        results: dict[str, list[float]] = {"no recorder": [], "opentelemetry": []}
        for _ in range(ROUNDS):
            results["no recorder"].append(await per_hit_us(plain))
            results["opentelemetry"].append(await per_hit_us(metered))
        assert metered.recorders and not plain.recorders
    base = statistics.median(results["no recorder"])
    lines = []
    for name, runs in results.items():
        median = statistics.median(runs)
        lines.append(
            f"{name:>14}: {median:.3f} µs per L1 hit (median of {ROUNDS}), x{median / base:.3f}"
        )
        print(lines[-1])
    body = "\n".join(f"    {line}" for line in lines)
    write_results(
        "l1_metrics",
        "The cost of metrics on an L1 hit",
        f"`uv run python bench/l1_metrics.py`: `agent.get` of an L1 key without a recorder and"
        f" with the OpenTelemetry recorder, alternating rounds.\n\n{body}\n",
    )


if __name__ == "__main__":
    asyncio.run(main())
