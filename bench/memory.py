"""Memory: the RSS a full L1 adds to the process, beside the configured bound.

Each configuration runs in a fresh process: start an L1-only agent with
``cache_tiers.l1.max_size_mb``, read the RSS (idle), write realistic JSON values of mixed
sizes until L1 has evicted for a while, read the RSS again. The ratio is what the full L1
added over ``max_size_mb``: what an operator must budget beyond the setting.

Then random value sizes over HTTP (issue 13, item 16): the real ``caching-agent serve``
with a 64 MB L1 in front of a private embedded engine, sets and gets of values from a few
bytes to 4 MiB from concurrent clients on 127.0.0.1; RSS sampled from /proc/PID/status.
Each load runs twice: with glibc malloc's defaults (the served process with
``tune_allocator`` turned off) and as ``serve`` runs (see cache_server.allocator).

    uv run python bench/memory.py        # or: uv run nox -s bench -- memory
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import subprocess
import sys

from benchlib import bar_plot, table, write_results
from memory_random import RANDOM_BOUND_MB, random_report, run_random

SIZES_MB = (16, 64, 256)
EVICTIONS = ("lru", "wtinylfu")
"""W-TinyLFU also keeps a frequency sketch and its recency guard outside
the bound: this measures what they add."""
MIB = 1024 * 1024


def child(max_size_mb: int, eviction: str) -> None:
    import psutil

    from cache_core import CachingAgent

    async def fill() -> dict[str, float]:
        config = {
            "cache_tiers": {"l1": {"max_size_mb": max_size_mb, "ttl": 3600, "eviction": eviction}},
            "compression": {"enable": False},
            "monitoring": {"alert_on_low_hit_rate": None, "alert_on_high_latency": None},
        }
        rng = random.Random(3)
        words = [f"w{i}" for i in range(500)]
        async with CachingAgent.from_config(config, env={"CACHING_AGENT_PLUGINS": ""}) as agent:
            gc.collect()
            idle = psutil.Process().memory_info().rss
            i = 0
            # Past the bound by half again, so eviction has churned the allocator too.
            while agent.l1.evictions == 0 or agent.l1.evictions < i // 3:
                size = rng.choice((8, 40, 200, 800))
                value = {"user": i, "items": [rng.choice(words) for _ in range(size)]}
                await agent.set(f"user:{i}:path", value)
                i += 1
            gc.collect()
            full = psutil.Process().memory_info().rss
            return {
                "idle_mb": idle / MIB,
                "full_mb": full / MIB,
                "accounted_mb": agent.l1.size_bytes / MIB,
                "entries": len(agent.l1),
                "written": i,
            }

    print(json.dumps(asyncio.run(fill())))


def main() -> None:
    random_runs = run_random()
    rows = []
    plot: dict[str, dict[str, float]] = {}
    for eviction, size in [(e, size) for e in EVICTIONS for size in SIZES_MB]:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(size), eviction],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        got = json.loads(out.stdout)
        added = got["full_mb"] - got["idle_mb"]
        rows.append(
            [
                eviction,
                f"{size} MB",
                got["entries"],
                got["accounted_mb"],
                added,
                added / size,
            ]
        )
        plot[f"{eviction} {size} MB"] = {"bound": float(size), "RSS added": added}
        print(rows[-1], flush=True)
    header = ["eviction", "max_size_mb", "entries", "accounted MB", "RSS added MB", "x bound"]
    text = table(header, rows)
    worst = max(row[5] for row in rows)
    verdict = (
        f"Target: RSS with a full L1 at most 1.3x `max_size_mb` above the idle process. "
        f"Worst measured: x{worst:.2f} ({'met' if worst <= 1.3 else 'NOT met'})."
    )
    print(text)
    print(verdict)
    random_text = random_report(random_runs)
    print(random_text)
    random_plot = {
        f"{run.clients} client{'s' if run.clients > 1 else ''}, {run.allocator}": {
            "max_size_mb": float(RANDOM_BOUND_MB),
            "settled": run.settled_mb - run.idle_mb,
            "peak": run.peak_mb - run.idle_mb,
        }
        for run in random_runs
    }
    write_results(
        "memory",
        "Memory of a full L1",
        "`uv run python bench/memory.py`: an L1-only agent per policy and size in a fresh process, "
        "JSON values of 0.1-6 KB written until a third of them were evicted; RSS from psutil."
        f"\n\n{text}\n\n{verdict}\n\n{random_text}\n",
    )
    bar_plot("memory", "A full L1: RSS added vs the bound (MB)", plot, "MB")
    bar_plot(
        "memory-random",
        f"Random value sizes (1 B-4 MiB) over HTTP: RSS added beside a {RANDOM_BOUND_MB} MB L1",
        random_plot,
        "MB",
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3])
    else:
        main()
