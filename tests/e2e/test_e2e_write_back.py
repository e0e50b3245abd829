"""Write-back durability of the real command: SIGTERM flushes everything; SIGKILL loses
at most what arrived within the last flush_interval."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytestmark = pytest.mark.e2e


def write_config(workdir: Path, engine: Any, prefix: str, flush_interval: float) -> Path:
    path = workdir / "wb.yaml"
    path.write_text(
        f"redis:\n  url: {engine.url}\n  key_prefix: '{prefix}'\n"
        "cache_tiers:\n  l1: {}\n  l2: {type: redis}\n"
        f"strategies:\n  default: write_back\n  write_back:\n"
        f"    batch_size: 100000\n    flush_interval: {flush_interval}\n"
    )
    return path


async def post_many(url: str, keys: list[str]) -> None:
    async with aiohttp.ClientSession() as session:
        for key in keys:
            async with session.post(f"{url}/cache", json={"key": key, "value": key}) as resp:
                assert resp.status == 200


def stored(engine: Any, prefix: str, keys: list[str]) -> list[str]:
    return [key for key in keys if engine.client.exists(prefix + key)]


async def test_sigterm_flushes_every_buffered_write(
    spawner: Any, workdir: Path, engine: Any, prefix: str
) -> None:
    server = spawner.serve(write_config(workdir, engine, prefix, 60))
    keys = [f"wb:{i}" for i in range(50)]
    await post_many(server.url, keys)
    assert stored(engine, prefix, keys) == []  # all still buffered
    assert server.terminate() == 0
    assert stored(engine, prefix, keys) == keys


async def test_sigkill_loses_at_most_the_last_flush_interval(
    spawner: Any, workdir: Path, engine: Any, prefix: str
) -> None:
    interval = 0.3
    server = spawner.serve(write_config(workdir, engine, prefix, interval))
    early = [f"early:{i}" for i in range(30)]
    await post_many(server.url, early)
    await asyncio.sleep(3 * interval)  # at least one flush has run since
    late = [f"late:{i}" for i in range(30)]
    await post_many(server.url, late)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    assert stored(engine, prefix, early) == early  # nothing older than the interval is lost
