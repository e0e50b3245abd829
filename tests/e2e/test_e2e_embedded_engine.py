"""The shipped config.yaml on a machine without Redis: the command starts its own engine,
serves from L2 after a restart, and leaves no engine process behind."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def engine_pids(workdir: Path) -> list[int]:
    """Engine processes working in a directory under ``workdir`` (the engine changes to its
    data directory, and rewrites its command line, so the cwd is what identifies it)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"-server" in cmdline and cwd.startswith(str(workdir)):
            pids.append(int(proc.name))
    return pids


def wait_until_gone(workdir: Path, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while engine_pids(workdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    return engine_pids(workdir)


async def call(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with session.request(method, url, **kw) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_shipped_config_serves_from_l2_after_restart_and_cleans_up(
    spawner: Any, workdir: Path
) -> None:
    shutil.copy(ROOT / "config.yaml", workdir / "config.yaml")
    server = spawner.serve(None)  # ./config.yaml, as `caching-agent serve` at the root
    assert len(engine_pids(workdir)) == 1
    profile = {"name": "Alice", "level": 5}
    async with aiohttp.ClientSession() as s:
        await call(
            s,
            "POST",
            f"{server.url}/cache",
            json={"key": "user:123:profile", "value": profile, "ttl": 3600},
        )
        await call(
            s,
            "POST",
            f"{server.url}/cache/batch-set",
            json={"items": {"user:456:profile": {"name": "Bob"}}, "ttl": 3600},
        )
        got = await call(s, "GET", f"{server.url}/cache/user:123:profile")
        assert got == {"key": "user:123:profile", "value": profile, "hit": True, "tier": "l1"}
    assert server.terminate() == 0
    assert wait_until_gone(workdir) == []
    assert (workdir / ".caching-agent" / "engine").is_dir()

    server = spawner.serve(None)
    async with aiohttp.ClientSession() as s:
        got = await call(s, "GET", f"{server.url}/cache/user:123:profile")
        assert got == {"key": "user:123:profile", "value": profile, "hit": True, "tier": "l2"}
        batch = await call(
            s,
            "POST",
            f"{server.url}/cache/batch-get",
            json={"keys": ["user:123:profile", "user:456:profile"]},
        )
        assert batch == {
            "results": {"user:123:profile": profile, "user:456:profile": {"name": "Bob"}},
            "hits": 2,
            "misses": 0,
        }
        stats = await call(s, "GET", f"{server.url}/stats")
        assert stats["l2_size_keys"] == 2
        # The GET promoted user:123 from L2; batch-get found it in L1 and user:456 in L2.
        assert stats["hits_by_tier"] == {"l1": 1, "l2": 2, "loader": 0}
        deleted = await call(s, "DELETE", f"{server.url}/cache/user:123:profile")
        assert deleted == {"success": True, "key": "user:123:profile", "deleted": True}
        health = await call(s, "GET", f"{server.url}/health")
        assert health["tiers"]["l2"]["coherent"] is True
    assert server.terminate() == 0
    assert wait_until_gone(workdir) == []


def test_engine_dies_with_a_killed_service(spawner: Any, workdir: Path) -> None:
    shutil.copy(ROOT / "config.yaml", workdir / "config.yaml")
    server = spawner.serve(None)
    assert len(engine_pids(workdir)) == 1
    server.kill()  # SIGKILL: no shutdown code runs in the service
    assert wait_until_gone(workdir) == []
