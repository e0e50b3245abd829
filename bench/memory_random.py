"""bench/memory.py's second half: RSS of the served process under random value sizes.

The real ``caching-agent serve`` (a 64 MB L1, a private embedded engine as L2, the shipped
gzip compression) takes sets and gets of values from 1 byte to 4 MiB from ``clients``
concurrent keep-alive connections on 127.0.0.1, a fixed plan of ``RANDOM_OPS`` requests
over ``RANDOM_KEYS`` keys (so L1 evicts and gets go to L2 as well). Its RSS is read from
/proc/PID/status: idle before the load, sampled during it, the kernel's high-water mark
(VmHWM) at the end, and once the load has stopped (connections still open). What counts is
the RSS the load *added* over the idle process, beside ``max_size_mb``.

Each load runs once with glibc malloc's defaults (``tune_allocator`` turned off in the
served process) and once as ``serve`` runs, so the table shows what the setting does.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from attrs import define
from benchlib import clean_env, free_port, served, table

MIB = 1024 * 1024
HOST = "127.0.0.1"
RANDOM_BOUND_MB = 64
RANDOM_MAX_VALUE = 4 * MIB - 64
"""Characters of the largest value: once quoted, within ``limits.max_value_bytes``."""
RANDOM_KEYS = 200
RANDOM_OPS = 400
RANDOM_SET_SHARE = 0.6
RANDOM_CLIENTS = (1, 4)
RANDOM_TARGET = 1.5
"""RSS added by the load, at its peak, at most this times ``max_size_mb``."""
SAMPLE_EVERY = 0.05
SETTLE = 2.0
"""Seconds after the last request before the settled RSS is read."""
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 60.0
RUN_TIMEOUT = 600.0

ALLOCATORS = {"glibc default": False, "tuned": True}
"""Name -> whether the served process keeps ``serve``'s allocator setting."""
_UNTUNED = (
    "import sys, cache_server.cli as cli; cli.tune_allocator = lambda: {}; sys.exit(cli.main())"
)
_LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

CONFIG = """\
redis:
  url: "embedded"
  data_dir: "{data_dir}"
cache_tiers:
  l1:
    type: memory
    max_size_mb: {bound}
    ttl: 3600
  l2:
    type: redis
    ttl: 3600
compression:
  enable: true
  algorithm: gzip
  threshold_bytes: 1024
circuit_breaker:
  # Memory, not latency, is measured: a shared 2-core machine compressing several 4 MiB
  # values at once must not turn writes into 503s.
  operation_timeout: 30
monitoring:
  tracing: none
  alert_on_low_hit_rate: null
  alert_on_high_latency: null
"""


@define
class RandomRun:
    allocator: str
    clients: int
    sets: int
    gets: int
    samples: int
    idle_mb: float
    peak_mb: float
    settled_mb: float
    accounted_mb: float
    entries: int
    evictions: int


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MiB; fails loudly where /proc does not say."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise SystemExit(f"memory: cannot read /proc/{pid}/status ({exc}); Linux only") from exc
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024
    if len(out) != 2:
        raise SystemExit(f"memory: /proc/{pid}/status has no VmRSS/VmHWM")
    return out


def plan(seed: int) -> list[tuple[str, str, int, int]]:
    """(op, key, size, offset into the blob) for every request, the same for every run."""
    rng = random.Random(seed)
    ops = []
    for _ in range(RANDOM_OPS):
        key = f"rnd:{rng.randrange(RANDOM_KEYS)}"
        if rng.random() < RANDOM_SET_SHARE:
            size = rng.randint(1, RANDOM_MAX_VALUE)
            ops.append(("set", key, size, rng.randrange(RANDOM_MAX_VALUE - size + 1)))
        else:
            ops.append(("get", key, 0, 0))
    return ops


def blob(seed: int) -> bytes:
    """Random letters: gzip shrinks them by a quarter, and JSON needs no escapes."""
    letters = bytes(_LETTERS[i % len(_LETTERS)] for i in range(256))
    return random.Random(seed).randbytes(RANDOM_MAX_VALUE).translate(letters)


async def _load(url: str, pid: int, clients: int) -> dict[str, Any]:
    ops = iter(plan(16))
    letters = blob(16)
    counts = {"set": 0, "get": 0}
    samples: list[float] = []
    done = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, timeout=timeout, connector=connector) as http:
        async with http.get("/health") as resp:
            resp.raise_for_status()
        await asyncio.sleep(SETTLE)
        idle = proc_status(pid)["VmRSS"]

        async def client() -> None:
            for op, key, size, offset in ops:
                if op == "set":
                    body = b'{"key":"%s","value":"%s"}' % (
                        key.encode(),
                        letters[offset : offset + size],
                    )
                    headers = {"Content-Type": "application/json"}
                    request = http.post("/cache", data=io.BytesIO(body), headers=headers)
                else:
                    request = http.get(f"/cache/{key}")
                async with request as resp:
                    answer = await resp.read()
                    if resp.status != 200:
                        raise SystemExit(f"memory: {op} {key} -> {resp.status} {answer[:300]!r}")
                counts[op] += 1

        async def sampler() -> None:
            while not done.is_set():
                samples.append(proc_status(pid)["VmRSS"])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), SAMPLE_EVERY)

        sampling = asyncio.create_task(sampler())
        try:
            await asyncio.gather(*(client() for _ in range(clients)))
        finally:
            done.set()
            await sampling
        await asyncio.sleep(SETTLE)
        end = proc_status(pid)
        async with http.get("/stats") as resp:
            resp.raise_for_status()
            stats = await resp.json()
    if not samples:
        raise SystemExit("memory: no RSS samples were taken during the random-size load")
    missing = {"l1_size_bytes", "l1_entries", "l1_evictions"} - set(stats)
    if missing:
        raise SystemExit(f"memory: /stats lacks {sorted(missing)}")
    return {
        "counts": counts,
        "samples": len(samples),
        "idle": idle,
        "peak": max(end["VmHWM"], *samples),
        "settled": end["VmRSS"],
        "stats": stats,
    }


def measure(allocator: str, clients: int) -> RandomRun:
    with tempfile.TemporaryDirectory(prefix="ca-bench-mem-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(CONFIG.format(data_dir=Path(tmp) / "engine", bound=RANDOM_BOUND_MB))
        port = free_port()
        entry = ["-m", "cache_server.cli"] if ALLOCATORS[allocator] else ["-c", _UNTUNED]
        command = [
            sys.executable, *entry, "serve", "--config", str(config),
            "--host", HOST, "--port", str(port),
        ]  # fmt: skip
        # The allocator's own variables are dropped too: each run says which it uses.
        env = clean_env("MALLOC_", "GLIBC_TUNABLES")
        with served(command, tmp, env, START_TIMEOUT) as proc:
            got = asyncio.run(
                asyncio.wait_for(_load(f"http://{HOST}:{port}", proc.pid, clients), RUN_TIMEOUT)
            )
    stats = got["stats"]
    return RandomRun(
        allocator=allocator,
        clients=clients,
        sets=got["counts"]["set"],
        gets=got["counts"]["get"],
        samples=got["samples"],
        idle_mb=got["idle"],
        peak_mb=got["peak"],
        settled_mb=got["settled"],
        accounted_mb=stats["l1_size_bytes"] / MIB,
        entries=stats["l1_entries"],
        evictions=stats["l1_evictions"],
    )


def run_random() -> list[RandomRun]:
    runs = []
    for clients in RANDOM_CLIENTS:
        for allocator in ALLOCATORS:
            started = time.monotonic()
            runs.append(measure(allocator, clients))
            print(runs[-1], f"({time.monotonic() - started:.0f} s)", flush=True)
    return runs


def random_report(runs: list[RandomRun]) -> str:
    """The Markdown section of the random-size runs, with its verdict."""
    bound = RANDOM_BOUND_MB
    header = [
        "allocator", "clients", "sets/gets", "L1 accounted MB", "idle MB", "peak MB",
        "settled MB", "peak added x bound", "settled added x bound", "peak x bound",
    ]  # fmt: skip
    rows = [
        [
            run.allocator,
            run.clients,
            f"{run.sets}/{run.gets}",
            run.accounted_mb,
            run.idle_mb,
            run.peak_mb,
            run.settled_mb,
            (run.peak_mb - run.idle_mb) / bound,
            (run.settled_mb - run.idle_mb) / bound,
            run.peak_mb / bound,
        ]
        for run in runs
    ]
    judged = []
    for run in runs:
        if not ALLOCATORS[run.allocator]:
            continue
        for what, rss in (("settled", run.settled_mb), ("peak", run.peak_mb)):
            ratio = (rss - run.idle_mb) / bound
            met = "met" if ratio <= RANDOM_TARGET else "NOT met"
            judged.append(f"{what} x{ratio:.2f} with {run.clients} client(s) ({met})")
    verdict = (
        f"Target: the RSS random sizes add at most {RANDOM_TARGET}x `max_size_mb`. "
        f"As `serve` runs: {'; '.join(judged)}. Beyond L1, each request in flight holds a "
        "few copies of its value (body, decoded value, encoded JSON, L2 frame and socket "
        "buffer) until it is answered."
    )
    text = table(header, rows)
    return (
        f"### Random value sizes over HTTP\n\n"
        f"`caching-agent serve`, `max_size_mb` {bound}, embedded engine as L2, gzip; "
        f"{RANDOM_OPS} requests ({RANDOM_SET_SHARE:.0%} sets of 1 B-4 MiB values, the rest "
        f"gets) over {RANDOM_KEYS} keys from 1 or 4 keep-alive clients on 127.0.0.1. RSS "
        f"from /proc/PID/status: idle before, peak = the kernel's high-water mark (and "
        f"{SAMPLE_EVERY * 1000:.0f} ms samples), settled = {SETTLE:g} s after the last "
        f"request. *Added* is over the idle process; *peak x bound* is the whole RSS "
        f"(issue 13 measured 3.4x there).\n\n{text}\n\n{verdict}"
    )
