"""``caching-agent serve --workers 2`` on the shipped config: one embedded engine, two
workers on one port whose L1 copies stay coherent, and nothing left behind when it stops."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cache_server.workers import WORKER_STOP_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
STALENESS_BOUND = 0.05  # seconds: README's documented bound on loopback
READS = 40  # new connections per check: all on one worker has odds of 2**-39
TIMEOUT = aiohttp.ClientTimeout(total=10)

pytestmark = pytest.mark.e2e


def processes_in(workdir: Path) -> dict[int, bytes]:
    """pid -> command line of every process working under ``workdir`` (workers run in it,
    the engine in its data directory below it)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if cwd.startswith(str(workdir)):
            found[int(proc.name)] = cmdline
    return found


def engines_in(workdir: Path) -> list[int]:
    return [pid for pid, cmdline in processes_in(workdir).items() if b"-server" in cmdline]


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def wait_until_gone(workdir: Path, timeout: float = 10.0) -> dict[int, bytes]:
    deadline = time.monotonic() + timeout
    while processes_in(workdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    return processes_in(workdir)


async def fresh(method: str, url: str, **kw: Any) -> Any:
    """One request over a connection of its own: the kernel picks the worker per connection."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session,
        session.request(method, url, **kw) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def values_seen(url: str, key: str) -> list[Any]:
    answers = await asyncio.gather(*(fresh("GET", f"{url}/cache/{key}") for _ in range(READS)))
    return [answer["value"] for answer in answers]


async def worker_pids(url: str) -> set[int]:
    pids: set[int] = set()
    for _ in range(10):  # rounds of READS connections until both workers have answered
        answers = await asyncio.gather(*(fresh("GET", f"{url}/health") for _ in range(READS)))
        pids |= {answer["pid"] for answer in answers}
        if len(pids) >= 2:
            break
    return pids


def serve_two_workers(spawner: Any, workdir: Path) -> Any:
    shutil.copy(ROOT / "config.yaml", workdir / "config.yaml")
    return spawner.serve(None, extra=["--workers", "2"])


async def test_two_workers_share_one_engine_stay_coherent_and_stop_together(
    spawner: Any, workdir: Path
) -> None:
    server = serve_two_workers(spawner, workdir)
    said = [line for line in server.stdout if "listening" in line]
    assert said == [f"caching-agent listening on {server.url} (2 workers)"]
    assert len(engines_in(workdir)) == 1

    workers = await worker_pids(server.url)
    assert len(workers) == 2
    assert server.proc.pid not in workers  # the parent serves nothing
    health = await fresh("GET", f"{server.url}/health")
    assert health["status"] == "ok"
    assert health["tiers"]["l2"]["coherent"] is True

    key = "user:7:profile"
    for version in range(3):
        await fresh("POST", f"{server.url}/cache", json={"key": key, "value": {"old": version}})
        # Both workers read it now (L2, then their L1 copies) ...
        assert await values_seen(server.url, key) == [{"old": version}] * READS
        # ... and after an overwrite through one worker, neither serves its old copy.
        await fresh("POST", f"{server.url}/cache", json={"key": key, "value": {"new": version}})
        await asyncio.sleep(STALENESS_BOUND)
        assert await values_seen(server.url, key) == [{"new": version}] * READS
        await fresh("DELETE", f"{server.url}/cache/{key}")
        await asyncio.sleep(STALENESS_BOUND)
        assert await values_seen(server.url, key) == [None] * READS

    # A write-back write waits in one worker's buffer: SIGTERM flushes it to the engine.
    written = await fresh("POST", f"{server.url}/cache", json={"key": "model:m:1", "value": 42})
    assert written["strategy"] == "write_back"
    engine = engines_in(workdir)
    assert server.terminate() == 0
    assert wait_until_gone(workdir) == {}
    assert alive([*workers, *engine]) == []

    server = spawner.serve(None)  # one process, same data directory
    got = await fresh("GET", f"{server.url}/cache/model:m:1")
    assert (got["value"], got["tier"]) == (42, "l2")
    assert server.terminate() == 0
    assert wait_until_gone(workdir) == {}


async def test_a_dead_worker_stops_the_rest(spawner: Any, workdir: Path) -> None:
    server = serve_two_workers(spawner, workdir)
    workers = await worker_pids(server.url)
    assert len(workers) == 2
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    try:
        code = server.proc.wait(timeout=WORKER_STOP_TIMEOUT * 2)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the parent did not stop after a worker died\n{server.output}")
    assert code != 0
    server.kill()  # joins the output readers
    assert f"worker {victim} exited" in server.output
    assert wait_until_gone(workdir) == {}


def test_workers_without_l2_are_refused_in_one_line(
    spawner: Any, workdir: Path, find_port: Any
) -> None:
    (workdir / "l1.yaml").write_text("cache_tiers:\n  l1:\n    type: memory\n")
    port = str(find_port())
    done = spawner.cli("serve", "--config", "l1.yaml", "--workers", "2", "--port", port)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--workers 2 needs an L2 tier" in lines[0]
